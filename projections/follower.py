"""What every read model's follower does with a batch of the log.

A projection is a name, the tables it owns, and ``apply``: given a connection inside a
transaction and a batch of (position, domain event), write the read model. The follower
reads a batch after the projection's stored position from its event source (the port of
projections/source.py), and calls ``apply`` and moves the position **in one
transaction**: a crash anywhere leaves the model and its position consistent, so every
event is applied exactly once.

One follower is active per projection (a PostgreSQL advisory lock on its own connection);
others stand by. It wakes on the event store's ``NOTIFY inbox_events`` and polls as a
fallback: the loop the relay shares (adapters/follow.py). The composition root passes in
both, the source and that loop (``following``). After each batch it sends ``NOTIFY
projection_positions, '<name>:<position>'`` so readers waiting for ``min_position`` wake
at once.

An event the projection cannot apply (its stored state does not decode, the fold refuses
it, the database refuses a value it holds) does not stop it: the batch is applied without
it, it is listed in ``projection_failures`` and the position moves past it in the same
transaction (projections/quarantine.py says what that means for its issue). Any other
failure of a batch is tried again with a backoff: a lost connection by reconnecting (as
the standby would), anything else on the same connection, its error stored in
``projection_positions.last_error`` until a batch commits. Every read of the log, even
an empty one, stores ``checked_at``: ``GET /ready`` tells a follower that stopped from
one that has nothing to do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
from prometheus_client import Counter, Gauge

from projections import quarantine
from projections.quarantine import Failure
from projections.source import EventSource

log = logging.getLogger(__name__)

APPLIED = Counter("inbox_projection_events_total", "Events applied", ["projection"])
POSITION = Gauge("inbox_projection_position", "A projection's stored position", ["projection"])
FAILING = Gauge(
    "inbox_projection_failing",
    "1 while a projection's batch fails for a reason other than its events (tried again)",
    ["projection"],
)

POSITIONS_CHANNEL = "projection_positions"

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
    """An event the projection cannot apply (a bug or a corrupt store): it is skipped and
    listed (projections/quarantine.py)."""


@dataclass(frozen=True)
class Read:
    """A batch read from the log: the decoded events, the ones that did not decode, and
    the position of the last event read (where the projection moves to)."""

    events: list[tuple[int, Any]]
    undecodable: list[Failure]
    last: int | None


async def read_batch(
    conn: asyncpg.Connection,
    source: EventSource,
    after: int,
    limit: int,
    upto: int | None = None,
) -> Read:
    rows = await source.after(conn, after, limit, upto)
    events, undecodable = quarantine.decode_rows(source, rows)
    return Read(events, undecodable, rows[-1]["notification_id"] if rows else None)


async def apply_read(
    conn: asyncpg.Connection,
    projection: Projection,
    read: Read,
    tables: dict[str, str],
    source: EventSource,
) -> list[Failure]:
    """Apply what of ``read`` can be applied, in the caller's transaction; returns what
    was left out, in position order."""
    failures = list(read.undecodable)
    if read.events:
        failures += await quarantine.apply_isolating(conn, projection, read.events, tables, source)
    failures.sort(key=lambda failure: failure.position)
    return failures


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


class Following(Protocol):
    """Runs a follower as the one active worker of its role: elected by an advisory lock,
    woken on NOTIFY, polling as a fallback, failed steps tried again after a backoff
    (``adapters.follow.LogFollower``, passed in by the composition root)."""

    async def run(self, worker: Any, stop: asyncio.Event, *, retrying: Any = None) -> None: ...


class Follower:
    """Keeps one projection up to date with the event store: one :meth:`step` per batch,
    run by ``following``."""

    def __init__(
        self,
        projection: Projection,
        *,
        source: EventSource,
        following: Following,
        batch_size: int = 1000,
    ) -> None:
        self._projection = projection
        self._source = source
        self._following = following
        self._batch_size = batch_size
        self._live_tables = {table: table for table in projection.tables}

    @property
    def role(self) -> str:
        return f"inbox-projection:{self._projection.name}"

    async def run(self, stop: asyncio.Event) -> None:
        await self._following.run(self, stop, retrying=self)
        log.info("projection %s: stopped", self._projection.name)

    async def start(self, conn: asyncpg.Connection) -> None:
        """Nothing to set up: every step reads the stored position."""

    async def step(self, conn: asyncpg.Connection) -> bool:
        """Apply one batch and move the position in one transaction; True when it read
        events (applied or skipped)."""
        name = self._projection.name
        async with conn.transaction():
            position = await lock_position(conn, name)
            # Committed with the batch: a batch that fails leaves the old values.
            await conn.execute(
                "UPDATE projection_positions SET checked_at = now(), last_error = NULL,"
                " failed_at = NULL WHERE name = $1",
                name,
            )
            read = await read_batch(conn, self._source, position, self._batch_size)
            if read.last is None:
                return False
            failures = await apply_read(
                conn, self._projection, read, self._live_tables, self._source
            )
            await quarantine.record(conn, name, failures)
            last = read.last
            await conn.execute(
                "UPDATE projection_positions SET position = $2, updated_at = now() WHERE name = $1",
                name,
                last,
            )
            await conn.execute("SELECT pg_notify($1, $2)", POSITIONS_CHANNEL, f"{name}:{last}")
        quarantine.report(f"projection {name}", failures)
        quarantine.SKIPPED.labels(name).inc(len(failures))
        read_count = len(read.events) + len(read.undecodable)
        APPLIED.labels(name).inc(read_count - len(failures))
        POSITION.labels(name).set(last)
        return True

    async def failed(
        self, conn: asyncpg.Connection, exc: Exception, attempt: int, delay: float
    ) -> None:
        name = self._projection.name
        log.exception(
            "projection %s: a batch failed (attempt %d); trying it again in %.1fs",
            name,
            attempt,
            delay,
        )
        FAILING.labels(name).set(1)
        await self._record_error(conn, exc)

    def recovered(self, attempts: int) -> None:
        log.info("projection %s: applying again after %d failures", self._projection.name, attempts)
        FAILING.labels(self._projection.name).set(0)

    async def _record_error(self, conn: asyncpg.Connection, exc: Exception) -> None:
        """Store why the last batch failed, for GET /ready (cleared by the next commit)."""
        try:
            # The batch's transaction rolled back, the row's insert too if it was new.
            await conn.execute(
                "INSERT INTO projection_positions (name, last_error, failed_at)"
                " VALUES ($1, $2, now()) ON CONFLICT (name) DO UPDATE"
                " SET last_error = EXCLUDED.last_error, failed_at = EXCLUDED.failed_at",
                self._projection.name,
                quarantine.describe(exc),
            )
        except Exception as error:
            if self._source.connection_lost(error):
                raise
            log.exception("projection %s: cannot store the error", self._projection.name)
