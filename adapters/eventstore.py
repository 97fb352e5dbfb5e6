"""The ``eventsourcing`` library's PostgreSQL module: its settings, built from our URL; its
recorder, which also stores idempotency keys; and :class:`EventStore`, the reads and
writes the issue service needs that the library has no API for (many aggregates in one
query, the idempotency keys), on the library's own connection pool.

Errors: the library's "database gone" errors (``OperationalError``, ``InterfaceError``,
from psycopg) leave :class:`EventStore` as ``adapters.postgres.DatabaseUnavailable``
(after the retries), a version or key already taken as :class:`Conflict`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    Mapper,
    OperationalError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier
from psycopg.types.json import Jsonb

from adapters.postgres import DatabaseUnavailable, connection_params

_P = ParamSpec("_P")
_R = TypeVar("_R")


def eventstore_env(url: str, *, pool_size: int, create_table: bool = False) -> dict[str, str]:
    """The library's environment for our database.

    Tables come from ``migrations/`` (CREATE_TABLE stays off outside tests), and the
    library's insert function stays off: it takes no table lock, so a follower could skip
    events (DESIGN.md, "Known traps").
    """
    params = connection_params(url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": params.get("dbname") or params.get("user") or "postgres",
        "POSTGRES_HOST": params.get("host") or "127.0.0.1",
        "POSTGRES_PORT": str(params.get("port") or 5432),
        "POSTGRES_USER": params.get("user") or "postgres",
        "POSTGRES_PASSWORD": params.get("password") or "",
        "POSTGRES_SCHEMA": "public",
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": "0",
        "POSTGRES_LOCK_TIMEOUT": "5",
        # No ping before each use: it costs a round trip per checkout (9% of the API's
        # time under load); the library retries its reads and writes on a broken
        # connection instead, and so does EventStore.load.
        "POSTGRES_PRE_PING": "n",
        "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
        "CREATE_TABLE": "y" if create_table else "n",
        "APPLICATION_RECORDER_TOPIC": f"{__name__}:{RequestRecorder.__qualname__}",
    }


@dataclass(frozen=True)
class StoredRequest:
    """A command's idempotency key, stored with the command's event."""

    key: str
    fingerprint: str
    issue_id: UUID
    version: int


@dataclass(frozen=True)
class IssueScope:
    """Where a new issue belongs, stored with its first event (``issue_scope``): the
    vertical and country that bound who may see it, which never change."""

    issue_id: UUID
    vertical: str
    country: str


class RequestRecorder(PostgresApplicationRecorder):
    """The library's recorder, which also stores the idempotency keys of the commands a
    ``save()`` carries (``save(..., requests=[StoredRequest], request_window=timedelta)``)
    in the transaction that stores their events: a key is there exactly when its
    command's effect is. A key still held by another command's row makes the insert fail
    with the library's ``IntegrityError``, like a version conflict, so the caller's
    conflict path finds the first outcome.

    It stores the scope of each issue a save raises (``scopes=[IssueScope]``) in the same
    transaction: whoever reads an issue's events finds its scope row beside them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.datastore.enable_db_functions:
            # The library's insert function never calls _insert_events: no key would be
            # stored, and every repeat would be applied again.
            raise ValueError("POSTGRES_ENABLE_DB_FUNCTIONS must stay off (idempotency keys)")

    def _insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        scopes: Sequence[IssueScope] = kwargs.get("scopes") or ()
        if scopes:
            # Sorted, as the keys are. A row there already belongs to an issue whose first
            # event is stored too: this save's insert of that event fails as a conflict.
            curs.executemany(
                "INSERT INTO issue_scope (issue_id, vertical, country) VALUES (%s, %s, %s)"
                " ON CONFLICT (issue_id) DO NOTHING",
                [
                    (s.issue_id, s.vertical, s.country)
                    for s in sorted(scopes, key=lambda s: s.issue_id)
                ],
            )
        requests: Sequence[StoredRequest] = kwargs.get("requests") or ()
        if requests:
            window: timedelta = kwargs["request_window"]
            # Sorted: two transactions inserting the same keys wait in one order, never
            # for each other in a circle.
            ordered = sorted(requests, key=lambda r: r.key)
            keys = [r.key for r in ordered]
            # An expired key is free again (its row may not have been swept yet).
            curs.execute(
                "DELETE FROM command_requests WHERE key = ANY(%s) AND expires_at <= now()",
                (keys,),
            )
            curs.executemany(
                "INSERT INTO command_requests (key, fingerprint, issue_id, version, expires_at)"
                " VALUES (%s, %s, %s, %s, now() + %s::interval)",
                [(r.key, r.fingerprint, r.issue_id, r.version, window) for r in ordered],
            )
        super()._insert_events(curs, stored_events, **kwargs)


# The columns of the library's events table that a stored event is decoded from, with
# its global position.
EVENT_COLUMNS = "notification_id, originator_id, originator_version, topic, state"


def decode(mapper: Mapper[UUID], row: Any) -> Any:
    """The domain event of one row of the events table (an asyncpg Record or a psycopg
    dict row: anything indexed by column name)."""
    return mapper.to_domain_event(
        StoredEvent(
            originator_id=row["originator_id"],
            originator_version=row["originator_version"],
            topic=row["topic"],
            state=bytes(row["state"]),
        )
    )


class Conflict(Exception):
    """A save refused: another writer stored an event at one of its versions, or holds
    one of its idempotency keys."""


def _unavailable(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """The library's errors of a lost or refused connection, as DatabaseUnavailable."""

    @functools.wraps(function)
    def translated(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return function(*args, **kwargs)
        except (OperationalError, InterfaceError) as exc:
            raise DatabaseUnavailable(str(exc) or type(exc).__name__) from exc

    return translated


def _retried(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """Tried again on a broken connection, as the library does its own reads and writes."""
    retried: Callable[_P, _R] = retry(
        (InterfaceError, OperationalError), max_attempts=10, wait=0.2
    )(function)
    return retried


class EventStore:
    """The issue service's side of the event store: saves through the library, and the
    queries it has no API for, on its recorder's pool, schema and events table."""

    def __init__(self, app: Application[UUID]) -> None:
        recorder = app.recorder
        assert isinstance(recorder, PostgresApplicationRecorder)
        self._app = app
        self._datastore = recorder.datastore
        events = SQL("{}.{}").format(
            Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name)
        )
        self._select_aggregates = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {}"
            " WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
        ).format(events)
        self._select_answers = SQL(
            "SELECT r.key, r.fingerprint, r.issue_id, r.version, r.status_code, r.body,"
            " e.notification_id AS position FROM command_requests AS r"
            " LEFT JOIN {} AS e ON e.originator_id = r.issue_id"
            " AND e.originator_version = r.version"
            " WHERE r.key = ANY(%s) AND r.expires_at > now()"
        ).format(events)

    @_unavailable
    def save(
        self,
        aggregates: Sequence[Aggregate],
        requests: Sequence[StoredRequest],
        request_window: timedelta,
        scopes: Sequence[IssueScope] = (),
    ) -> dict[tuple[UUID, int], int]:
        """Store the aggregates' new events, the requests' keys and the scopes of the
        issues raised in one transaction; the global position of each (issue, version)
        stored. :class:`Conflict` when another writer was first."""
        try:
            recordings = self._app.save(
                *aggregates, requests=requests, request_window=request_window, scopes=scopes
            )
        except IntegrityError as exc:
            raise Conflict(str(exc)) from exc
        return {
            (r.domain_event.originator_id, r.domain_event.originator_version): r.notification.id
            for r in recordings
        }

    @_unavailable
    @_retried
    def load(self, issue_ids: set[UUID], *, prepare: bool = True) -> dict[UUID, Any]:
        """The current state of each existing aggregate among ``issue_ids``, in one query.

        The library's repository reads one aggregate per round trip; a batch needs many,
        so this selects their stored events together and replays them with the
        application's own mapper, exactly as the repository would. ``prepare`` keeps the
        statement's plan (the command path: the planning is a tenth of a millisecond of
        every command); unprepared, each read is planned for the table as it is.
        """
        with self._datastore.get_connection() as conn, conn.cursor() as cursor:
            cursor.execute(self._select_aggregates, (list(issue_ids),), prepare=prepare)
            rows = cursor.fetchall()
        aggregates: dict[UUID, Any] = {}
        for row in rows:
            event = decode(self._app.mapper, row)
            aggregates[row["originator_id"]] = event.mutate(aggregates.get(row["originator_id"]))
        return aggregates

    @_unavailable
    @_retried
    def answers(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """What was answered before to each of ``keys`` still in the window, by key: the
        row's ``fingerprint``, and a stored outcome (``issue_id``, ``version``,
        ``position``) or a refusal (``status_code``, ``body``; ``version`` None)."""
        if not keys:
            return {}
        with self._datastore.get_connection() as conn, conn.cursor() as cursor:
            cursor.execute(self._select_answers, (list(keys),))
            return {row["key"]: row for row in cursor.fetchall()}

    @_unavailable
    @_retried
    def keep_refusal(
        self,
        key: str,
        fingerprint: str,
        status_code: int,
        body: dict[str, Any],
        window: timedelta,
    ) -> bool:
        """Store the answer a keyed command was refused with; False when the key is taken
        already (the first answer wins)."""
        with self._datastore.transaction(commit=True) as cursor:
            cursor.execute(
                "DELETE FROM command_requests WHERE key = %s AND expires_at <= now()", (key,)
            )
            cursor.execute(
                "INSERT INTO command_requests (key, fingerprint, status_code, body, expires_at)"
                " VALUES (%s, %s, %s, %s, now() + %s::interval)"
                " ON CONFLICT (key) DO NOTHING RETURNING key",
                (key, fingerprint, status_code, Jsonb(body), window),
            )
            return cursor.fetchone() is not None

    @_unavailable
    def sweep_requests(self, batch: int = 1000) -> int:
        """Delete expired idempotency keys, ``batch`` rows per statement; how many were."""
        deleted = 0
        while True:
            with self._datastore.transaction(commit=True) as cursor:
                cursor.execute(
                    "DELETE FROM command_requests WHERE key IN (SELECT key FROM command_requests"
                    " WHERE expires_at <= now() LIMIT %s FOR UPDATE SKIP LOCKED)",
                    (batch,),
                )
                count = cursor.rowcount
            deleted += count
            if count < batch:
                return deleted
