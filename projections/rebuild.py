"""Rebuild one read model from position 0 into fresh tables while the live one keeps
serving, then swap the fresh tables in atomically (``inbox rebuild NAME``).

1. ``CREATE TABLE <t>__rebuild (LIKE <t> INCLUDING ALL)`` for each table of the model.
2. Replay every stored event into them, batch by batch (memory stays flat), reporting
   progress; repeat until close to the newest event.
3. In one transaction: lock the model's position row (the live follower waits at its
   first statement), apply what is left up to the live position, lock the live tables,
   rename live → ``__old`` and ``__rebuild`` → live, drop the old ones, and store the
   position the new tables hold. Readers wait only for the renames, not for the replay.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

import asyncpg
from eventsourcing.persistence import Mapper

from adapters import postgres
from projections.follower import POSITIONS_CHANNEL, Projection, lock_position, read_batch

SUFFIX = "__rebuild"
# Stop the open-transaction catch-up rounds once this close to the newest event.
_CLOSE_ENOUGH = 2000

Progress = Callable[[int, int], None]  # (events applied so far, events to apply in all)


@dataclass(frozen=True)
class RebuildResult:
    events: int
    position: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


async def rebuild(
    database_url: str,
    projection: Projection,
    mapper: Mapper[UUID],
    *,
    batch_size: int = 2000,
    progress: Progress | None = None,
    swap: bool = True,
) -> RebuildResult:
    """Rebuild ``projection``; with ``swap=False`` leave the copy in ``<t>__rebuild``."""
    started = time.monotonic()
    shadow = {table: f"{table}{SUFFIX}" for table in projection.tables}
    conn = await postgres.connect(database_url, name=f"inbox-rebuild:{projection.name}")
    try:
        async with conn.transaction():
            for table, copy in shadow.items():
                await conn.execute(f"DROP TABLE IF EXISTS {copy}")
                await conn.execute(f"CREATE TABLE {copy} (LIKE {table} INCLUDING ALL)")
        position, applied = 0, 0
        total = await _count(conn)
        while True:
            newest = await _newest(conn)
            if newest - position <= _CLOSE_ENOUGH:
                break
            position, n = await _replay(
                conn,
                projection,
                mapper,
                shadow,
                position,
                newest,
                batch_size,
                progress,
                applied,
                total,
            )
            applied += n
        if not swap:
            return RebuildResult(applied, position, time.monotonic() - started)
        async with conn.transaction():
            live = await lock_position(conn, projection.name)
            # Bring the copy to at least the live position, inside the lock: the live
            # follower is paused at its first statement meanwhile.
            target = max(live, position)
            while position < target:
                position, n = await _replay(
                    conn,
                    projection,
                    mapper,
                    shadow,
                    position,
                    target,
                    batch_size,
                    progress,
                    applied,
                    max(total, applied),
                )
                applied += n
                if n == 0:
                    break
            for table in projection.tables:
                await conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            for table, copy in shadow.items():
                names = await _index_names(conn, table)
                await conn.execute(f"ALTER TABLE {table} RENAME TO {table}__old")
                await conn.execute(f"ALTER TABLE {copy} RENAME TO {table}")
                await conn.execute(f"DROP TABLE {table}__old")
                # The copy's indexes got generated names: give them the live names back,
                # so that later migrations naming an index still find it.
                for shape, index in (await _index_names(conn, table)).items():
                    if shape in names and names[shape] != index:
                        await conn.execute(f'ALTER INDEX "{index}" RENAME TO "{names[shape]}"')
            await conn.execute(
                "UPDATE projection_positions SET position = $2, updated_at = now() WHERE name = $1",
                projection.name,
                position,
            )
            await conn.execute(
                "SELECT pg_notify($1, $2)", POSITIONS_CHANNEL, f"{projection.name}:{position}"
            )
        return RebuildResult(applied, position, time.monotonic() - started)
    finally:
        await conn.close()


async def _replay(
    conn: asyncpg.Connection,
    projection: Projection,
    mapper: Mapper[UUID],
    tables: dict[str, str],
    position: int,
    upto: int,
    batch_size: int,
    progress: Progress | None,
    applied: int,
    total: int,
) -> tuple[int, int]:
    """Apply events in (position, upto] to ``tables``; returns (new position, applied)."""
    count = 0
    while position < upto:
        batch = await read_batch(conn, mapper, position, batch_size, upto)
        if not batch:
            break
        await projection.apply(conn, batch, tables)
        position = batch[-1][0]
        count += len(batch)
        if progress is not None:
            progress(applied + count, max(total, applied + count))
    return position, count


async def _index_names(conn: asyncpg.Connection, table: str) -> dict[str, str]:
    """Index definition without its name (its shape) -> index name, for one table."""
    rows = await conn.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = $1",
        table,
    )
    return {
        row["indexdef"].replace(f"INDEX {row['indexname']} ON", "INDEX ON", 1): row["indexname"]
        for row in rows
    }


async def _newest(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT coalesce(max(notification_id), 0) FROM inbox_events"))


async def _count(conn: asyncpg.Connection) -> int:
    """About how many events there are, for the progress bar (fast, from statistics)."""
    estimate = await conn.fetchval(
        "SELECT reltuples::bigint FROM pg_class WHERE relname = 'inbox_events'"
    )
    return max(int(estimate or 0), 0) or await _newest(conn)
