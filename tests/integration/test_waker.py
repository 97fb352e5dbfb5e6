"""The snooze waker against real PostgreSQL: a snoozed issue goes back to its previous
status by itself when its time comes (CONTRACT §3), once, across restarts and replicas."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest

from adapters import postgres
from adapters.clock import SystemClock
from adapters.eventstore import decode
from app.bus import CommandBus
from app.commands import Acknowledge, Resolve, Snooze
from app.service import IssueService
from app.workers.waker import DUE_QUERY, Waker
from domain.issue import OrderIssue
from tests.conftest import async_wait_until
from tests.integration.helpers import report, service
from tests.integration.projecting import running_projections, wait_projected


@contextlib.asynccontextmanager
async def bus_of(issues: IssueService) -> AsyncIterator[CommandBus]:
    bus = CommandBus(issues, batch_size=100, writers=1, timeout=10)
    bus.start()
    try:
        yield bus
    finally:
        await bus.stop()


@contextlib.asynccontextmanager
async def running_waker(db: str, issues: IssueService) -> AsyncIterator[Waker]:
    """A waker loop as ``inbox detect`` runs it (leader election included)."""
    stop = asyncio.Event()
    async with bus_of(issues) as bus:
        waker = Waker(bus=bus, clock=SystemClock(), poll_seconds=0.2)
        task = asyncio.create_task(waker.run(db, stop))
        try:
            yield waker
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


@pytest.fixture
async def conn(db: str) -> AsyncIterator[asyncpg.Connection]:
    one = await postgres.connect(db)
    yield one
    await one.close()


def raise_issue(issues: IssueService, *, acknowledged: bool = True) -> UUID:
    issue_id = issues.execute(report(f"snooze-{uuid4().hex[:10]}")).issue_id
    if acknowledged:
        issues.execute(Acknowledge(issue_id=issue_id, actor="ann"))
    return issue_id


def snooze(issues: IssueService, issue_id: UUID, seconds: float) -> datetime:
    until = datetime.now(UTC) + timedelta(seconds=seconds)
    issues.execute(Snooze(issue_id=issue_id, actor="ann", until=until))
    return until


async def woken_events(conn: asyncpg.Connection, issues: IssueService, issue_id: UUID) -> list[Any]:
    """The issue's stored Woken events."""
    rows = await conn.fetch(
        "SELECT originator_id, originator_version, topic, state FROM inbox_events"
        " WHERE originator_id = $1 ORDER BY originator_version",
        issue_id,
    )
    events = [decode(issues.app.mapper, row) for row in rows]
    return [e for e in events if isinstance(e, OrderIssue.Woken)]  # type: ignore[attr-defined]


async def past(when: datetime) -> None:
    async def passed() -> bool:
        return datetime.now(UTC) > when

    await async_wait_until(passed, timeout=10, what=f"the clock to pass {when}")


async def test_a_snooze_ends_by_itself_back_to_the_previous_status(
    db: str, writer: IssueService, conn: asyncpg.Connection
) -> None:
    issue_id = raise_issue(writer)
    until = snooze(writer, issue_id, 1.5)
    async with running_projections(db, writer), running_waker(db, writer):

        async def woken() -> bool:
            return bool(await woken_events(conn, writer, issue_id))

        await async_wait_until(woken, timeout=until.timestamp() - _now() + 5, what="the wake")
        await wait_projected(db)
    [event] = await woken_events(conn, writer, issue_id)
    assert event.by == "system"
    assert event.at >= until, "woken before its time"
    assert event.at - until < timedelta(seconds=5)
    issue: OrderIssue = writer.app.repository.get(issue_id)
    assert (issue.status, issue.snoozed_until) == ("acknowledged", None)
    row = await conn.fetchrow(
        "SELECT status, snoozed_until FROM inbox_issues WHERE issue_id=$1", issue_id
    )
    assert row is not None
    assert tuple(row) == ("acknowledged", None)


async def test_two_wakers_at_once_store_one_woken_event(
    db: str, writer: IssueService, conn: asyncpg.Connection
) -> None:
    issue_id = raise_issue(writer, acknowledged=False)
    until = snooze(writer, issue_id, 1)
    async with running_projections(db, writer):
        await wait_projected(db)
    await past(until)
    other = service(db)  # a second replica: its own event store connections
    try:
        async with bus_of(writer) as one, bus_of(other) as two:
            first = Waker(bus=one, clock=SystemClock())
            second = Waker(bus=two, clock=SystemClock())
            conn2 = await postgres.connect(db)
            try:
                results = await asyncio.gather(first.wake_due(conn), second.wake_due(conn2))
            finally:
                await conn2.close()
            assert sorted(r.woken for r in results) == [0, 1]
            assert [r.refused for r in results if r.woken == 0] == [1]
            # The read model still shows it snoozed (nothing projected it): asked again,
            # the waker does not send the wake a second time.
            assert (await first.wake_due(conn)).woken == 0
            assert (await Waker(bus=one, clock=SystemClock()).wake_due(conn)).woken == 0
    finally:
        other.app.close()
    assert len(await woken_events(conn, writer, issue_id)) == 1
    assert writer.app.repository.get(issue_id).status == "open"


async def test_a_waker_stopped_before_the_time_and_started_after_still_wakes(
    db: str, writer: IssueService, conn: asyncpg.Connection
) -> None:
    issue_id = raise_issue(writer)
    until = snooze(writer, issue_id, 1.5)
    async with running_projections(db, writer):
        async with running_waker(db, writer):
            await wait_projected(db)
        assert datetime.now(UTC) < until, "the test was too slow to stop before the time"
        await past(until)
        assert writer.app.repository.get(issue_id).status == "snoozed"
        async with running_waker(db, writer):

            async def woken() -> bool:
                return bool(await woken_events(conn, writer, issue_id))

            await async_wait_until(woken, timeout=10, what="the wake after the restart")
    assert len(await woken_events(conn, writer, issue_id)) == 1
    assert writer.app.repository.get(issue_id).status == "acknowledged"


async def test_snoozing_again_moves_the_time_and_resolving_cancels_it(
    db: str, writer: IssueService, conn: asyncpg.Connection
) -> None:
    moved = raise_issue(writer)
    first = snooze(writer, moved, 1)
    snooze(writer, moved, 3600)
    resolved = raise_issue(writer)
    snooze(writer, resolved, 1)
    writer.execute(Resolve(issue_id=resolved, actor="ann", resolution="fixed", note=""))
    async with running_projections(db, writer):
        await wait_projected(db)
    await past(first + timedelta(seconds=0.5))
    async with bus_of(writer) as bus:
        result = await Waker(bus=bus, clock=SystemClock()).wake_due(conn)
    assert (result.woken, result.refused) == (0, 0)
    assert writer.app.repository.get(moved).status == "snoozed"
    assert writer.app.repository.get(resolved).status == "resolved"
    assert await woken_events(conn, writer, moved) == []


async def test_the_due_query_uses_the_partial_index(conn: asyncpg.Connection) -> None:
    await conn.execute("SET enable_seqscan = off")  # an empty table: forbid the cheap scan
    plan = await conn.fetch("EXPLAIN " + DUE_QUERY, datetime.now(UTC), 100, [], [])
    text = "\n".join(row[0] for row in plan)
    assert "inbox_issues_snoozed_until_idx" in text, text


def _now() -> float:
    return datetime.now(UTC).timestamp()
