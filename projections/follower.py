"""The follower loop every read model shares.

A projection is a name, the tables it owns, and ``apply``: given a connection inside a
transaction and a batch of (position, domain event), write the read model. The follower
reads a batch after the projection's stored position, decodes it with the event store's
mapper, and calls ``apply`` and moves the position **in one transaction**: a crash anywhere
leaves the model and its position consistent, so every event is applied exactly once.

One follower is active per projection (a PostgreSQL advisory lock on its own connection);
others stand by. It wakes on the event store's ``NOTIFY inbox_events`` and polls as a
fallback. After each batch it sends ``NOTIFY projection_positions, '<name>:<position>'``
so readers waiting for ``min_position`` wake at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

import asyncpg
from eventsourcing.persistence import Mapper
from prometheus_client import Counter, Gauge

from adapters.eventstore import EVENT_COLUMNS, decode
from adapters.leadership import run_as_leader, wait_any

log = logging.getLogger(__name__)

APPLIED = Counter("inbox_projection_events_total", "Events applied", ["projection"])
POSITION = Gauge("inbox_projection_position", "A projection's stored position", ["projection"])

POSITIONS_CHANNEL = "projection_positions"
_COMMAND_TIMEOUT_SECONDS = 60.0

Batch = Sequence[tuple[int, Any]]


class Projection(Protocol):
    """One read model."""

    name: str
    # The tables it owns, in the order a rebuild copies and swaps them.
    tables: tuple[str, ...]

    async def apply(self, conn: asyncpg.Connection, batch: Batch, tables: dict[str, str]) -> None:
        """Write the effect of ``batch`` (position order) inside the caller's transaction.

        ``tables`` maps each owned table to the name to write (the live table, or its
        copy during a rebuild).
        """
        ...

    # A rebuild (projections/rebuild.py) reads the events issue by issue, folds each
    # issue's events into its one row of ``issue_table`` (``issue_columns``), COPYs the
    # rows, then calls ``derive`` for the other tables.
    issue_table: str
    issue_columns: tuple[str, ...]

    def fold(self, row: dict[str, Any] | None, event: Any, position: int) -> dict[str, Any]:
        """An issue's row after ``event`` (at ``position``), from its row before (None
        before Detected); ``row`` is left as it was."""
        ...

    def record(self, row: dict[str, Any]) -> tuple[Any, ...]:
        """The row as COPY takes it: its values in ``issue_columns`` order."""
        ...

    async def derive(self, conn: asyncpg.Connection, tables: dict[str, str]) -> None:
        """Fill the owned tables other than ``issue_table`` from it, after a bulk load
        (``tables`` as for ``apply``)."""
        ...


class ProjectionError(Exception):
    """An event the projection cannot apply (a bug or a corrupt store): it stops."""


async def read_batch(
    conn: asyncpg.Connection, mapper: Mapper[UUID], after: int, limit: int, upto: int | None = None
) -> list[tuple[int, Any]]:
    rows = await conn.fetch(
        f"SELECT {EVENT_COLUMNS} FROM inbox_events WHERE notification_id > $1"
        " AND ($3::bigint IS NULL OR notification_id <= $3)"
        " ORDER BY notification_id LIMIT $2",
        after,
        limit,
        upto,
    )
    return [(row["notification_id"], decode(mapper, row)) for row in rows]


async def lock_position(conn: asyncpg.Connection, name: str) -> int:
    """The projection's position, locked until the caller's transaction ends.

    The follower and ``inbox rebuild``'s swap both take this row lock first, before they
    touch the model's tables: whoever comes second waits, then reads the position the
    first one left, so no batch is applied twice or lost across a swap.
    """
    await conn.execute(
        "INSERT INTO projection_positions (name) VALUES ($1) ON CONFLICT DO NOTHING", name
    )
    position: int = await conn.fetchval(
        "SELECT position FROM projection_positions WHERE name = $1 FOR UPDATE", name
    )
    return position


@dataclass(frozen=True)
class FollowerConfig:
    batch_size: int = 1000
    poll_interval: float = 1.0
    max_backoff: float = 5.0


class Follower:
    """Keeps one projection up to date with the event store."""

    def __init__(
        self,
        projection: Projection,
        *,
        database_url: str,
        mapper: Mapper[UUID],
        config: FollowerConfig,
    ) -> None:
        self._projection = projection
        self._database_url = database_url
        self._mapper = mapper
        self._config = config
        self._live_tables = {table: table for table in projection.tables}

    async def run(self, stop: asyncio.Event) -> None:
        await run_as_leader(
            database_url=self._database_url,
            role=f"inbox-projection:{self._projection.name}",
            stop=stop,
            work=lambda conn: self._follow(conn, stop),
            max_backoff=self._config.max_backoff,
            command_timeout=_COMMAND_TIMEOUT_SECONDS,
        )

    async def _follow(self, conn: asyncpg.Connection, stop: asyncio.Event) -> None:
        name = self._projection.name
        wake = asyncio.Event()

        def on_notify(*_: Any) -> None:
            wake.set()

        await conn.add_listener("inbox_events", on_notify)
        try:
            while not stop.is_set():
                wake.clear()  # before the read: a NOTIFY after it wakes the wait below
                applied = await self.step(conn)
                if applied == 0:
                    await wait_any(wake, stop, self._config.poll_interval)
        finally:
            if not conn.is_closed():
                await conn.remove_listener("inbox_events", on_notify)
        log.info("projection %s: stopped", name)

    async def step(self, conn: asyncpg.Connection) -> int:
        """Apply one batch and move the position in one transaction; events applied."""
        name = self._projection.name
        async with conn.transaction():
            position = await lock_position(conn, name)
            batch = await read_batch(conn, self._mapper, position, self._config.batch_size)
            if not batch:
                return 0
            await self._projection.apply(conn, batch, self._live_tables)
            last = batch[-1][0]
            await conn.execute(
                "UPDATE projection_positions SET position = $2, updated_at = now() WHERE name = $1",
                name,
                last,
            )
            await conn.execute("SELECT pg_notify($1, $2)", POSITIONS_CHANNEL, f"{name}:{last}")
        APPLIED.labels(name).inc(len(batch))
        POSITION.labels(name).set(last)
        return len(batch)
