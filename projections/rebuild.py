"""Rebuild one read model from position 0 into fresh tables while the live one keeps
serving, then swap the fresh tables in atomically (``inbox rebuild NAME``).

1. ``CREATE TABLE <t>__rebuild (LIKE <t> INCLUDING ALL)`` for each table of the model, then
   drop the copy's indexes but its primary key, keeping their definitions.
2. Bulk load up to P, the newest event at that moment. Read the events issue by issue
   (keyset pages of ``batch_size`` in the event table's primary-key order, issue and
   version, with ``notification_id <= P``; the next page is read while this one is
   folded), fold each issue's events into its one row (``Projection.fold``) and COPY the
   rows into the copy of ``Projection.issue_table``, a COPY of up to ``_COPY_ROWS`` rows at
   a time on a second connection, streaming while the pages are read. Each row is
   written once, in primary-key order, into a table without its other indexes; memory
   holds two pages. Positions become visible in order (DESIGN.md), so every event up to
   P is there to read, and an issue's later events have later positions: the copy is the
   model as of P. Then ``Projection.derive`` fills the model's other tables from the
   loaded one, and the indexes are built again under the same names, two at a time.
3. Replay the events after P into the copies batch by batch with ``Projection.apply``
   (as the follower does); repeat until close to the newest event.
4. In one transaction: lock the model's position row (the live follower waits at its
   first statement), apply what is left up to the live position, lock the live tables,
   rename live → ``__old`` and ``__rebuild`` → live, drop the old ones, and store the
   position the new tables hold. Readers wait only for the renames, not for the replay.
   Then ANALYZE the new tables (nothing waits for it).

Progress (events applied, events in all) is reported after each page and batch. The
events and the connections come from the event source the caller passes in
(projections/source.py; ``adapters.eventlog.EventLog``).

An event the model cannot apply does not stop a rebuild (projections/quarantine.py): a
fold that fails or a state that does not decode leaves the issue's row as it was before
that event; a COPY that the database refuses (a value it cannot store) is left out, and
the issues it held are applied after the load event by event, as the follower does.
Every event left out is logged with its position and returned; the swap stores them as
the model's ``projection_failures`` in place of the old list (a fixed fold clears it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from projections import quarantine
from projections.follower import (
    POSITIONS_CHANNEL,
    Projection,
    apply_read,
    lock_position,
    read_batch,
)
from projections.quarantine import Failure, describe
from projections.source import EventSource

log = logging.getLogger(__name__)

SUFFIX = "__rebuild"
# Stop the open-transaction catch-up rounds once this close to the newest event.
_CLOSE_ENOUGH = 2000
# Connections building the copies' indexes at once.
_INDEX_BUILDERS = 2
# Rows per COPY of the bulk load: each COPY is one transaction, kept short so that a long
# rebuild does not hold back vacuum for its whole length.
_COPY_ROWS = 100_000

Progress = Callable[[int, int], None]  # (events applied so far, events to apply in all)


@dataclass(frozen=True)
class RebuildResult:
    events: int
    position: int
    seconds: float
    # The events left out (position order): the model lacks their effect.
    failures: tuple[Failure, ...] = ()

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


async def rebuild(
    source: EventSource,
    projection: Projection,
    *,
    batch_size: int = 2000,
    progress: Progress | None = None,
    swap: bool = True,
) -> RebuildResult:
    """Rebuild ``projection``; with ``swap=False`` leave the copy in ``<t>__rebuild``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    started = time.monotonic()
    shadow = {table: f"{table}{SUFFIX}" for table in projection.tables}
    conn = await source.connect(f"inbox-rebuild:{projection.name}")
    try:
        async with conn.transaction():
            builds = [
                statement
                for table, copy in shadow.items()
                for statement in await _copy_without_indexes(conn, table, copy)
            ]
        total = await source.estimate(conn)
        position = await source.newest(conn)  # the bulk load's P
        failures: dict[int, Failure] = {}
        applied, refused = await _load(
            source,
            projection,
            shadow,
            position,
            batch_size,
            progress,
            total,
            failures,
        )
        await projection.derive(conn, shadow)
        for first, last in refused:
            await _apply_issues(
                conn, projection, source, shadow, first, last, position, batch_size, failures
            )
        await _build(source, conn, builds)
        while True:  # what came after P
            newest = await source.newest(conn)
            if newest - position <= _CLOSE_ENOUGH:
                break
            position, n = await _replay(
                conn,
                projection,
                source,
                shadow,
                position,
                newest,
                batch_size,
                progress,
                applied,
                total,
                failures,
            )
            applied += n
        if not swap:
            left_out = _sorted(failures)
            quarantine.report(f"rebuild {projection.name}", left_out)
            return RebuildResult(applied, position, time.monotonic() - started, left_out)
        async with conn.transaction():
            live = await lock_position(conn, projection.name)
            # Bring the copy to at least the live position, inside the lock: the live
            # follower is paused at its first statement meanwhile.
            target = max(live, position)
            while position < target:
                position, n = await _replay(
                    conn,
                    projection,
                    source,
                    shadow,
                    position,
                    target,
                    batch_size,
                    progress,
                    applied,
                    max(total, applied),
                    failures,
                )
                applied += n
                if n == 0:
                    break
            await _swap_tables(conn, shadow)
            await conn.execute(
                "UPDATE projection_positions SET position = $2, updated_at = now() WHERE name = $1",
                projection.name,
                position,
            )
            # What the live model lacked is replaced by what the new one lacks.
            left_out = _sorted(failures)
            await conn.execute(
                "DELETE FROM projection_failures WHERE projection = $1", projection.name
            )
            await quarantine.record(conn, projection.name, left_out)
            await conn.execute(
                "SELECT pg_notify($1, $2)", POSITIONS_CHANNEL, f"{projection.name}:{position}"
            )
        quarantine.report(f"rebuild {projection.name}", left_out)
        # Fresh tables have no statistics yet (autovacuum would get there within a minute).
        for table in projection.tables:
            await conn.execute(f"ANALYZE {table}")
        return RebuildResult(applied, position, time.monotonic() - started, left_out)
    finally:
        await conn.close()


async def _swap_tables(conn: asyncpg.Connection, shadow: dict[str, str]) -> None:
    """Put each copy in place of its live table (in the caller's transaction)."""
    for table in shadow:
        await conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    for table, copy in shadow.items():
        names = await _index_names(conn, table)
        await conn.execute(f"ALTER TABLE {table} RENAME TO {table}__old")
        await conn.execute(f"ALTER TABLE {copy} RENAME TO {table}")
        await conn.execute(f"DROP TABLE {table}__old")
        # The copy's indexes got generated names: give them the live names back, so that
        # later migrations naming an index still find it.
        for shape, index in (await _index_names(conn, table)).items():
            if shape in names and names[shape] != index:
                await conn.execute(f'ALTER INDEX "{index}" RENAME TO "{names[shape]}"')


async def _copy_without_indexes(conn: asyncpg.Connection, table: str, copy: str) -> list[str]:
    """Create ``copy`` like ``table`` and drop its indexes (and the constraints they back)
    but the primary key; returns the statements that build them again, same names.

    Building an index after the load costs about a third of keeping it up to date row by
    row. The primary key stays: the load writes the issue table in its order, which costs
    next to nothing."""
    await conn.execute(f"DROP TABLE IF EXISTS {copy}")
    await conn.execute(f"CREATE TABLE {copy} (LIKE {table} INCLUDING ALL)")
    indexes = await conn.fetch(
        "SELECT index.relname AS name, pg_get_indexdef(i.indexrelid) AS definition,"
        " c.conname AS constraint_name, pg_get_constraintdef(c.oid) AS constraint_definition"
        " FROM pg_index i JOIN pg_class index ON index.oid = i.indexrelid"
        " LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid"
        " WHERE i.indrelid = $1::text::regclass AND NOT i.indisprimary"
        " ORDER BY index.relname",
        copy,
    )
    builds = []
    for index in indexes:
        if index["constraint_name"] is not None:
            name = index["constraint_name"]
            await conn.execute(f'ALTER TABLE {copy} DROP CONSTRAINT "{name}"')
            builds.append(
                f'ALTER TABLE {copy} ADD CONSTRAINT "{name}" {index["constraint_definition"]}'
            )
        else:
            await conn.execute(f'DROP INDEX "{index["name"]}"')
            builds.append(index["definition"])
    return builds


async def _build(source: EventSource, conn: asyncpg.Connection, statements: list[str]) -> None:
    """Run ``statements`` (index builds, which do not block each other) on ``conn`` and
    more connections at once."""
    queue = list(reversed(statements))

    async def builder(one: asyncpg.Connection) -> None:
        while queue:
            await one.execute(queue.pop())

    others = [
        await source.connect("inbox-rebuild:indexes")
        for _ in range(min(_INDEX_BUILDERS, len(statements)) - 1)
    ]
    try:
        async with asyncio.TaskGroup() as group:  # a failure cancels the other builders
            for one in [conn, *others]:
                group.create_task(builder(one))
    finally:
        for one in others:
            await one.close()


async def _load(
    source: EventSource,
    projection: Projection,
    tables: dict[str, str],
    upto: int,
    page: int,
    progress: Progress | None,
    total: int,
    failures: dict[int, Failure],
) -> tuple[int, list[tuple[UUID, UUID]]]:
    """COPY every issue's row as of position ``upto`` into the copy of the projection's
    issue table; returns how many events were read, and the (first, last) issue ids of
    each COPY the database refused (none of its rows are in the copy). Events that do not
    decode or fold are added to ``failures``."""
    name = f"inbox-rebuild:{projection.name}"
    reader = await source.connect(f"{name}:read")
    writer = await source.connect(f"{name}:copy")
    pages = _issue_pages(reader, projection, source, upto, page, failures)
    key = projection.issue_columns.index("issue_id")
    loaded, finished = 0, False
    refused: list[tuple[UUID, UUID]] = []

    async def some_rows(issues: list[UUID]) -> AsyncIterator[tuple[Any, ...]]:
        """The rows of the next pages, until ``_COPY_ROWS`` or the end; ``issues`` gets
        the first and the last issue id of the pages read (before their rows go out)."""
        nonlocal loaded, finished
        rows = 0
        while rows < _COPY_ROWS:
            read = await anext(pages, None)
            if read is None:
                finished = True
                return
            records, events = read
            if records:
                issues[:] = [issues[0] if issues else records[0][key], records[-1][key]]
            for record in records:
                yield record
            rows += len(records)
            loaded += events
            if progress is not None:
                progress(loaded, max(total, loaded))

    try:
        await _encode_timestamps_fast(writer)
        while not finished:
            issues: list[UUID] = []
            try:
                await writer.copy_records_to_table(
                    tables[projection.issue_table],
                    records=some_rows(issues),
                    columns=projection.issue_columns,
                )
            except Exception as exc:
                if not source.about_the_event(exc) or not issues:
                    raise
                log.warning(
                    "rebuild %s: the database refused a COPY of the issues %s to %s (%s);"
                    " applying them event by event after the load",
                    projection.name,
                    issues[0],
                    issues[-1],
                    describe(exc),
                )
                refused.append((issues[0], issues[-1]))
    finally:
        await pages.aclose()
        await writer.close()
        await reader.close()
    return loaded, refused


async def _apply_issues(
    conn: asyncpg.Connection,
    projection: Projection,
    source: EventSource,
    tables: dict[str, str],
    first: UUID,
    last: UUID,
    upto: int,
    page: int,
    failures: dict[int, Failure],
) -> None:
    """Apply the events up to position ``upto`` of the issues ``first`` to ``last`` into
    ``tables`` as the follower does (each issue's events in version order, one page per
    transaction), leaving out and adding to ``failures`` what cannot be applied."""
    after: tuple[UUID, int] = (first, 0)
    while True:
        rows = await source.issue_range(conn, after, last, upto, page)
        if not rows:
            return
        events, undecodable = quarantine.decode_rows(source, rows)
        async with conn.transaction():
            left_out = undecodable + await quarantine.apply_isolating(
                conn, projection, events, tables, source
            )
        failures.update((failure.position, failure) for failure in left_out)
        after = (rows[-1]["originator_id"], rows[-1]["originator_version"])


_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


async def _encode_timestamps_fast(conn: asyncpg.Connection) -> None:
    """timestamptz as microseconds since PostgreSQL's epoch, computed in two operations:
    asyncpg's own encoder (infinity checks, ``astimezone``) is over half of a COPYed
    inbox row's encoding time. A naive datetime fails (no local time is assumed)."""

    def encode(value: datetime) -> tuple[int]:
        return ((value - _PG_EPOCH) // _MICROSECOND,)

    def decode(value: tuple[int]) -> datetime:
        return _PG_EPOCH + value[0] * _MICROSECOND

    await conn.set_type_codec(
        "timestamptz", schema="pg_catalog", encoder=encode, decoder=decode, format="tuple"
    )


async def _issue_pages(
    conn: asyncpg.Connection,
    projection: Projection,
    source: EventSource,
    upto: int,
    page: int,
    failures: dict[int, Failure],
) -> AsyncGenerator[tuple[list[tuple[Any, ...]], int], None]:
    """Each issue's row (as a record) folded from its events up to position ``upto``,
    reading the events in pages of ``page`` in (issue, version) order: per page, the rows
    of the issues it completed and how many events it held. Each event is folded as soon
    as it is decoded, so that little outlives a page. An event that does not decode or
    fold is added to ``failures`` and the row stays as it was (none, before Detected)."""
    fold, record = projection.fold, projection.record
    row: dict[str, Any] | None = None
    issue: UUID | None = None
    ahead: asyncio.Future[list[asyncpg.Record]] = asyncio.ensure_future(
        source.by_issue(conn, (UUID(int=0), 0), upto, page)
    )
    try:
        while True:
            rows = await ahead
            if len(rows) == page:  # read the next page while this one is folded
                last = rows[-1]
                ahead = asyncio.ensure_future(
                    source.by_issue(
                        conn, (last["originator_id"], last["originator_version"]), upto, page
                    )
                )
                await asyncio.sleep(0)  # it sends the query
            done = []
            for stored in rows:
                if stored["originator_id"] != issue:
                    if row is not None:
                        done.append(record(row))
                    row, issue = None, stored["originator_id"]
                try:
                    event = source.decode(stored)
                except Exception as exc:
                    _left_out(source, failures, stored, exc, "cannot decode: ")
                    continue
                try:
                    row = fold(row, event, stored["notification_id"])
                except Exception as exc:
                    _left_out(source, failures, stored, exc, "")
            if len(rows) < page:
                if row is not None:
                    done.append(record(row))
                yield done, len(rows)
                return
            yield done, len(rows)
    finally:  # an early end: leave no read running, nor its outcome unretrieved
        ahead.cancel()
        await asyncio.wait([ahead])
        if not ahead.cancelled():
            ahead.exception()


def _left_out(
    source: EventSource,
    failures: dict[int, Failure],
    stored: asyncpg.Record,
    exc: Exception,
    prefix: str,
) -> None:
    if not source.about_the_event(exc):
        raise exc
    position = stored["notification_id"]
    failures[position] = Failure(
        position, stored["originator_id"], stored["originator_version"], prefix + describe(exc)
    )


def _sorted(failures: dict[int, Failure]) -> tuple[Failure, ...]:
    return tuple(failures[position] for position in sorted(failures))


async def _replay(
    conn: asyncpg.Connection,
    projection: Projection,
    source: EventSource,
    tables: dict[str, str],
    position: int,
    upto: int,
    batch_size: int,
    progress: Progress | None,
    applied: int,
    total: int,
    failures: dict[int, Failure],
) -> tuple[int, int]:
    """Apply events in (position, upto] to ``tables``; returns (new position, events
    read). What cannot be applied is added to ``failures``."""
    count = 0
    while position < upto:
        read = await read_batch(conn, source, position, batch_size, upto)
        if read.last is None:
            break
        async with conn.transaction():
            left_out = await apply_read(conn, projection, read, tables, source)
        failures.update((failure.position, failure) for failure in left_out)
        position = read.last
        count += len(read.events) + len(read.undecodable)
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
