"""``inbox rebuild`` against real PostgreSQL: the bulk load issue by issue (issues split
across pages, many COPYs), events written while it runs, the copy's indexes, failures."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest

from adapters import postgres
from adapters.eventlog import EventLog
from app.service import IssueService
from projections import PROJECTIONS
from projections import rebuild as rebuilding
from projections.follower import ProjectionError
from projections.inbox import InboxProjection
from projections.rebuild import SUFFIX, rebuild
from projections.rows import Row
from tests.integration.helpers import note
from tests.integration.projecting import (
    assert_read_models_match,
    running_projections,
    wait_projected,
    write_mixed,
)

_KEYS = {
    "inbox_issues": "issue_id",
    "order_issues": "issue_id",
    "stats_issues": "issue_id",
    "stats_counts": "status, severity, kind, vertical, country, city",
}


async def _rows(url: str, tables: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Each table's rows in key order (``tables``: model table -> the table to read)."""
    conn = await postgres.connect(url)
    try:
        found = {}
        for table, read in tables.items():
            rows = await conn.fetch(f"SELECT * FROM {read} ORDER BY {_KEYS[table]}")
            found[table] = [dict(r) for r in rows if table != "stats_counts" or r["n"]]
        return found
    finally:
        await conn.close()


async def _events(url: str) -> tuple[int, int]:
    """(how many events are stored, the newest position)."""
    conn = await postgres.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, coalesce(max(notification_id), 0) AS newest FROM inbox_events"
        )
        assert row is not None
        return row["n"], row["newest"]
    finally:
        await conn.close()


async def _schema(url: str, tables: tuple[str, ...]) -> set[tuple[str, str]]:
    """Every index and constraint of ``tables``, by name with its definition."""
    conn = await postgres.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT indexname AS name, indexdef AS definition FROM pg_indexes"
            " WHERE tablename = ANY($1::text[])"
            " UNION ALL SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = ANY(SELECT oid FROM pg_class WHERE relname = ANY($1::text[]))",
            list(tables),
        )
        return {(r["name"], r["definition"]) for r in rows}
    finally:
        await conn.close()


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
async def test_a_bulk_load_over_many_pages_and_copies_equals_the_live_model(
    db: str, writer: IssueService, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rebuilding, "_COPY_ROWS", 7)  # a COPY (a transaction) per few rows
    write_mixed(writer, 90, steps=6)  # issues of 1 to 7 events: many run over a page's end
    projection = PROJECTIONS[name]
    async with running_projections(db, writer):
        await wait_projected(db)
    live = await _rows(db, {t: t for t in projection.tables})
    count, newest = await _events(db)
    progress: list[tuple[int, int]] = []

    result = await rebuild(
        EventLog(db, writer.app.mapper),
        projection,
        batch_size=5,
        swap=False,
        progress=lambda done, total: progress.append((done, total)),
    )

    assert (result.events, result.position) == (count, newest)
    assert await _rows(db, {t: f"{t}{SUFFIX}" for t in projection.tables}) == live
    assert len(progress) >= count // 5
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)
    assert progress[-1][0] == count
    assert all(done <= total for done, total in progress)


@pytest.mark.parametrize("page", [1, 2, 0])  # 0: one page of every event, then an empty one
async def test_any_page_size_gives_the_same_model(db: str, writer: IssueService, page: int) -> None:
    write_mixed(writer, 12, steps=4)
    projection = PROJECTIONS["inbox"]
    async with running_projections(db, writer):
        await wait_projected(db)
    live = await _rows(db, {"inbox_issues": "inbox_issues"})
    count, _ = await _events(db)
    result = await rebuild(
        EventLog(db, writer.app.mapper), projection, batch_size=page or count, swap=False
    )
    assert result.events == count
    assert await _rows(db, {"inbox_issues": f"inbox_issues{SUFFIX}"}) == live


async def test_events_written_during_the_bulk_load_are_in_the_swapped_in_model(
    db: str, writer: IssueService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rebuilding, "_CLOSE_ENOUGH", 0)  # catch-up rounds before the swap too
    first = write_mixed(writer, 40, steps=4)
    later: list[object] = []

    def progress(_done: int, _total: int) -> None:
        if not later:  # once, while the bulk load runs: its last position is already fixed
            later.append(write_mixed(writer, 15, steps=3, seed=11))
            writer.execute_batch([note(issue_id, "while rebuilding") for issue_id in first])

    async with running_projections(db, writer):
        await wait_projected(db)
        _, newest_before = await _events(db)
        result = await rebuild(
            EventLog(db, writer.app.mapper), PROJECTIONS["inbox"], batch_size=10, progress=progress
        )
        count, newest = await _events(db)
        await wait_projected(db)
    assert later
    # Each event was applied by the rebuild exactly once: the bulk load up to the
    # position fixed at its start, the catch-up after it.
    assert newest > newest_before
    assert (result.events, result.position) == (count, newest)
    await assert_read_models_match(db, writer)


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
async def test_the_swapped_in_tables_have_the_live_indexes_and_constraints(
    db: str, writer: IssueService, name: str
) -> None:
    write_mixed(writer, 20, steps=3)
    projection = PROJECTIONS[name]
    before = await _schema(db, projection.tables)
    await rebuild(EventLog(db, writer.app.mapper), projection, batch_size=10)
    assert await _schema(db, projection.tables) == before
    assert not await _schema(db, tuple(f"{t}{SUFFIX}" for t in projection.tables))


class _FailingInbox(InboxProjection):
    """The inbox model, raising ``error`` at the ``fail_at``-th event it folds."""

    def __init__(self, fail_at: int, error: Exception) -> None:
        self._left = fail_at
        self._error = error

    def fold(self, row: Row | None, event: Any, position: int) -> Row:
        self._left -= 1
        if self._left == 0:
            raise self._error
        return super().fold(row, event, position)


async def test_an_event_the_fold_refuses_is_left_out_and_reported(
    db: str, writer: IssueService
) -> None:
    write_mixed(writer, 30, steps=4)
    result = await rebuild(
        EventLog(db, writer.app.mapper), _FailingInbox(25, ProjectionError("refused")), batch_size=4
    )
    count, newest = await _events(db)
    assert (result.events, result.position) == (count, newest)
    assert [f.error for f in result.failures] == ["ProjectionError: refused"]
    conn = await postgres.connect(db)
    try:
        listed = await conn.fetch("SELECT * FROM projection_failures WHERE projection = 'inbox'")
        issues = await conn.fetchval("SELECT count(DISTINCT originator_id) FROM inbox_events")
        rows = await conn.fetchval("SELECT count(*) FROM inbox_issues")
    finally:
        await conn.close()
    assert [(r["position"], r["error"]) for r in listed] == [
        (result.failures[0].position, "ProjectionError: refused")
    ]
    # A refused Detected leaves its issue out; any other event leaves its row as it was.
    assert rows in (issues, issues - 1)


async def test_an_error_not_about_the_events_stops_the_rebuild_and_leaves_the_live_model_alone(
    db: str, writer: IssueService
) -> None:
    write_mixed(writer, 30, steps=4)
    async with running_projections(db, writer):
        await wait_projected(db)
    live = await _rows(db, {"inbox_issues": "inbox_issues"})
    refusal = asyncpg.exceptions.UndefinedTableError("refused")
    with pytest.raises(asyncpg.exceptions.UndefinedTableError, match="refused"):
        await rebuild(EventLog(db, writer.app.mapper), _FailingInbox(25, refusal), batch_size=4)
    assert await _rows(db, {"inbox_issues": "inbox_issues"}) == live
    conn = await postgres.connect(db)
    try:
        for _ in range(100):  # its connections close (their backends end a moment later)
            left = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'inbox-rebuild%'"
                " AND datname = current_database()"
            )
            if left == 0:
                break
            await asyncio.sleep(0.05)
        assert left == 0
    finally:
        await conn.close()


async def test_the_copy_connection_writes_timestamps_as_asyncpg_does(db: str) -> None:
    plain = await postgres.connect(db)
    fast = await postgres.connect(db)
    try:
        await rebuilding._encode_timestamps_fast(fast)
        for value in (
            datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC),
            datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            datetime(1970, 1, 1, tzinfo=UTC),
            datetime(2026, 3, 29, 3, 30, tzinfo=timezone(timedelta(hours=3, minutes=30))),
        ):
            as_text = "SELECT $1::timestamptz::text"
            assert await fast.fetchval(as_text, value) == await plain.fetchval(as_text, value)
            assert await fast.fetchval("SELECT $1::timestamptz", value) == value
        with pytest.raises(asyncpg.DataError, match="offset-naive"):
            await fast.fetchval("SELECT $1::timestamptz", datetime(2026, 1, 1))
    finally:
        await fast.close()
        await plain.close()
