"""The write side against real PostgreSQL: conflicts, concurrent writers, followers."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import pytest
from eventsourcing.postgres import PostgresApplicationRecorder

from adapters import postgres
from app.bootstrap import Endpoints
from app.commands import AddNote, Command, Reopen
from app.errors import ConcurrentWrite, IssueAlreadyExists, IssueNotFound, VersionMismatch
from app.service import CommandResult, IssueService
from domain.errors import TransitionNotAllowed
from domain.issue import OrderIssue
from tests.integration.helpers import note, report, service


@dataclass(frozen=True, kw_only=True)
class _NoteAfter(AddNote):
    """A note whose application first calls ``before`` (with the issue read, before it
    changes): where a test makes writers race."""

    before: Callable[[], None]

    def apply(self, issue: OrderIssue, at: datetime) -> None:
        self.before()
        super().apply(issue, at)


@pytest.fixture(scope="module")
def replicas(endpoints: Endpoints) -> Iterator[list[IssueService]]:
    """Two services with their own pools: two replicas of the API."""
    built = [service(endpoints.database_url), service(endpoints.database_url)]
    yield built
    for one in built:
        one.app.close()


def order() -> str:
    return f"ord-{uuid.uuid4().hex[:12]}"


def test_commands_return_version_and_global_position(replicas: list[IssueService]) -> None:
    created = replicas[0].execute(report(order()))
    noted = replicas[0].execute(note(created.issue_id, "first"))
    assert (created.version, noted.version) == (1, 2)
    assert noted.position > created.position


def test_a_batch_stores_many_issues_and_answers_each_command(
    replicas: list[IssueService],
) -> None:
    first = replicas[0].execute(report(order()))
    missing = uuid.uuid4()
    commands: list[Command] = [
        report(order()),
        note(first.issue_id, "a"),
        note(first.issue_id, "b"),  # the same issue twice in one batch: applied in order
        note(missing, "nobody"),
        report(order()),
        note(first.issue_id, "stale", expected_version=1),
        Reopen(issue_id=first.issue_id, actor="ann", reason="x"),
    ]
    outcomes = replicas[0].execute_batch(commands)
    assert isinstance(outcomes[0], CommandResult)
    assert isinstance(outcomes[1], CommandResult)
    assert isinstance(outcomes[2], CommandResult)
    assert (outcomes[1].version, outcomes[2].version) == (2, 3)
    assert outcomes[1].position < outcomes[2].position
    assert isinstance(outcomes[3], IssueNotFound)
    assert isinstance(outcomes[4], CommandResult)
    assert isinstance(outcomes[5], VersionMismatch)
    assert outcomes[5].actual == 3
    assert isinstance(outcomes[6], TransitionNotAllowed)


def test_reporting_an_issue_twice_is_refused(replicas: list[IssueService]) -> None:
    command = report(order())
    replicas[0].execute(command)
    with pytest.raises(IssueAlreadyExists):
        replicas[1].execute(command)


def test_two_writers_on_one_issue_exactly_one_wins(replicas: list[IssueService]) -> None:
    issue_id = replicas[0].execute(report(order())).issue_id
    both_have_read = threading.Barrier(2, timeout=10)

    def act_after_both_read(text: str) -> AddNote:
        first_attempt = threading.Event()

        def first_attempt_waits() -> None:
            if not first_attempt.is_set():
                first_attempt.set()
                both_have_read.wait()  # both replicas now hold version 1

        return _NoteAfter(issue_id=issue_id, actor="ann", text=text, before=first_attempt_waits)

    with ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(replicas[n].execute_batch, [act_after_both_read(f"writer {n}")])
            for n in range(2)
        ]
        outcomes = [f.result(timeout=30)[0] for f in futures]
    winners = [o for o in outcomes if isinstance(o, CommandResult)]
    losers = [o for o in outcomes if isinstance(o, ConcurrentWrite)]
    assert len(winners) == 1, outcomes
    assert len(losers) == 1, outcomes
    assert winners[0].version == 2
    stored: OrderIssue = replicas[0].app.repository.get(issue_id)
    assert stored.version == 2
    assert len(stored.notes) == 1


def test_a_conflict_fails_only_the_command_that_raced(replicas: list[IssueService]) -> None:
    """A batch whose save hits a conflict retries its commands alone: the others land."""
    contested = replicas[0].execute(report(order())).issue_id
    bystander = replicas[0].execute(report(order())).issue_id
    read = threading.Event()
    written = threading.Event()

    def wait_for_the_other_writer() -> None:
        read.set()
        written.wait(10)

    slow_note = _NoteAfter(
        issue_id=contested, actor="ann", text="slow", before=wait_for_the_other_writer
    )
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(replicas[0].execute_batch, [note(bystander, "innocent"), slow_note])
        assert read.wait(10)
        replicas[1].execute(note(contested, "fast"))
        written.set()
        innocent, raced = slow.result(timeout=30)
    assert isinstance(innocent, CommandResult)
    assert innocent.version == 2
    assert isinstance(raced, ConcurrentWrite)


def test_preloaded_issues_are_used_kept_current_and_dropped_when_stale(
    replicas: list[IssueService],
) -> None:
    """A caller's preloaded issues save a read; a stale one (another writer moved it on)
    is a conflict the command loses, as when two writers race, and the caller is told to
    forget it."""
    fresh = replicas[0].execute(report(order())).issue_id
    stale = replicas[0].execute(report(order())).issue_id
    preloaded: dict[uuid.UUID, OrderIssue | None] = dict(replicas[0].current({fresh, stale}))
    replicas[1].execute(note(stale, "moved on"))  # the preloaded copy is now behind
    outcomes = replicas[0].execute_batch([note(fresh, "one"), note(stale, "two")], preloaded)
    assert [type(o) for o in outcomes] == [CommandResult, ConcurrentWrite]
    assert isinstance(outcomes[0], CommandResult)
    assert outcomes[0].version == 2
    assert stale not in preloaded  # its state could not be vouched for
    assert fresh not in preloaded  # nor could the one saved in the batch that conflicted
    saved: dict[uuid.UUID, Any] = {}
    replicas[0].execute_batch([note(fresh, "three")], saved)
    assert saved[fresh] is not None
    assert saved[fresh].version == 3
    assert replicas[1].current({fresh})[fresh].version == 3


def test_twenty_concurrent_writers_lose_nothing(endpoints: Endpoints) -> None:
    writers = [service(endpoints.database_url, pool_size=1) for _ in range(20)]
    per_writer = 30
    try:
        with ThreadPoolExecutor(20) as pool:
            results = list(
                pool.map(lambda w: [w.execute(report(order())) for _ in range(per_writer)], writers)
            )
        ids = {r.issue_id for batch in results for r in batch}
        recorder = writers[0].app.recorder
        assert isinstance(recorder, PostgresApplicationRecorder)
        with recorder.datastore.get_connection() as conn:
            row = conn.execute(
                "SELECT count(*) AS n FROM inbox_events WHERE originator_id = ANY(%s)",
                [list(ids)],
            ).fetchone()
    finally:
        for writer in writers:
            writer.app.close()
    positions = [r.position for batch in results for r in batch]
    assert len(ids) == 20 * per_writer
    assert len(set(positions)) == len(positions)
    assert row is not None
    assert row["n"] == len(ids)


def _write_batches(url: str, batches: int, batch_size: int) -> list[int]:
    """One writer process: its own interpreter and connection, as a replica has."""
    writer = service(url, pool_size=1)
    try:
        positions = []
        for _ in range(batches):
            outcomes = writer.execute_batch([report(order()) for _ in range(batch_size)])
            positions += [o.position for o in outcomes if isinstance(o, CommandResult)]
        return positions
    finally:
        writer.app.close()


async def test_a_follower_after_position_sees_every_event_exactly_once(
    endpoints: Endpoints,
) -> None:
    """DESIGN.md trap: with concurrent writers, reading "after P" must never skip an event.

    Writers are separate processes so that their commits truly interleave (threads
    sharing the GIL hide the race: with POSTGRES_ENABLE_DB_FUNCTIONS=y this test fails).
    """
    pool: asyncpg.Pool = await postgres.create_pool(endpoints.database_url, max_size=2)
    start = await pool.fetchval("SELECT coalesce(max(notification_id), 0) FROM inbox_events")
    writers, batches, batch_size = 5, 40, 50
    done = asyncio.Event()
    seen: list[int] = []

    async def follow() -> None:
        last = start
        while True:
            finished = done.is_set()  # read before the query: one final pass after the end
            rows = await pool.fetch(
                "SELECT notification_id FROM inbox_events WHERE notification_id > $1"
                " ORDER BY notification_id LIMIT 100",
                last,
            )
            seen.extend(row["notification_id"] for row in rows)
            if rows:
                last = rows[-1]["notification_id"]
            elif finished:
                return
            else:
                await asyncio.sleep(0.001)

    try:
        follower = asyncio.create_task(follow())
        loop = asyncio.get_running_loop()
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(writers, mp_context=context) as processes:
            written = await asyncio.gather(
                *(
                    loop.run_in_executor(
                        processes, _write_batches, endpoints.database_url, batches, batch_size
                    )
                    for _ in range(writers)
                )
            )
        done.set()
        await asyncio.wait_for(follower, 60)
    finally:
        await pool.close()
    expected = sorted(p for positions in written for p in positions)
    assert len(expected) == writers * batches * batch_size
    assert len(seen) == len(set(seen)), "an event was seen twice"
    missed = set(expected) - set(seen)
    assert not missed, f"the follower missed {len(missed)} of {len(expected)} events"
    assert sorted(seen) == expected
