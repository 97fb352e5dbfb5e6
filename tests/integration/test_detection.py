"""The detector against real PostgreSQL: order events in, issues out, durable timers."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import nats
import pytest

from adapters import postgres
from adapters.nats import ensure_stream
from app.bootstrap import Endpoints
from app.commands import Reopen
from app.detection import Detector, Retention, Swept
from app.errors import ConcurrentWrite
from app.ingest import validate
from app.rules_config import load as load_rules
from app.service import IssueService
from domain.issue import issue_id_for
from domain.order import OrderEvent, OrderState, fold
from tests.conftest import RUN_ID
from tests.integration import helpers
from tests.integration.helpers import consuming, handled

SHIPPED_RULES = load_rules(None)

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.at = T0

    def now(self) -> datetime:
        return self.at


@pytest.fixture
def issues(writer: IssueService) -> IssueService:
    return writer


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def detector(pool: asyncpg.Pool, issues: IssueService, clock: Clock) -> Detector:
    return helpers.detector(pool, issues, clock)


def ev(order_id: str, kind: str, minute: float, **data: Any) -> OrderEvent:
    raw = {
        "event_id": f"{order_id}-{kind}-{minute}",
        "type": kind,
        "order_id": order_id,
        "occurred_at": (T0 + timedelta(minutes=minute)).isoformat(),
        "vertical": "restaurant",
        "country": "FI",
        "city": "Helsinki",
        "data": data,
    }
    return validate(raw, SHIPPED_RULES)


def placed(order_id: str, minute: float = 0, promise: float = 40) -> OrderEvent:
    return ev(
        order_id,
        "order_placed",
        minute,
        venue_id="v1",
        customer_id="c1",
        promised_delivery_at=(T0 + timedelta(minutes=promise)).isoformat(),
        amount=1500,
        currency="EUR",
    )


def state(issues: IssueService, order_id: str, kind: str) -> Any:
    return issues.current({issue_id_for(order_id, kind)}).get(issue_id_for(order_id, kind))


async def test_a_deadline_already_passed_fires_when_the_event_arrives(
    detector: Detector, issues: IssueService, clock: Clock
) -> None:
    clock.at = T0 + timedelta(minutes=20)
    await detector.ingest([placed("o1")])
    issue = state(issues, "o1", "venue_acceptance_delayed")
    assert (issue.status, issue.severity) == ("open", "critical")
    assert issue.evidence["minutes"] == 20.0


async def test_timers_raise_then_escalate_then_a_late_acceptance_resolves_it(
    detector: Detector, issues: IssueService, clock: Clock
) -> None:
    await detector.ingest([placed("o2")])
    assert state(issues, "o2", "venue_acceptance_delayed") is None
    clock.at = T0 + timedelta(minutes=3.5)  # the first tier
    assert await detector.fire_due() == 1
    assert state(issues, "o2", "venue_acceptance_delayed").severity == "medium"
    clock.at = T0 + timedelta(minutes=5)
    await detector.fire_due()
    assert state(issues, "o2", "venue_acceptance_delayed").severity == "high"
    await detector.ingest([ev("o2", "venue_accepted", 5.5)])  # settles it: resolved at once
    issue = state(issues, "o2", "venue_acceptance_delayed")
    assert (issue.status, issue.resolved_by) == ("resolved", "system")


async def test_duplicates_and_shuffled_arrival_give_the_same_issues(
    detector: Detector, issues: IssueService, clock: Clock
) -> None:
    clock.at = T0 + timedelta(minutes=60)
    steps = [
        placed("a"),
        ev("a", "venue_accepted", 1),
        ev("a", "courier_assigned", 2, courier_id="k1"),
        ev("a", "courier_unassigned", 3, courier_id="k1"),
        ev("a", "courier_assigned", 4, courier_id="k2"),
        ev("a", "courier_unassigned", 5, courier_id="k2"),
        ev("a", "eta_updated", 6, estimated_delivery_at=(T0 + timedelta(minutes=65)).isoformat()),
    ]
    in_order = list(steps)
    shuffled = [*steps, *steps[:3]]
    random.Random(3).shuffle(shuffled)
    await detector.ingest(in_order)
    first = {
        k: state(issues, "a", k)
        for k in ("eta_slipped", "courier_reassigned_repeatedly", "no_courier_assigned")
    }
    again = [
        OrderEvent(**{**e.__dict__, "order_id": "b", "event_id": e.event_id.replace("a-", "b-", 1)})
        for e in shuffled
    ]
    for chunk in (again[:4], again[4:]):
        await detector.ingest(chunk)
    second = {k: state(issues, "b", k) for k in first}
    for kind, issue in first.items():
        other = second[kind]
        assert (issue is None) == (other is None), kind
        if issue is not None:
            assert (issue.severity, issue.status) == (other.severity, other.status), kind
    assert first["eta_slipped"].severity == "high"
    assert first["courier_reassigned_repeatedly"].severity == "medium"
    replay = await detector.ingest(in_order)
    assert (replay.accepted, replay.duplicates) == (0, len(in_order))


async def test_an_arrival_order_that_raised_an_issue_converges_on_the_in_order_result(
    detector: Detector, issues: IssueService, clock: Clock
) -> None:
    """The same lifecycle, in order and with its first events arriving alone: the second
    order's issue (raised while its courier's assignment had not arrived) resolves as
    soon as the rest arrives, since in order time it cleared long ago."""
    clock.at = T0 + timedelta(minutes=30)

    def lifecycle(order_id: str) -> list[OrderEvent]:
        return [
            placed(order_id, promise=60),
            ev(order_id, "venue_accepted", 1),
            ev(order_id, "courier_assigned", 2, courier_id="k1"),
            ev(order_id, "order_ready", 10),
            ev(order_id, "order_picked_up", 11, courier_id="k1"),
        ]

    kinds = ("no_courier_assigned", "venue_acceptance_delayed", "ready_not_picked_up")
    await detector.ingest(lifecycle("conv-a"))
    late = lifecycle("conv-b")
    await detector.ingest(late[:2])
    assert state(issues, "conv-b", "no_courier_assigned").status == "open"
    await detector.ingest(late[2:])
    for kind in kinds:
        a, b = state(issues, "conv-a", kind), state(issues, "conv-b", kind)
        assert a is None, kind
        assert b is None or b.status == "resolved", (kind, b.status)


async def test_a_delivered_order_resolves_every_open_issue(
    detector: Detector, issues: IssueService, clock: Clock
) -> None:
    clock.at = T0 + timedelta(minutes=50)
    await detector.ingest([placed("d"), ev("d", "payment_failed", 1, reason="declined")])
    assert state(issues, "d", "venue_acceptance_delayed").status == "open"
    assert state(issues, "d", "payment_failed").status == "open"
    await detector.ingest([ev("d", "order_delivered", 49)])
    for kind in ("venue_acceptance_delayed", "payment_failed", "delivery_overdue"):
        issue = state(issues, "d", kind)
        assert issue is None or (issue.status, issue.resolved_by) == ("resolved", "system"), kind


async def test_a_recurring_condition_reopens_the_issue_not_a_new_one(
    detector: Detector, issues: IssueService, clock: Clock
) -> None:
    def eta(minute: float, late_by: float) -> OrderEvent:
        at = (T0 + timedelta(minutes=40 + late_by)).isoformat()
        return ev("r", "eta_updated", minute, estimated_delivery_at=at)

    clock.at = T0 + timedelta(minutes=10)
    await detector.ingest([placed("r"), ev("r", "venue_accepted", 1), eta(9, 15)])
    assert state(issues, "r", "eta_slipped").severity == "medium"
    await detector.ingest([eta(10, 0)])  # back on time
    clock.at += timedelta(minutes=3, seconds=1)  # the ETA's clear-for window
    await detector.fire_due()
    assert state(issues, "r", "eta_slipped").status == "resolved"
    await detector.ingest([eta(12, 25)])  # slips again, worse
    issue = state(issues, "r", "eta_slipped")
    assert (issue.status, issue.severity, issue.reopen_count) == ("open", "high", 1)


async def test_the_detector_sees_what_an_agent_did_since_its_last_look(
    detector: Detector, issues: IssueService, clock: Clock
) -> None:
    """The detector keeps the issues it read or wrote; an agent's change in between (here
    reopening an issue the detector had resolved) is what its next look starts from."""

    def eta(minute: float, late_by: float) -> OrderEvent:
        at = (T0 + timedelta(minutes=40 + late_by)).isoformat()
        return ev("ag", "eta_updated", minute, estimated_delivery_at=at)

    clock.at = T0 + timedelta(minutes=10)
    await detector.ingest([placed("ag"), ev("ag", "venue_accepted", 1), eta(9, 15)])
    await detector.ingest([eta(10, 0)])  # back on time
    clock.at += timedelta(minutes=3, seconds=1)  # the ETA's clear-for window
    await detector.fire_due()
    assert state(issues, "ag", "eta_slipped").resolved_by == "system"
    issue_id = issue_id_for("ag", "eta_slipped")
    issues.execute(Reopen(issue_id=issue_id, actor="ann", reason="still late"))
    clock.at += timedelta(seconds=1)
    await detector.ingest([ev("ag", "courier_assigned", 11, courier_id="k")])
    clock.at += timedelta(seconds=61)
    await detector.fire_due()  # the condition stayed clear: resolved again
    issue = state(issues, "ag", "eta_slipped")
    assert (issue.status, issue.resolved_by) == ("resolved", "system")


async def test_customer_contacts_escalate_or_count_as_missed(
    detector: Detector, issues: IssueService, clock: Clock, pool: asyncpg.Pool
) -> None:
    clock.at = T0 + timedelta(minutes=4)
    await detector.ingest([placed("c")])
    assert state(issues, "c", "venue_acceptance_delayed").severity == "medium"
    await detector.ingest([ev("c", "customer_contacted_support", 4, channel="chat")])
    assert state(issues, "c", "venue_acceptance_delayed").severity == "high"
    clock.at = T0 + timedelta(minutes=1)
    await detector.ingest(
        [placed("quiet"), ev("quiet", "customer_contacted_support", 1, channel="phone")]
    )
    rows = {r["order_id"]: r for r in await pool.fetch("SELECT * FROM support_contacts")}
    assert rows["c"]["detected"] is True
    assert rows["c"]["first_detected_at"] is not None
    assert rows["quiet"]["detected"] is False


async def test_a_contact_seen_again_after_a_crash_escalates_once(
    detector: Detector, issues: IssueService, clock: Clock, pool: asyncpg.Pool
) -> None:
    """The escalation was saved, then the detector died before its watch transaction
    committed: the contact comes again as new, and the issue, which counted it, stays."""
    clock.at = T0 + timedelta(minutes=4)
    await detector.ingest([placed("cc")])
    contact = ev("cc", "customer_contacted_support", 4, channel="chat")
    await detector.ingest([contact])
    assert state(issues, "cc", "venue_acceptance_delayed").severity == "high"
    # What the rolled-back watch transaction would have left: no trace of the contact.
    await pool.execute("DELETE FROM order_events WHERE event_id = $1", contact.event_id)
    await pool.execute("DELETE FROM support_contacts WHERE event_id = $1", contact.event_id)
    replay = await detector.ingest([contact])
    assert replay.accepted == 1
    issue = state(issues, "cc", "venue_acceptance_delayed")
    assert issue.severity == "high"
    assert issue.evidence["customer_contacts"] == [contact.event_id]
    assert await pool.fetchval("SELECT count(*) FROM support_contacts WHERE order_id = 'cc'") == 1


async def test_replicas_share_due_timers_and_each_fires_once(
    pool: asyncpg.Pool, issues: IssueService, clock: Clock
) -> None:
    one = helpers.detector(pool, issues, clock)
    two = helpers.detector(pool, issues, clock)
    await one.ingest([placed(f"t{n}") for n in range(30)])
    clock.at = T0 + timedelta(minutes=3.5)
    fired = await asyncio.gather(
        one.fire_due(10), two.fire_due(10), one.fire_due(10), two.fire_due(10)
    )
    assert sum(fired) == 30
    for n in range(30):
        issue = state(issues, f"t{n}", "venue_acceptance_delayed")
        assert (issue.severity, issue.version) == ("medium", 1)
    # a restarted detector (a new instance) fires what came due while it was away
    clock.at = T0 + timedelta(minutes=5)
    assert await helpers.detector(pool, issues, clock).fire_due(100) == 30
    assert state(issues, "t0", "venue_acceptance_delayed").severity == "high"


async def test_dead_letters_are_listed_and_replayed_once_fixed(
    detector: Detector, issues: IssueService, clock: Clock, pool: asyncpg.Pool
) -> None:
    good = {
        "event_id": "dl-1",
        "type": "payment_failed",
        "order_id": "dl",
        "occurred_at": T0.isoformat(),
        "vertical": "grocery",
        "country": "FI",
        "city": "Oulu",
        "data": {"reason": "declined"},
    }
    await detector.park("nats", [("dl-1", "was broken", msgspec.json.encode(good))])
    await detector.park("nats", [(None, "not json", b"{nope")])
    listed = await detector.dead_letters()
    assert [(d.event_id, d.reason) for d in listed] == [
        ("dl-1", "was broken"),
        (None, "not json"),
    ]
    assert await detector.replay_dead_letters() == (1, 1)
    assert state(issues, "dl", "payment_failed").status == "open"
    assert [d.reason for d in await detector.dead_letters()] == ["not json"]


async def test_a_detector_killed_mid_stream_loses_and_doubles_nothing(
    db: str, endpoints: Endpoints
) -> None:
    stream, prefix = f"ORDERS_{RUN_ID}_{uuid.uuid4().hex[:6]}", f"o_{uuid.uuid4().hex[:8]}"
    env = os.environ | {
        "INBOX_DATABASE_URL": db,
        "INBOX_NATS_URL": endpoints.nats_url,
        "INBOX_ORDERS_STREAM": stream,
        "INBOX_ORDERS_SUBJECT_PREFIX": prefix,
        "INBOX_ORDERS_ACK_WAIT_SECONDS": "3",  # the dead detector's batch comes back soon
        "INBOX_ORDERS_BATCH_SIZE": "10",  # many transactions, so the kill lands mid-stream
    }
    client = await nats.connect(endpoints.nats_url)
    js = client.jetstream()
    await ensure_stream(js, name=stream, subjects=[f"{prefix}.>"], duplicate_window=1200)
    now = datetime.now(UTC)
    orders = 200
    for n in range(orders):
        body = {
            "event_id": f"k-{n}",
            "type": "order_placed",
            "order_id": f"k{n}",
            "occurred_at": (now - timedelta(minutes=20)).isoformat(),
            "vertical": "restaurant",
            "country": "FI",
            "city": "Turku",
            "data": {
                "venue_id": "v",
                "customer_id": "c",
                "promised_delivery_at": (now + timedelta(minutes=20)).isoformat(),
                "amount": 100,
                "currency": "EUR",
            },
        }
        await js.publish(f"{prefix}.order_placed", msgspec.json.encode(body))

    async def issues_so_far() -> int:
        conn = await postgres.connect(db)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM inbox_events"))
        finally:
            await conn.close()

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", "detect"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    try:
        first = start()
        deadline = asyncio.get_running_loop().time() + 60
        while await issues_so_far() < 20:
            assert first.poll() is None
            assert asyncio.get_running_loop().time() < deadline, "no progress"
            await asyncio.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        second = start()
        while await issues_so_far() < orders:
            assert asyncio.get_running_loop().time() < deadline + 60, "not all orders"
            await asyncio.sleep(0.05)
        second.send_signal(signal.SIGTERM)
        _, err = second.communicate(timeout=20)
        assert second.returncode == 0, err.decode()[-3000:]
        conn = await postgres.connect(db)
        try:
            versions = await conn.fetch(
                "SELECT originator_id, max(originator_version) AS v FROM inbox_events"
                " GROUP BY originator_id"
            )
        finally:
            await conn.close()
        assert len(versions) == orders
        assert {r["v"] for r in versions} == {1}, "an issue was raised twice"
    finally:
        with contextlib.suppress(Exception):
            await js.delete_stream(stream)
        await client.close()


async def test_a_courier_standing_still_while_pinging_is_flagged(
    detector: Detector, issues: IssueService, clock: Clock
) -> None:
    """More pings than are kept per order: the stationary run still starts at the last move."""
    steps = [
        placed("s"),
        ev("s", "venue_accepted", 1),
        ev("s", "order_picked_up", 10, courier_id="k"),
    ]
    steps += [
        ev("s", "courier_location", 10 + n / 6, courier_id="k", lat=60.17, lon=24.94)
        for n in range(200)
    ]
    clock.at = T0 + timedelta(minutes=10 + 200 / 6)
    for start in range(0, len(steps), 50):
        await detector.ingest(steps[start : start + 50])
    issue = state(issues, "s", "courier_stationary")
    assert issue is not None
    assert issue.severity == "high"


async def stored_state(pool: asyncpg.Pool, order_id: str) -> OrderState:
    raw = await pool.fetchval("SELECT state FROM order_watch WHERE order_id = $1", order_id)
    return msgspec.json.decode(raw, type=OrderState)


async def test_the_stored_state_is_the_fold_of_every_event_whatever_the_arrival(
    detector: Detector, pool: asyncpg.Pool, clock: Clock
) -> None:
    """In-order events are applied to the stored state, late ones make it fold again, a
    state of another fold version is folded again: each way ends at the same state."""
    clock.at = T0 + timedelta(minutes=90)
    steps = [
        placed("f"),
        ev("f", "venue_accepted", 1),
        ev("f", "courier_assigned", 2, courier_id="k"),
    ]
    steps += [
        ev(
            "f",
            "courier_location",
            3 + n / 2,
            courier_id="k",
            lat=60.17 + (n % 7) * 0.0003,
            lon=24.9,
        )
        for n in range(150)
    ]
    shuffled = list(steps)
    random.Random(5).shuffle(shuffled)
    for start in range(0, len(shuffled), 7):
        await detector.ingest(shuffled[start : start + 7])
    assert await stored_state(pool, "f") == fold(steps)
    kept = await pool.fetchval("SELECT count(*) FROM order_events WHERE order_id = 'f'")
    assert kept == len(steps)  # every event is kept: a late one may land anywhere

    again = [OrderEvent(**{**e.__dict__, "order_id": "g"}) for e in steps]
    for n, event in enumerate(again):  # the same events in order, one at a time
        await detector.ingest([event])
        assert n > 5 or await stored_state(pool, "g") == fold(again[: n + 1])
    assert await stored_state(pool, "g") == fold(again)

    await pool.execute("UPDATE order_watch SET fold_version = 0, state = '{}' WHERE order_id = 'g'")
    late = ev("g", "eta_updated", 80, estimated_delivery_at=T0.isoformat())
    await detector.ingest([late])
    assert await stored_state(pool, "g") == fold([*again, late])


async def test_the_retention_sweep_drops_only_what_is_old_enough(
    detector: Detector, pool: asyncpg.Pool, clock: Clock
) -> None:
    clock.at = T0 + timedelta(minutes=2)
    for order_id in ("old", "new"):
        await detector.ingest(
            [placed(order_id), ev(order_id, "customer_contacted_support", 1, channel="chat")]
        )
    await detector.park("http", [("bad-old", "broken", b"{}"), ("bad-new", "broken", b"{}")])
    week = timedelta(days=8)
    await pool.execute(
        "UPDATE order_watch SET updated_at = now() - $1::interval WHERE order_id = 'old'", week
    )
    await pool.execute(
        "UPDATE support_contacts SET contacted_at = now() - $1::interval WHERE order_id = 'old'",
        week * 12,
    )
    await pool.execute(
        "UPDATE dead_letters SET received_at = now() - $1::interval WHERE event_id = 'bad-old'",
        week * 4,
    )
    retention = Retention(
        orders=timedelta(days=7), contacts=timedelta(days=90), dead_letters=timedelta(days=30)
    )
    swept = await detector.sweep(retention, batch=1)  # several rounds of one row
    assert swept == Swept(orders=1, events=2, contacts=1, dead_letters=1)
    watched = await pool.fetch("SELECT DISTINCT order_id FROM order_events")
    assert [r["order_id"] for r in watched] == ["new"]
    assert await pool.fetchval("SELECT count(*) FROM order_watch") == 1
    assert await pool.fetchval("SELECT count(*) FROM support_contacts") == 1
    assert await pool.fetchval("SELECT event_id FROM dead_letters") == "bad-new"
    assert await detector.sweep(retention) == Swept(0, 0, 0, 0)


async def test_an_unreadable_stored_event_stops_its_order_loudly_until_repaired(
    detector: Detector, pool: asyncpg.Pool, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    clock.at = T0 + timedelta(minutes=1)
    await detector.ingest([placed("u"), ev("u", "venue_accepted", 0.5)])
    await pool.execute(
        'UPDATE order_events SET body = \'{"type": "mystery"}\' WHERE event_id = $1',
        ev("u", "venue_accepted", 0.5).event_id,
    )
    late = ev("u", "order_ready", 0.2)  # before the last applied: a fold from every event
    await detector.ingest([late])
    assert "a stored event of order u is corrupt" in caplog.text
    row = await pool.fetchrow("SELECT state, next_check_at FROM order_watch WHERE order_id='u'")
    assert row is not None
    assert row["state"] is None
    assert row["next_check_at"] == clock.at + timedelta(minutes=5)
    await pool.execute("DELETE FROM order_events WHERE body->>'type' = 'mystery'")
    clock.at += timedelta(minutes=5)
    assert await detector.fire_due() == 1
    assert await stored_state(pool, "u") == fold([placed("u"), late])


async def test_a_separate_detector_shares_the_simulators_compressed_time(
    db: str, endpoints: Endpoints, issues: IssueService
) -> None:
    """``inbox detect`` with INBOX_DEMO_SPEED and INBOX_DEMO_ANCHOR judges order time as a
    separate ``inbox simulate`` with the same values writes it: an order placed nine
    compressed minutes ago (still in the future by the wall clock) is late at once."""
    stream, prefix = f"ORDERS_{RUN_ID}_{uuid.uuid4().hex[:6]}", f"o_{uuid.uuid4().hex[:8]}"
    anchor = datetime.now(UTC) - timedelta(minutes=1)
    env = os.environ | {
        "INBOX_DATABASE_URL": db,
        "INBOX_NATS_URL": endpoints.nats_url,
        "INBOX_ORDERS_STREAM": stream,
        "INBOX_ORDERS_SUBJECT_PREFIX": prefix,
        "INBOX_DEMO_SPEED": "60",
        "INBOX_DEMO_ANCHOR": anchor.isoformat(),
    }
    client = await nats.connect(endpoints.nats_url)
    js = client.jetstream()
    await ensure_stream(js, name=stream, subjects=[f"{prefix}.>"], duplicate_window=1200)
    compressed_now = anchor + (datetime.now(UTC) - anchor) * 60
    event = {
        **dataclasses.asdict(placed("demo")),
        "occurred_at": compressed_now - timedelta(minutes=9),
    }
    await js.publish(f"{prefix}.order_placed", msgspec.json.encode(event))
    detector = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "detect"], env=env, stderr=subprocess.PIPE
    )
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while state(issues, "demo", "venue_acceptance_delayed") is None:
            assert detector.poll() is None, detector.communicate()[1].decode()[-2000:]
            assert asyncio.get_running_loop().time() < deadline, "no acceptance issue raised"
            await asyncio.sleep(0.05)
    finally:
        detector.send_signal(signal.SIGTERM)
        detector.communicate(timeout=20)
        with contextlib.suppress(Exception):
            await js.delete_stream(stream)
        await client.close()
    issue = state(issues, "demo", "venue_acceptance_delayed")
    assert issue.severity == "critical"  # 9 compressed minutes: past the 8-minute tier


@contextlib.contextmanager
def conflict_once(issues: IssueService) -> Iterator[None]:
    """The next batch of commands loses a race (each answered ConcurrentWrite, nothing
    stored), as when an agent writes the same issues first; later ones go through."""
    real = issues.execute_batch

    def refuse(commands: Any, preloaded: Any = None) -> list[Any]:
        issues.execute_batch = real  # type: ignore[method-assign]
        return [ConcurrentWrite(c.issue_id) for c in commands]

    issues.execute_batch = refuse  # type: ignore[method-assign]
    try:
        yield
    finally:
        issues.execute_batch = real  # type: ignore[method-assign]


async def test_a_command_that_does_not_land_is_tried_again_soon(
    detector: Detector, issues: IssueService, clock: Clock, pool: asyncpg.Pool
) -> None:
    """The resolve of a delivered order loses a race (here: refused once, as a conflict
    would be): the order gets a timer a few seconds out instead of none, and the timer
    resolves the issue."""
    clock.at = T0 + timedelta(minutes=4)
    await detector.ingest([placed("race")])
    with conflict_once(issues):
        await detector.ingest([ev("race", "order_delivered", 4)])
        timer = await pool.fetchval("SELECT next_check_at FROM order_watch WHERE order_id='race'")
        assert timer == clock.at + timedelta(seconds=5)
        assert state(issues, "race", "venue_acceptance_delayed").status == "open"
    clock.at += timedelta(seconds=5)
    assert await detector.fire_due() == 1
    assert state(issues, "race", "venue_acceptance_delayed").status == "resolved"


async def test_an_order_the_detector_fails_on_is_parked_and_the_rest_go_on(
    endpoints: Endpoints, pool: asyncpg.Pool, issues: IssueService, clock: Clock
) -> None:
    """A batch that fails with a bug is tried order by order: the failing order's events
    are parked (replayable), the others stored and acknowledged, the consumer goes on."""

    class Failing(Detector):
        async def _visit(self, batch: Any, visits: Any, rules: Any) -> None:
            if any(visit.order_id == "poison" for visit in visits):
                raise RuntimeError("a bug in the rules")
            await super()._visit(batch, visits, rules)

    clock.at = T0 + timedelta(minutes=20)
    detector = helpers.detector(pool, issues, clock, kind=Failing)
    bodies = [
        msgspec.json.encode(dataclasses.asdict(placed(order_id)))
        for order_id in ("good-1", "poison", "good-2")
    ]
    async with consuming(endpoints.nats_url, detector, bodies, durable="poison-test") as task:

        async def done() -> bool:
            return (
                state(issues, "good-2", "venue_acceptance_delayed") is not None
                and await pool.fetchval("SELECT count(*) FROM dead_letters") == 1
            )

        await handled(task, done)
        assert state(issues, "good-1", "venue_acceptance_delayed") is not None
        letter = await pool.fetchrow("SELECT source, event_id, reason FROM dead_letters")
        assert letter is not None
        assert letter["source"] == "detector"
        assert letter["event_id"] == placed("poison").event_id
        assert "a bug in the rules" in letter["reason"]


async def test_a_contact_whose_escalation_does_not_land_is_escalated_on_the_next_look(
    detector: Detector, issues: IssueService, clock: Clock, pool: asyncpg.Pool
) -> None:
    clock.at = T0 + timedelta(minutes=4)
    await detector.ingest([placed("pc")])
    assert state(issues, "pc", "venue_acceptance_delayed").severity == "medium"
    contact = ev("pc", "customer_contacted_support", 4, channel="phone")
    with conflict_once(issues):
        await detector.ingest([contact])
        pending = await pool.fetchval(
            "SELECT pending_contacts FROM order_watch WHERE order_id = 'pc'"
        )
        assert json.loads(pending) == [contact.event_id]
        assert state(issues, "pc", "venue_acceptance_delayed").severity == "medium"
    clock.at += timedelta(seconds=5)
    assert await detector.fire_due() == 1
    issue = state(issues, "pc", "venue_acceptance_delayed")
    assert (issue.severity, issue.evidence["customer_contacts"]) == ("high", [contact.event_id])
    pending = await pool.fetchval("SELECT pending_contacts FROM order_watch WHERE order_id='pc'")
    assert json.loads(pending) == []
