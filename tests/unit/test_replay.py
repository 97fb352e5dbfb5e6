"""The backtest's replay of one order (domain/replay.py) on hand-built orders: what the
live detector would raise, escalate and resolve, looking at each event and each timer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.ingest import validate
from app.rules_config import load, parse, read
from domain.order import OrderEvent
from domain.replay import OrderReplay, replay_order

RULES = load(None)
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
LATER = T0 + timedelta(hours=3)


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


def ev(
    order: str, kind: str, minute: float, vertical: str = "restaurant", **data: Any
) -> OrderEvent:
    raw = {
        "event_id": f"{order}-{kind}-{minute}",
        "type": kind,
        "order_id": order,
        "occurred_at": at(minute).isoformat(),
        "vertical": vertical,
        "country": "FI",
        "city": "Helsinki",
        "data": data,
    }
    return validate(raw, RULES)


def placed(order: str, vertical: str = "restaurant", promise: float = 60) -> OrderEvent:
    return ev(
        order,
        "order_placed",
        0,
        vertical,
        venue_id="v1",
        customer_id="c1",
        promised_delivery_at=at(promise).isoformat(),
        amount=1500,
        currency="EUR",
    )


def one(events: list[OrderEvent], until: datetime = LATER) -> OrderReplay:
    return replay_order(events, [RULES], until)[0]


def outcome(replay: OrderReplay) -> dict[str, tuple[str, str]]:
    return {
        kind: (i.severity, "open" if i.open else str(i.resolved_by))
        for kind, i in replay.issues.items()
    }


def test_the_pharmacys_declared_waiting_rule_raises_escalates_at_its_timers_and_settles() -> None:
    order = [
        placed("p1", "pharmacy"),
        ev("p1", "prescription_submitted", 0.5, "pharmacy", prescription_id="rx-1"),
        ev(
            "p1",
            "prescription_approved",
            21,
            "pharmacy",
            prescription_id="rx-1",
            pharmacist_id="ph",
        ),
        ev("p1", "order_cancelled", 22, "pharmacy", reason="test", by="customer"),
    ]
    replay = one(order)
    issue = replay.issues["prescription_check_pending"]
    assert issue.detected_at == at(10.5)  # the first tier's timer, not the next event
    assert issue.severity == "high"  # the 20-minute tier fired at 20.5
    assert issue.episodes == [(at(10.5), at(21))]  # settled: resolved as the approval came
    assert issue.evidence["prescription_id"] == "rx-1"
    assert outcome(replay) == {
        "venue_acceptance_delayed": ("critical", "system"),
        "prescription_check_pending": ("high", "system"),
    }


def test_the_own_staff_florist_raises_no_courier_issue_on_a_healthy_order() -> None:
    order = [
        placed("f1", "florist", promise=90),
        ev("f1", "venue_accepted", 1, "florist", estimated_ready_at=at(40).isoformat()),
        ev("f1", "order_ready", 38, "florist"),
        ev("f1", "order_picked_up", 45, "florist", courier_id="van-1"),
        ev("f1", "order_delivered", 80, "florist"),
    ]
    assert outcome(one(order)) == {}


def test_the_florist_still_has_its_venue_and_delivery_rules() -> None:
    order = [
        placed("f2", "florist", promise=50),
        ev("f2", "venue_accepted", 12, "florist"),
        ev("f2", "order_picked_up", 40, "florist", courier_id="van-1"),
    ]
    replay = one(order, until=at(80))
    assert outcome(replay) == {
        "venue_acceptance_delayed": ("medium", "system"),  # 10 minutes, cleared at 12
        "delivery_overdue": ("medium", "open"),  # 30 minutes past the promise (10, 20, 40)
    }
    assert replay.issues["delivery_overdue"].detected_at == at(60)


def test_a_contact_after_an_issue_counts_with_its_lead_and_escalates_it() -> None:
    order = [
        placed("r1"),
        ev("r1", "customer_contacted_support", 4, channel="chat"),
    ]
    replay = one(order, until=at(4.5))
    (contact,) = replay.contacts
    assert contact.detected
    assert contact.first_detected_at == at(3.5)
    assert replay.issues["venue_acceptance_delayed"].severity == "high"  # medium + a contact


def test_a_contact_with_no_issue_open_is_missed() -> None:
    order = [placed("r2"), ev("r2", "customer_contacted_support", 1, channel="phone")]
    (contact,) = one(order, until=at(2)).contacts
    assert not contact.detected
    assert contact.first_detected_at is None


def test_time_stops_at_until() -> None:
    replay = one([placed("r3"), ev("r3", "venue_accepted", 30)], until=at(4))
    assert outcome(replay) == {"venue_acceptance_delayed": ("medium", "open")}
    assert replay.events == 1  # the acceptance came after until


def test_a_recurring_eta_slip_reopens_the_issue_the_system_resolved() -> None:
    def eta(minute: float, late_by: float) -> OrderEvent:
        return ev("r4", "eta_updated", minute, estimated_delivery_at=at(40 + late_by).isoformat())

    order = [placed("r4", promise=40), eta(5, 12), eta(10, 0), eta(20, 12)]
    replay = one(order, until=at(30))
    issue = replay.issues["eta_slipped"]
    assert [start for start, _ in issue.episodes] == [at(5), at(20)]
    assert issue.episodes[0][1] == at(13)  # clear for its 3 minutes (clear.eta_slipped)
    assert issue.open


def test_a_stricter_candidate_raises_more_and_the_same_rules_share_one_replay() -> None:
    text, _ = read(None)
    stricter = parse(
        text.replace(
            'venue_acceptance_delayed = [[3.5, "medium"]',
            'venue_acceptance_delayed = [[2, "medium"]',
        ),
        "candidate",
    )
    order = [placed("r5"), ev("r5", "venue_accepted", 3)]
    live, candidate = replay_order(order, [RULES, stricter], at(5))
    assert outcome(live) == {}
    assert outcome(candidate) == {"venue_acceptance_delayed": ("medium", "system")}
    grocery = [placed("g1", "grocery"), ev("g1", "venue_accepted", 3, "grocery")]
    same = replay_order(grocery, [RULES, stricter], at(5))  # grocery has its own tiers
    assert same[0] is same[1]


def test_repeated_events_are_replayed_once_in_order_time() -> None:
    order = [ev("r6", "venue_accepted", 1), placed("r6"), placed("r6")]
    assert one(order).events == 2
    with pytest.raises(ValueError, match="at least one event"):
        one(order, until=at(-1))


def _ping(order: str, minute: float, lat: float = 60.17) -> OrderEvent:
    return ev(order, "courier_location", minute, courier_id="c2", lat=lat, lon=24.94)


def test_a_ping_that_starts_the_stationary_clock_is_looked_at() -> None:
    """A courier assigned after the pick-up (a hand-over) has not moved yet: the first ping
    starts courier_stationary's clock, which no standing timer covers."""
    events = [
        placed("handover", promise=30),
        ev("handover", "venue_accepted", 1),
        ev("handover", "courier_assigned", 2, courier_id="c1"),
        ev("handover", "order_picked_up", 9, courier_id="c1"),
        ev("handover", "courier_assigned", 10, courier_id="c2"),
        _ping("handover", 11),
    ]
    replay = one(events, until=at(34))
    assert replay.issues["courier_stationary"].detected_at == at(19)


def test_an_order_whose_first_news_is_a_ping_goes_stale() -> None:
    replay = one([_ping("pinged", 0)], until=at(50))
    assert replay.issues["order_stale"].detected_at == at(45)
