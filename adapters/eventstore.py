"""Settings of the ``eventsourcing`` library's PostgreSQL module, built from our URL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg import Cursor
from psycopg.rows import DictRow

from adapters.postgres import connection_params


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
        # connection instead, and so does IssueService._load.
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


class RequestRecorder(PostgresApplicationRecorder):
    """The library's recorder, which also stores the idempotency keys of the commands a
    ``save()`` carries (``save(..., requests=[StoredRequest], request_window=timedelta)``)
    in the transaction that stores their events: a key is there exactly when its
    command's effect is. A key still held by another command's row makes the insert fail
    with the library's ``IntegrityError``, like a version conflict, so the caller's
    conflict path finds the first outcome."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.datastore.enable_db_functions:
            # The library's insert function never calls _insert_events: no key would be
            # stored, and every repeat would be applied again.
            raise ValueError("POSTGRES_ENABLE_DB_FUNCTIONS must stay off (idempotency keys)")

    def _insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
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
