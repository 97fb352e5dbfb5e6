"""The event log as its followers read it with asyncpg: the projections, their rebuild and
the relay. It implements ``projections.source.EventSource``; the composition root passes
it in, so the read models import no adapter.

Rows are asyncpg Records of the library's events table (``EVENT_COLUMNS``: position,
issue, version, topic, state), decoded with the event store's mapper.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

import asyncpg
from eventsourcing.persistence import Mapper

from adapters import postgres
from adapters.eventstore import EVENT_COLUMNS, decode

_AFTER = (
    f"SELECT {EVENT_COLUMNS} FROM inbox_events WHERE notification_id > $1"
    " ORDER BY notification_id LIMIT $2"
)
_AFTER_UPTO = (
    f"SELECT {EVENT_COLUMNS} FROM inbox_events WHERE notification_id > $1"
    " AND notification_id <= $3 ORDER BY notification_id LIMIT $2"
)
_BY_ISSUE = (
    f"SELECT {EVENT_COLUMNS} FROM inbox_events"
    " WHERE (originator_id, originator_version) > ($1, $2) AND notification_id <= $3"
    " ORDER BY originator_id, originator_version LIMIT $4"
)
_ISSUE_RANGE = (
    f"SELECT {EVENT_COLUMNS} FROM inbox_events"
    " WHERE (originator_id, originator_version) > ($1, $2) AND originator_id <= $3"
    " AND notification_id <= $4 ORDER BY originator_id, originator_version LIMIT $5"
)
_FIRST_EVENTS = (
    f"SELECT {EVENT_COLUMNS} FROM inbox_events"
    " WHERE originator_id = ANY($1::uuid[]) AND originator_version = 1"
)


def about_the_event(exc: BaseException) -> bool:
    """Whether ``exc`` comes from the events being applied (skip them), not from the
    database or the process (try again): of PostgreSQL's errors only data exceptions
    (class 22: bad text, numbers, JSON) and integrity violations (class 23); every error
    raised in our own code while decoding or folding."""
    if isinstance(exc, (*postgres.CONNECTION_ERRORS, MemoryError)):
        return False
    if isinstance(exc, asyncpg.PostgresError):
        return isinstance(
            exc,
            asyncpg.exceptions.DataError | asyncpg.exceptions.IntegrityConstraintViolationError,
        )
    return isinstance(exc, Exception)


class EventLog:
    """Reads of the events table of one database, and connections to it."""

    def __init__(self, database_url: str, mapper: Mapper[UUID]) -> None:
        self._database_url = database_url
        self._mapper = mapper

    async def connect(self, name: str) -> asyncpg.Connection:
        return await postgres.connect(self._database_url, name=name)

    async def after(
        self, conn: asyncpg.Connection, position: int, limit: int, upto: int | None = None
    ) -> list[asyncpg.Record]:
        """Up to ``limit`` events after ``position`` (up to ``upto``), in position order."""
        if upto is None:
            return await conn.fetch(_AFTER, position, limit)
        return await conn.fetch(_AFTER_UPTO, position, limit, upto)

    async def by_issue(
        self, conn: asyncpg.Connection, after: tuple[UUID, int], upto: int, limit: int
    ) -> list[asyncpg.Record]:
        """Up to ``limit`` events after (issue, version) ``after`` with positions up to
        ``upto``, in (issue, version) order."""
        return await conn.fetch(_BY_ISSUE, *after, upto, limit)

    async def issue_range(
        self,
        conn: asyncpg.Connection,
        after: tuple[UUID, int],
        last: UUID,
        upto: int,
        limit: int,
    ) -> list[asyncpg.Record]:
        """As :meth:`by_issue`, of the issues up to ``last``."""
        return await conn.fetch(_ISSUE_RANGE, *after, last, upto, limit)

    async def first_events(
        self, conn: asyncpg.Connection, issue_ids: Iterable[UUID]
    ) -> list[asyncpg.Record]:
        """The first event (version 1) of each issue."""
        return await conn.fetch(_FIRST_EVENTS, list(issue_ids))

    async def newest(self, conn: asyncpg.Connection) -> int:
        """The newest position (0 when there is none)."""
        return int(
            await conn.fetchval("SELECT coalesce(max(notification_id), 0) FROM inbox_events")
        )

    async def estimate(self, conn: asyncpg.Connection) -> int:
        """About how many events there are (fast, from statistics)."""
        estimate = await conn.fetchval(
            "SELECT reltuples::bigint FROM pg_class WHERE relname = 'inbox_events'"
        )
        return max(int(estimate or 0), 0) or await self.newest(conn)

    def decode(self, row: Any) -> Any:
        """The domain event of one row."""
        return decode(self._mapper, row)

    def about_the_event(self, exc: BaseException) -> bool:
        return about_the_event(exc)

    def connection_lost(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a lost or refused connection (reconnect, do not log it away)."""
        return isinstance(exc, postgres.CONNECTION_ERRORS)
