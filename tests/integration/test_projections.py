"""The read models against real PostgreSQL: exactly once, through kills and rebuilds."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from adapters import postgres
from adapters.eventlog import EventLog
from app.bootstrap import Endpoints
from app.service import IssueService
from projections import PROJECTIONS
from projections.rebuild import rebuild
from tests.integration.projecting import (
    assert_read_models_match,
    positions,
    running_projections,
    wait_projected,
    write_mixed,
)
from tests.integration.test_relay import KeepWriting

REPO = Path(__file__).resolve().parents[2]


async def test_read_models_match_the_aggregates(db: str, writer: IssueService) -> None:
    write_mixed(writer, 60, steps=6)
    async with running_projections(db, writer):
        await wait_projected(db)
        write_mixed(writer, 20, steps=3, seed=8)  # and live, after catching up
        await wait_projected(db)
    await assert_read_models_match(db, writer)


async def test_two_followers_per_projection_apply_each_event_once(
    db: str, writer: IssueService
) -> None:
    async with running_projections(db, writer, batch_size=7), running_projections(db, writer):
        write_mixed(writer, 40, steps=5)
        await wait_projected(db)
    await assert_read_models_match(db, writer)


async def test_a_projection_process_killed_mid_batch_leaves_every_count_right(
    db: str, writer: IssueService, endpoints: Endpoints
) -> None:
    write_mixed(writer, 100, steps=4)
    env = os.environ | {
        "INBOX_DATABASE_URL": db,
        "INBOX_NATS_URL": endpoints.nats_url,
        "INBOX_PROJECTION_BATCH_SIZE": "37",
    }
    with KeepWriting(writer):
        for _ in range(3):
            before = await positions(db)
            process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "project"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            try:
                # SIGKILL as soon as it has applied something: it is then mid-stream,
                # most likely inside a batch's transaction.
                deadline = asyncio.get_running_loop().time() + 30
                while (await positions(db)).get("inbox", 0) <= before.get("inbox", 0):
                    assert process.poll() is None, process.stderr.read() if process.stderr else ""
                    assert asyncio.get_running_loop().time() < deadline, "no progress"
                    await asyncio.sleep(0.01)
            finally:
                process.send_signal(signal.SIGKILL)
                process.wait(10)
    async with running_projections(db, writer):
        await wait_projected(db)
    await assert_read_models_match(db, writer)


async def _table(url: str, table: str, key: str) -> list[asyncpg.Record]:
    conn = await postgres.connect(url)
    try:
        return list(await conn.fetch(f"SELECT * FROM {table} ORDER BY {key}"))
    finally:
        await conn.close()


_KEYS = {
    "inbox_issues": "issue_id",
    "order_issues": "issue_id",
    "stats_issues": "issue_id",
    "stats_counts": "status, severity, kind, vertical, country, city",
}


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
async def test_a_rebuilt_model_equals_the_live_one(
    db: str, writer: IssueService, name: str
) -> None:
    write_mixed(writer, 80, steps=5)
    projection = PROJECTIONS[name]
    async with running_projections(db, writer):
        await wait_projected(db)
        live = {t: await _table(db, t, _KEYS[t]) for t in projection.tables}
        result = await rebuild(EventLog(db, writer.app.mapper), projection, batch_size=50)
        await wait_projected(db)
        rebuilt = {t: await _table(db, t, _KEYS[t]) for t in projection.tables}
    assert result.events > 0
    conn = await postgres.connect(db)
    try:
        indexes = await conn.fetch(
            "SELECT indexname FROM pg_indexes WHERE tablename = ANY($1::text[])",
            list(projection.tables),
        )
    finally:
        await conn.close()
    assert not [r["indexname"] for r in indexes if "rebuild" in r["indexname"]]
    for table in projection.tables:
        if table == "stats_counts":  # rows counting 0 may stay in the live table
            live[table] = [r for r in live[table] if r["n"]]
        assert [dict(r) for r in rebuilt[table]] == [dict(r) for r in live[table]], table


async def test_a_rebuild_while_commands_keep_coming_serves_reads_and_loses_nothing(
    db: str, writer: IssueService
) -> None:
    write_mixed(writer, 100, steps=5)
    errors: list[BaseException] = []
    reads = 0
    done = asyncio.Event()

    async def keep_reading() -> None:
        nonlocal reads
        pool = await postgres.create_pool(db, max_size=2)
        try:
            while not done.is_set():
                try:
                    await pool.fetchval(
                        "SELECT count(*) FROM inbox_issues WHERE status <> 'resolved'"
                    )
                    reads += 1
                except Exception as exc:  # collected and asserted below
                    errors.append(exc)
                await asyncio.sleep(0.005)
        finally:
            await pool.close()

    async with running_projections(db, writer):
        reader = asyncio.create_task(keep_reading())
        with KeepWriting(writer):
            await rebuild(EventLog(db, writer.app.mapper), PROJECTIONS["inbox"], batch_size=100)
        done.set()
        await reader
        await wait_projected(db)
    assert not errors, errors[:3]
    assert reads > 0
    await assert_read_models_match(db, writer)
