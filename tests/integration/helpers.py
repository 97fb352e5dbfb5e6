"""Builders shared by the integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import asyncpg
import nats

from adapters.clock import Clock, SystemClock
from adapters.dead_letters import PostgresDeadLetters
from adapters.eventstore import eventstore_env
from adapters.nats import ensure_stream
from adapters.watch import PostgresWatchStore
from app import rules_config
from app.commands import AddNote, Report
from app.detection import Detector
from app.rules_source import RulesSource
from app.service import IssueApplication, IssueService
from app.workers.detector import ConsumerConfigValues, consume_orders
from tests.conftest import RUN_ID


def service(url: str, *, pool_size: int = 4) -> IssueService:
    """An IssueService with a connection pool of its own, as a separate replica has."""
    return IssueService(
        app=IssueApplication(env=eventstore_env(url, pool_size=pool_size)), clock=SystemClock()
    )


def detector(
    pool: asyncpg.Pool,
    issues: IssueService,
    clock: Clock,
    *,
    rules: Path | None = None,
    source: RulesSource | None = None,
    kind: type[Detector] = Detector,
    command_batch_size: int = 100,
) -> Detector:
    """A detector on PostgreSQL (``pool``) with the shipped rules (or the ``rules`` file,
    or the rules ``source`` a test swaps or reloads)."""
    return kind(
        store=PostgresWatchStore(pool),
        dead_letters=PostgresDeadLetters(pool),
        issues=issues,
        rules=source or RulesSource(rules_config.load(rules)),
        clock=clock,
        command_batch_size=command_batch_size,
    )


def report(order_id: str, kind: str = "venue_acceptance_delayed") -> Report:
    return Report(
        actor="system",
        order_id=order_id,
        kind=kind,
        severity="medium",
        vertical="restaurant",
        country="FI",
        city="Helsinki",
        evidence={"minutes_waiting": 5},
    )


def note(issue_id: UUID, text: str, expected_version: int | None = None) -> AddNote:
    return AddNote(issue_id=issue_id, actor="ann", text=text, expected_version=expected_version)


T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@contextlib.asynccontextmanager
async def consuming(
    nats_url: str, detector: Detector, bodies: list[bytes], *, durable: str
) -> AsyncIterator[asyncio.Task[None]]:
    """``bodies`` published on an ORDERS stream of their own, consumed by ``detector``'s
    consumer loop (yielded as its task) until the block ends; then the loop must stop
    cleanly, without an error, and the stream is deleted."""
    stream, prefix = f"ORDERS_{RUN_ID}_{uuid.uuid4().hex[:6]}", f"o_{uuid.uuid4().hex[:8]}"
    client = await nats.connect(nats_url)
    js = client.jetstream()
    await ensure_stream(js, name=stream, subjects=[f"{prefix}.>"], duplicate_window=1200)
    for body in bodies:
        await js.publish(f"{prefix}.order_placed", body)
    config = ConsumerConfigValues(
        stream=stream, subject_prefix=prefix, durable=durable, create_stream=False
    )
    stop = asyncio.Event()
    task = asyncio.create_task(consume_orders(client, detector, config, stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)  # it went on: it stops cleanly, without an error
        with contextlib.suppress(Exception):
            await js.delete_stream(stream)
        await client.close()


async def handled(
    task: asyncio.Task[None], done: Callable[[], Awaitable[bool]], *, timeout: float = 20
) -> None:
    """Wait until ``done()``, failing if the consumer ``task`` ends or time runs out."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await done():
        assert not task.done(), task
        assert asyncio.get_running_loop().time() < deadline, "not handled"
        await asyncio.sleep(0.05)


# A port nothing listens on: a command that connected to NATS would fail or hang.
NO_NATS = "nats://127.0.0.1:9"
_REPO = Path(__file__).resolve().parents[2]


def inbox_without_nats(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``inbox ARGS`` on database ``db`` with no NATS to connect to (the commands that
    need none: rebuild, dead-letters, backtest)."""
    env = {**os.environ, "INBOX_DATABASE_URL": db, "INBOX_NATS_URL": NO_NATS}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=_REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
