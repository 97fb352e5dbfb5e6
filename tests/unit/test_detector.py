"""The detector's orchestration on the in-memory fakes (tests/unit/fakes.py): what it
does when a command does not land (retry soon, contacts kept pending) and how it cuts
commands into saves. The same behaviours against PostgreSQL: tests/integration/
test_detection.py."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest

from app import rules_config
from app.detection import Detector
from app.rules_source import RulesSource
from domain.issue import issue_id_for
from tests.integration.test_detection import T0, Clock, ev, placed
from tests.unit.fakes import FakeDeadLetters, FakeIssues, FakeWatchStore

ACCEPTANCE = "venue_acceptance_delayed"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def issues(clock: Clock) -> FakeIssues:
    return FakeIssues(now=clock.now)


@pytest.fixture
def store(issues: FakeIssues) -> FakeWatchStore:
    return FakeWatchStore(issue_versions=issues.versions)


def detector_on(
    store: FakeWatchStore, issues: FakeIssues, clock: Clock, command_batch_size: int = 100
) -> Detector:
    return Detector(
        store=store,
        dead_letters=FakeDeadLetters(),
        issues=issues,
        rules=RulesSource(rules_config.load(None)),
        clock=clock,
        command_batch_size=command_batch_size,
    )


@pytest.fixture
def detector(store: FakeWatchStore, issues: FakeIssues, clock: Clock) -> Detector:
    return detector_on(store, issues, clock)


def issue(issues: FakeIssues, order_id: str, kind: str = ACCEPTANCE) -> object:
    return issues.issues.get(issue_id_for(order_id, kind))


async def test_a_command_that_does_not_land_is_tried_again_soon(
    detector: Detector, issues: FakeIssues, store: FakeWatchStore, clock: Clock
) -> None:
    clock.at = T0 + timedelta(minutes=4)
    await detector.ingest([placed("race")])
    assert issues.issues[issue_id_for("race", ACCEPTANCE)].status == "open"
    issues.refuse_next()
    await detector.ingest([ev("race", "order_delivered", 4)])  # its resolve loses a race
    assert store.rows["race"].next_check_at == clock.at + timedelta(seconds=5)
    assert issues.issues[issue_id_for("race", ACCEPTANCE)].status == "open"
    clock.at += timedelta(seconds=5)
    assert await detector.fire_due() == 1
    assert issues.issues[issue_id_for("race", ACCEPTANCE)].status == "resolved"
    assert store.rows["race"].next_check_at is None  # delivered: nothing left to wait for


async def test_a_retry_never_postpones_an_earlier_timer(
    detector: Detector, issues: FakeIssues, store: FakeWatchStore, clock: Clock
) -> None:
    """The order's own next check comes before the retry: it stays."""
    clock.at = T0 + timedelta(minutes=4)
    await detector.ingest([placed("soon")])
    due = store.rows["soon"].next_check_at
    assert due is not None
    clock.at = due - timedelta(seconds=2)
    issues.refuse_next()
    await detector.ingest([ev("soon", "customer_contacted_support", 4.1, channel="chat")])
    assert store.rows["soon"].next_check_at == due


async def test_a_contact_whose_escalation_does_not_land_stays_pending_until_it_does(
    detector: Detector, issues: FakeIssues, store: FakeWatchStore, clock: Clock
) -> None:
    clock.at = T0 + timedelta(minutes=4)
    await detector.ingest([placed("pc")])
    issue_id = issue_id_for("pc", ACCEPTANCE)
    assert issues.issues[issue_id].severity == "medium"
    contact = ev("pc", "customer_contacted_support", 4, channel="phone")
    issues.refuse_next()
    await detector.ingest([contact])
    assert store.rows["pc"].pending == [contact.event_id]
    assert issues.issues[issue_id].severity == "medium"
    # The contact is recorded once, as detected, whatever became of its escalation.
    assert store.contacts[contact.event_id].detected
    issues.refuse_next()  # fails again on the retry: still pending
    clock.at += timedelta(seconds=5)
    assert await detector.fire_due() == 1
    assert store.rows["pc"].pending == [contact.event_id]
    clock.at += timedelta(seconds=5)
    assert await detector.fire_due() == 1
    escalated = issues.issues[issue_id]
    assert (escalated.severity, escalated.evidence["customer_contacts"]) == (
        "high",
        [contact.event_id],
    )
    assert store.rows["pc"].pending == []
    clock.at += timedelta(seconds=5)
    await detector.fire_due()
    assert issues.issues[issue_id].version == escalated.version  # escalated once


async def test_a_contact_with_no_open_issue_is_a_missed_detection_not_pending(
    detector: Detector, store: FakeWatchStore, clock: Clock
) -> None:
    clock.at = T0 + timedelta(minutes=1)
    contact = ev("quiet", "customer_contacted_support", 1, channel="phone")
    await detector.ingest([placed("quiet"), contact])
    recorded = store.contacts[contact.event_id]
    assert (recorded.detected, recorded.first_detected_at) == (False, None)
    assert store.rows["quiet"].pending == []


async def test_commands_are_saved_in_chunks_that_never_split_an_order(
    store: FakeWatchStore, issues: FakeIssues, clock: Clock
) -> None:
    """Each order here needs two commands (its late acceptance, its failed payment): with
    saves of at most five commands, two orders share a save and no order is split."""
    detector = detector_on(store, issues, clock, command_batch_size=5)
    clock.at = T0 + timedelta(minutes=20)
    orders = [f"ch-{n}" for n in range(7)]
    await detector.ingest(
        [e for o in orders for e in (placed(o), ev(o, "payment_failed", 1, reason="no"))]
    )
    saves = [[issues.issues[c.issue_id].order_id for c in save] for save in issues.saves]
    assert [len(save) for save in saves] == [4, 4, 4, 2]
    for save in saves:
        assert all(len(list(group)) == 2 for _, group in itertools.groupby(save))
    assert sorted(o for save in saves for o in set(save)) == orders


async def test_an_order_with_more_commands_than_a_save_takes_gets_one_save_of_its_own(
    store: FakeWatchStore, issues: FakeIssues, clock: Clock
) -> None:
    detector = detector_on(store, issues, clock, command_batch_size=1)
    clock.at = T0 + timedelta(minutes=20)
    await detector.ingest(
        [e for o in ("big-1", "big-2") for e in (placed(o), ev(o, "payment_failed", 1))]
    )
    assert [len(save) for save in issues.saves] == [2, 2]


async def test_a_chunk_that_does_not_land_retries_only_its_own_orders(
    store: FakeWatchStore, issues: FakeIssues, clock: Clock
) -> None:
    detector = detector_on(store, issues, clock, command_batch_size=2)
    clock.at = T0 + timedelta(minutes=20)
    issues.refuse_next()  # the first save (the first order's commands) loses a race
    await detector.ingest(
        [e for o in ("r-1", "r-2") for e in (placed(o), ev(o, "payment_failed", 1))]
    )
    soon = clock.at + timedelta(seconds=5)
    assert store.rows["r-1"].next_check_at == soon
    assert issue(issues, "r-1") is None
    assert issue(issues, "r-2") is not None
    assert store.rows["r-2"].next_check_at != soon
    clock.at = soon
    await detector.fire_due()
    assert issue(issues, "r-1") is not None
