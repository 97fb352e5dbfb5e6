"""Shared by the read-model tests: followers of the test's own, waiting for them, and the
check that every read model says what the aggregates say."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import Counter
from collections.abc import AsyncIterator
from uuid import UUID

from adapters import postgres
from app import bootstrap
from app.commands import (
    Acknowledge,
    AddNote,
    Assign,
    Command,
    Detect,
    Escalate,
    Reopen,
    Report,
    Resolve,
)
from app.service import IssueService
from domain.issue import OrderIssue, fired_rule
from projections import PROJECTIONS
from tests.integration.helpers import note, report


@contextlib.asynccontextmanager
async def running_projections(
    url: str, service: IssueService, *, batch_size: int = 100
) -> AsyncIterator[list[asyncio.Task[None]]]:
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(
            bootstrap.follower(
                url, service.app.mapper, p, batch_size=batch_size, poll_interval=0.2
            ).run(stop)
        )
        for p in PROJECTIONS.values()
    ]
    try:
        yield tasks
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)


async def positions(url: str) -> dict[str, int]:
    conn = await postgres.connect(url)
    try:
        rows = await conn.fetch("SELECT name, position FROM projection_positions")
        return {r["name"]: r["position"] for r in rows}
    finally:
        await conn.close()


async def wait_projected(url: str, *, timeout: float = 60.0) -> None:
    """Wait until every projection has applied the newest stored event."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        conn = await postgres.connect(url)
        try:
            newest = await conn.fetchval(
                "SELECT coalesce(max(notification_id), 0) FROM inbox_events"
            )
        finally:
            await conn.close()
        applied = await positions(url)
        if all(applied.get(name, 0) >= newest for name in PROJECTIONS):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"projections at {applied}, newest event {newest}")
        await asyncio.sleep(0.05)


def _mixed(issue_id: UUID, rng: random.Random) -> Command:
    match rng.randrange(6):
        case 0:
            return Acknowledge(issue_id=issue_id, actor="ann")
        case 1:
            return AddNote(issue_id=issue_id, actor="ann", text="n")
        case 2:
            return Escalate(issue_id=issue_id, actor="sys", severity="critical", evidence={})
        case 3:
            return Resolve(issue_id=issue_id, actor="ann", resolution="fixed", note="")
        case 4:
            return Reopen(issue_id=issue_id, actor="ann", reason="again")
        case _:
            return Assign(issue_id=issue_id, actor="ann", assignee=rng.choice(["bob", "eve"]))


# The SLA minutes a detector records for a pharmacy's issue (the shipped rules file).
PHARMACY_SLA = {"low": 30.0, "medium": 15.0, "high": 10.0, "critical": 5.0}


def _raised(order_id: str, *, by_detector: bool) -> Report | Detect:
    """Raised by hand (no SLA minutes: the fixed table), or by the detector with a rule
    record and a pharmacy's SLA minutes."""
    if not by_detector:
        return report(order_id)
    return Detect(
        actor="system",
        order_id=order_id,
        kind="prescription_check_pending",
        severity="medium",
        vertical="pharmacy",
        country="FI",
        city="Helsinki",
        evidence={},
        rule=fired_rule(
            "v1", "prescription_check_pending", "reached", threshold=10, severity="medium"
        ),
        sla_minutes=PHARMACY_SLA,
    )


def write_mixed(service: IssueService, issues: int, steps: int, seed: int = 7) -> list[UUID]:
    """``issues`` issues with ``steps`` random commands each (refused ones record nothing)."""
    rng = random.Random(seed)
    ids: list[UUID] = []
    for start in range(0, issues, 25):
        created = service.execute_batch(
            [
                _raised(f"mix-{seed}-{start + n}-{rng.random()}", by_detector=n % 2 == 1)
                for n in range(min(25, issues - start))
            ]
        )
        ids += [c.issue_id for c in created]  # type: ignore[union-attr]
    for _ in range(steps):
        service.execute_batch([_mixed(i, rng) for i in ids] + [note(ids[0], "x")])
    return ids


async def assert_read_models_match(url: str, service: IssueService) -> None:
    """Each inbox and order row equals its aggregate; the counts equal the inbox's."""
    conn = await postgres.connect(url)
    try:
        inbox = {r["issue_id"]: r for r in await conn.fetch("SELECT * FROM inbox_issues")}
        orders = {r["issue_id"]: r for r in await conn.fetch("SELECT * FROM order_issues")}
        counts = {
            tuple(r)[:-1]: r["n"]
            for r in await conn.fetch(
                "SELECT status, severity, kind, vertical, country, city, n FROM stats_counts"
            )
        }
        ids = [
            r["originator_id"]
            for r in await conn.fetch("SELECT DISTINCT originator_id FROM inbox_events")
        ]
    finally:
        await conn.close()
    assert set(inbox) == set(ids) == set(orders)
    expected_counts: Counter[tuple[str, ...]] = Counter()
    for issue_id in ids:
        issue: OrderIssue = service.app.repository.get(issue_id)
        row = inbox[issue_id]
        assert (row["status"], row["severity"], row["version"], row["assignee"]) == (
            issue.status,
            issue.severity,
            issue.version,
            issue.assignee,
        ), issue_id
        assert row["note_count"] == len(issue.notes)
        assert row["due_at"] == issue.due_at, issue_id
        assert json.loads(row["evidence"]) == issue.evidence
        assert (orders[issue_id]["status"], orders[issue_id]["version"]) == (
            issue.status,
            issue.version,
        )
        expected_counts[
            (issue.status, issue.severity, issue.kind, issue.vertical, issue.country, issue.city)
        ] += 1
    assert {k: v for k, v in counts.items() if v} == dict(expected_counts)
