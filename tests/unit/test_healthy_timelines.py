"""Healthy orders raise nothing; problem orders still raise (issue 11).

Each timeline is played through the fold, the rules and the plan as the detector does,
looking every quarter of an order-minute (and at each event), with the issues kept as the
plan's actions leave them: a healthy timeline must ask for no action at all, a problem
timeline must raise its kind (and not flap).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.rules_config import load
from domain.detection import IssueSnapshot, plan
from domain.order import OrderEvent, fold
from domain.rules import evaluate

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SHIPPED = load(None)
LOOK_EVERY = 0.25  # order-minutes

Step = tuple[float, str, dict[str, Any]]


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def play(vertical: str, steps: Iterable[Step], until: float) -> list[tuple[float, str, str]]:
    """(minute, kind, op) of every issue action the detector would take."""
    events = [
        OrderEvent(f"e{n:03d}", kind, "o1", at(minute), vertical, "FI", "Helsinki", data)
        for n, (minute, kind, data) in enumerate(steps)
    ]
    rules = SHIPPED.rules_for(vertical, "FI")
    clear_for = timedelta(seconds=SHIPPED.clear_for_seconds)
    issues: dict[str, IssueSnapshot] = {}
    clear_since: dict[str, datetime] = {}
    done: list[tuple[float, str, str]] = []
    looks = {round(n * LOOK_EVERY, 2) for n in range(int(until / LOOK_EVERY) + 1)}
    for minute in sorted(looks | {m for m, _, _ in steps}):
        now = at(minute)
        state = fold(e for e in events if e.occurred_at <= now)
        if state is None:
            continue
        checks = evaluate(state, now, rules)
        decided = plan(state, checks, issues, clear_since, now, clear_for, rules.clear_for)
        clear_since = decided.clear_since
        for action in decided.actions:
            done.append((minute, action.kind, action.op))
            issue = issues.get(action.kind)
            if action.op == "detect":
                assert action.severity is not None
                issues[action.kind] = IssueSnapshot("open", action.severity)
            elif issue is not None and action.op == "escalate":
                assert action.severity is not None
                issues[action.kind] = IssueSnapshot(issue.status, action.severity)
            elif issue is not None and action.op == "reopen":
                issues[action.kind] = IssueSnapshot("open", issue.severity)
            elif issue is not None and action.op == "resolve":
                issues[action.kind] = IssueSnapshot("resolved", issue.severity, "system")
    return done


def pings(start: float, end: float, *, paused: Iterable[float] = ()) -> list[Step]:
    """A courier location each minute from ``start``, moving ~330 m a minute except in
    the ``paused`` minutes (a traffic light: the same place)."""
    steps: list[Step] = []
    lat = 60.17
    minute = start
    while minute < end:
        if round(minute) not in set(paused):
            lat += 0.003
        steps.append((minute, "courier_location", {"courier_id": "c1", "lat": lat, "lon": 24.9}))
        minute += 1
    return steps


# A healthy order of each vertical: (promise, accepted, estimated ready, courier
# assigned, arrived, ready, picked up, delivered), in order-minutes after placement.
Plan = tuple[float, float, float | None, float, float, float, float, float]
PLANS: dict[str, Plan] = {
    "restaurant": (40, 0.6, 15.6, 11.6, 14.5, 15.6, 16.5, 38),
    "grocery": (50, 1.0, 23.0, 18.0, 21.5, 23.5, 24.5, 47),
    "retail": (60, 2.0, 27.0, 22.0, 25.0, 27.0, 28.0, 55),
    "parcel": (180, 0.8, None, 3.0, 10.0, 10.0, 12.0, 60),
}


def healthy(
    vertical: str,
    *,
    estimate: bool = True,
    assigned: list[Step] | None = None,
    etas: Iterable[tuple[float, float]] | None = None,
    extra: Iterable[Step] = (),
    paused: Iterable[float] = (),
    delivered: float | None = None,
) -> tuple[list[Step], float]:
    """The vertical's healthy timeline, with a variation; (steps, minute it ends)."""
    promise, accept, ready_est, assign, arrive, ready, pickup, deliver = PLANS[vertical]
    deliver = delivered if delivered is not None else deliver
    accepted = {"estimated_ready_at": at(ready_est)} if estimate and ready_est else {}
    steps: list[Step] = [
        (0, "order_placed", {"promised_delivery_at": at(promise)}),
        (accept, "venue_accepted", accepted),
        *(assigned or [(assign, "courier_assigned", {"courier_id": "c1"})]),
        (arrive, "courier_arrived_at_venue", {"courier_id": "c1"}),
        (ready, "order_ready", {}),
        (pickup, "order_picked_up", {"courier_id": "c1"}),
    ]
    for minute, eta in etas or [(pickup + 0.5, deliver)]:
        steps.append((minute, "eta_updated", {"estimated_delivery_at": at(eta)}))
    steps += pings(pickup + 1, deliver, paused=paused)
    steps += list(extra)
    steps.append((deliver, "order_delivered", {}))
    return steps, deliver + 5


def quick_reassignment(vertical: str) -> list[Step]:
    assign = PLANS[vertical][3]
    return [
        (assign - 2, "courier_assigned", {"courier_id": "c0"}),
        (assign - 1, "courier_unassigned", {"courier_id": "c0", "reason": "declined"}),
        (assign + 1.5, "courier_assigned", {"courier_id": "c1"}),
    ]


def wobbling(vertical: str) -> list[tuple[float, float]]:
    """ETAs a minute or two either side of the promise, one every few minutes."""
    promise, pickup = PLANS[vertical][0], PLANS[vertical][6]
    offsets = [1.5, 1.4, 1.6, 0.9, 1.2, -0.5, 2.5, 1.0]
    return [(pickup + 0.5 + 3 * n, promise + off) for n, off in enumerate(offsets)]


VERTICALS = list(PLANS)
HEALTHY = [
    *((v, "on-time just-in-time dispatch", {}) for v in VERTICALS),
    *((v, "no ready estimate from the venue", {"estimate": False}) for v in VERTICALS),
    *((v, "a quick reassignment", {"assigned": quick_reassignment(v)}) for v in VERTICALS),
    *(
        (
            v,
            "a customer asks a question",
            {"extra": [(PLANS[v][6] + 3, "customer_contacted_support", {"channel": "chat"})]},
        )
        for v in VERTICALS
    ),
    *(
        (
            v,
            "an ETA wobbling around the promise",
            {"etas": wobbling(v), "delivered": PLANS[v][0] + 1},
        )
        for v in VERTICALS
    ),
    *(
        (v, "a courier pausing at traffic lights", {"paused": [PLANS[v][6] + 3, PLANS[v][6] + 4]})
        for v in VERTICALS
    ),
    *(
        (v, "delivered inside the promised window", {"delivered": PLANS[v][0] + 2})
        for v in VERTICALS
    ),
]


@pytest.mark.parametrize(
    ("vertical", "story", "variation"), HEALTHY, ids=[f"{v}: {s}" for v, s, _ in HEALTHY]
)
def test_a_healthy_order_raises_nothing(
    vertical: str, story: str, variation: dict[str, Any]
) -> None:
    steps, until = healthy(vertical, **variation)
    assert play(vertical, steps, until) == []


def raised(done: list[tuple[float, str, str]], kind: str) -> list[tuple[float, str]]:
    return [(minute, op) for minute, k, op in done if k == kind]


PLACED: Step = (0, "order_placed", {"promised_delivery_at": at(40)})
ACCEPTED: Step = (0.6, "venue_accepted", {"estimated_ready_at": at(15.6)})


def test_no_courier_by_the_estimated_ready_time_is_raised() -> None:
    done = play("restaurant", [PLACED, ACCEPTED], 30)
    assert raised(done, "no_courier_assigned")[0] == (20.75, "detect")  # 15.6 + 5 tier


def test_no_courier_without_an_estimate_counts_from_acceptance_and_preparation() -> None:
    done = play("restaurant", [PLACED, (0.6, "venue_accepted", {})], 30)
    assert raised(done, "no_courier_assigned")[0] == (20.75, "detect")  # 0.6 + 15 + 5


def test_a_parcel_without_a_courier_counts_from_acceptance() -> None:
    parcel = [(0, "order_placed", {"promised_delivery_at": at(180)}), ACCEPTED]
    assert raised(play("parcel", parcel, 15), "no_courier_assigned")[0] == (10.75, "detect")
    # A sender slow to accept is venue_acceptance_delayed's, not a missing courier.
    slow = [(0, "order_placed", {"promised_delivery_at": at(180)})]
    assert raised(play("parcel", slow, 25), "no_courier_assigned") == []
    late = play("parcel", [*slow, (35, "venue_accepted", {})], 50)
    assert raised(late, "no_courier_assigned")[0] == (45, "detect")


def test_a_courier_unassigned_and_not_replaced_is_missing_after_the_grace() -> None:
    steps = [
        PLACED,
        ACCEPTED,
        (11.6, "courier_assigned", {"courier_id": "a"}),
        (14, "courier_unassigned", {"courier_id": "a"}),
    ]
    # Due at max(15.6, 14 + 5 grace) = 19, raised at the 5-minute tier.
    assert raised(play("restaurant", steps, 30), "no_courier_assigned")[0] == (24, "detect")


def test_a_quick_reassignment_does_not_reopen_or_resolve_a_late_courier_issue() -> None:
    steps = [
        PLACED,
        ACCEPTED,
        (30, "courier_assigned", {"courier_id": "a"}),
        (31, "courier_unassigned", {"courier_id": "a"}),
        (32, "courier_assigned", {"courier_id": "b"}),
    ]
    ops = [op for _, op in raised(play("restaurant", steps, 40), "no_courier_assigned")]
    assert ops == ["detect", "resolve"]


def test_repeated_reassignments_are_raised() -> None:
    steps = [PLACED, ACCEPTED]
    for n in range(3):
        steps += [
            (8 + 2 * n, "courier_assigned", {"courier_id": f"c{n}"}),
            (9 + 2 * n, "courier_unassigned", {"courier_id": f"c{n}"}),
        ]
    done = play("restaurant", steps, 16)
    assert raised(done, "courier_reassigned_repeatedly")[0] == (11, "detect")


def test_a_customer_contact_is_not_news_of_the_order() -> None:
    """Silent since 18.3, the customer wrote at 45.1: stale at 18.3 + 45, not 45.1 + 45."""
    steps = [
        PLACED,
        ACCEPTED,
        (11.6, "courier_assigned", {"courier_id": "c"}),
        (18.3, "order_picked_up", {"courier_id": "c"}),
        (45.1, "customer_contacted_support", {"channel": "chat"}),
    ]
    assert raised(play("restaurant", steps, 70), "order_stale")[0] == (63.5, "detect")


def test_an_eta_wobbling_over_the_threshold_raises_once_and_resolves_once() -> None:
    steps, until = healthy(
        "restaurant",
        etas=[(17, 52), (20, 44), (23, 43.5), (26, 46), (29, 44), (32, 41)],
        delivered=45,
    )
    done = raised(play("restaurant", steps, until), "eta_slipped")
    # Raised at +12; +4, +3.5, +6, +4 linger above the margin; +1 clears it, for 3 minutes.
    assert done == [(17, "detect"), (35, "resolve")]


def test_a_stationary_courier_is_raised_and_resolves_only_after_moving_on() -> None:
    still = {"courier_id": "c1", "lat": 60.2, "lon": 24.9}
    nudged = {"courier_id": "c1", "lat": 60.20001, "lon": 24.9}  # a metre: not moving
    steps = [
        PLACED,
        ACCEPTED,
        (11.6, "courier_assigned", {"courier_id": "c1"}),
        (16.5, "order_picked_up", {"courier_id": "c1"}),
        (17, "eta_updated", {"estimated_delivery_at": at(38)}),
        *((m, "courier_location", still) for m in range(17, 28)),
        (28, "courier_location", nudged),
        *(
            (m, "courier_location", {**still, "lat": 60.2 + 0.003 * (m - 28)})
            for m in range(29, 36)
        ),
    ]
    done = raised(play("restaurant", steps, 38), "courier_stationary")
    assert done == [(25, "detect"), (32, "resolve")]  # moved at 29, clear for 3 minutes


def test_a_restaurant_acceptance_in_flight_past_three_minutes_raises_nothing() -> None:
    # Accepted at 1.2, the event is late (issue 11: late events): until it arrives at
    # 3.4 the detector has the placement alone. The marketplace itself reminds the venue
    # at about 3 minutes; the inbox raises once the wait outlives that by half a minute.
    done = play("restaurant", [PLACED], 3.4)
    assert raised(done, "venue_acceptance_delayed") == []


def test_a_slow_restaurant_is_raised_half_a_minute_past_the_norm() -> None:
    done = play("restaurant", [PLACED, (6, "venue_accepted", {})], 10)
    assert raised(done, "venue_acceptance_delayed") == [
        (3.5, "detect"),
        (5, "escalate"),
        (6, "resolve"),
    ]
