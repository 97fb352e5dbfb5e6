"""What the read models need of the event store: the port ``adapters.eventlog.EventLog``
implements, passed in by the composition root (projections import no adapter)."""

from __future__ import annotations

from typing import Any, Protocol
from uuid import UUID

import asyncpg


class EventSource(Protocol):
    """Reads of the event log (rows with ``notification_id``, ``originator_id``,
    ``originator_version``), their decoding, and connections to its database."""

    async def connect(self, name: str) -> asyncpg.Connection:
        """A connection of its own (``name`` shows in pg_stat_activity)."""
        ...

    async def after(
        self, conn: asyncpg.Connection, position: int, limit: int, upto: int | None = None
    ) -> list[asyncpg.Record]:
        """Up to ``limit`` events after ``position`` (up to ``upto``), in position order."""
        ...

    async def by_issue(
        self, conn: asyncpg.Connection, after: tuple[UUID, int], upto: int, limit: int
    ) -> list[asyncpg.Record]:
        """Up to ``limit`` events after (issue, version) ``after`` with positions up to
        ``upto``, in (issue, version) order."""
        ...

    async def issue_range(
        self,
        conn: asyncpg.Connection,
        after: tuple[UUID, int],
        last: UUID,
        upto: int,
        limit: int,
    ) -> list[asyncpg.Record]:
        """As :meth:`by_issue`, of the issues up to ``last``."""
        ...

    async def newest(self, conn: asyncpg.Connection) -> int:
        """The newest position (0 when there is none)."""
        ...

    async def estimate(self, conn: asyncpg.Connection) -> int:
        """About how many events there are."""
        ...

    def decode(self, row: Any) -> Any:
        """The domain event of one row."""
        ...

    def about_the_event(self, exc: BaseException) -> bool:
        """Whether ``exc`` is about the events being applied (skip them: a value the
        database refuses, a fold or decode that fails), not about the database or the
        process (try again)."""
        ...

    def connection_lost(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a lost or refused connection."""
        ...
