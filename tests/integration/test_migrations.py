"""The migrations runner against real PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from adapters import postgres
from adapters.postgres import MigrationError, apply_migrations

REPO_MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


async def test_applies_each_file_once_in_order(fresh_database: str) -> None:
    applied = await apply_migrations(fresh_database, REPO_MIGRATIONS)
    assert applied == sorted(p.name for p in REPO_MIGRATIONS.glob("*.sql"))
    assert await apply_migrations(fresh_database, REPO_MIGRATIONS) == []


async def test_two_replicas_starting_at_once_apply_each_file_once(fresh_database: str) -> None:
    results = await asyncio.gather(
        *(apply_migrations(fresh_database, REPO_MIGRATIONS) for _ in range(4))
    )
    applied = [name for result in results for name in result]
    assert sorted(applied) == sorted(p.name for p in REPO_MIGRATIONS.glob("*.sql"))


async def test_a_failing_file_rolls_back_and_stops(fresh_database: str, tmp_path: Path) -> None:
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE a (x int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE b (x int); SELECT nonsense;")
    (tmp_path / "0003_later.sql").write_text("CREATE TABLE c (x int);")
    with pytest.raises(MigrationError, match=r"0002_bad\.sql"):
        await apply_migrations(fresh_database, tmp_path)
    conn = await postgres.connect(fresh_database)
    try:
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
    finally:
        await conn.close()
    assert "a" in tables
    assert "b" not in tables, "the failed file must leave nothing behind"
    assert "c" not in tables, "nothing after a failed file may run"


async def test_an_edited_applied_file_is_refused(fresh_database: str, tmp_path: Path) -> None:
    migration = tmp_path / "0001_one.sql"
    migration.write_text("CREATE TABLE a (x int);")
    await apply_migrations(fresh_database, tmp_path)
    migration.write_text("CREATE TABLE a (x bigint);")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await apply_migrations(fresh_database, tmp_path)


async def test_watch_rows_of_before_0006_keep_their_events(
    fresh_database: str, tmp_path: Path
) -> None:
    """0006 moves each order's events out of its watch row; the state is folded again
    from them on the next visit (state NULL)."""
    for path in sorted(REPO_MIGRATIONS.glob("*.sql")):
        if path.name < "0006":
            (tmp_path / path.name).write_text(path.read_text())
    await apply_migrations(fresh_database, tmp_path)
    conn = await postgres.connect(fresh_database)
    try:
        await conn.execute(
            "INSERT INTO order_watch (order_id, events) VALUES ('o1', $1::jsonb)",
            '[{"event_id": "e1", "type": "order_placed"}, {"event_id": "e2", "type": "x"}]',
        )
        await apply_migrations(fresh_database, REPO_MIGRATIONS)
        rows = await conn.fetch("SELECT order_id, event_id FROM order_events ORDER BY event_id")
        watch = await conn.fetchrow("SELECT state, fold_version FROM order_watch")
    finally:
        await conn.close()
    assert [tuple(r) for r in rows] == [("o1", "e1"), ("o1", "e2")]
    assert watch is not None
    assert tuple(watch) == (None, 0)
