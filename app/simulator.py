"""``inbox simulate``: realistic order lifecycles, some going wrong, published to NATS.

Each order is a timeline of events in minutes after it was placed, drawn from a seeded
random generator: venues accept in about a minute and estimate when the food is ready,
kitchens take 10-20 minutes (restaurants) or pickers 15-25 (grocery), couriers are
dispatched just in time (a few minutes before the estimated ready time; sometimes swapped
for another within minutes) and deliver within the promised window, the ETA wobbling a
little, with location pings on the way. Faults are injected at published-ish rates: slow
venues, rejections, no courier, late kitchens keeping couriers waiting, stationary
couriers, repeated reassignments, ETA slips, cancellations, payment failures; customers
contact support after a problem (the detection KPI needs them) and, now and then, with a
question about a healthy order. Each story carries its ground truth (:class:`Truth`: the
issue kinds that should be raised, and when each problem began), for the precision
benchmark.

Besides the four classic verticals it makes the two the shipped rules file declares as
worked examples: a pharmacy (the marketplace's couriers; the pharmacy's system sends
``prescription_submitted`` soon after the order and ``prescription_approved`` after a
pharmacist's check of a few minutes, rarely ``prescription_rejected`` and the order
cancelled; the fault ``slow_pharmacist`` makes the check outlast its first tier) and a
florist that delivers with its own van (no courier event ever comes; its staff may send
``order_ready`` and ``order_picked_up``, its driver's app ETAs; only the faults a florist
can have). Which verticals, and how often, is a parameter (:data:`CLASSIC_VERTICALS` for
the benchmarks, whose stories stay draw for draw what they were; :data:`DEMO_VERTICALS`
for ``inbox simulate`` and ``inbox up``; ``--verticals name=weight,...``).

Time: events are stamped and published by a ``ScaledClock`` (adapters/clock.py). At
speed 1 that is the wall clock; ``inbox up --speed 30`` runs the detector on the same
scaled clock, so that a 40-minute order plays out in 80 seconds and the demo is lively.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec
from nats.aio.client import Client as NATS

from adapters.clock import ScaledClock
from adapters.loops import wait_or_stop
from app.simulated_verticals import (
    ACCEPT_WITHIN,
    CHECK_WITHIN,
    CLASSIC_VERTICALS,
    CONTACT_AFTER_PROBLEM,
    CONTACT_WITHOUT_PROBLEM,
    COUNTRIES,
    COURIER_STILL_AT_MOST,
    COURIER_WAITS_AT_MOST,
    DELAYING,
    DEMO_VERTICALS,
    ETA_NEAR_PROMISE,
    FLORIST_HANDOVER,
    LATE_AFTER,
    NO_READY_ESTIMATE,
    OWN_STAFF,
    PICK_UP_WITHIN,
    PREPARATION,
    PRESCRIPTION_CHECK,
    QUICK_REASSIGNMENT,
    STALE_AFTER,
    VERTICAL_FAULTS,
    Mix,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    minute: float
    type: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Truth:
    """What went wrong with one order, as the simulator made it: the faults injected and
    the issue kinds that should be raised, each with the order-minute its problem began
    (an injected fault's kind, and the consequences it has on the timeline: a late
    kitchen makes the order late). A healthy order has no problems."""

    faults: frozenset[str]
    problems: dict[str, float]

    @property
    def healthy(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Story:
    vertical: str
    country: str
    city: str
    steps: list[Step]
    truth: Truth


def lifecycle(  # noqa: PLR0912, PLR0915 (one story, told in order)
    rng: random.Random, order_id: str, verticals: Mix = CLASSIC_VERTICALS
) -> Story:
    """One order's story, faults included, with its ground truth.

    Healthy orders look like a marketplace's: the venue accepts within about a minute and
    says when the food will be ready (``estimated_ready_at``); a courier is dispatched
    just in time, a few minutes before then (sometimes swapped for another within
    minutes); the courier pauses now and then on the way; the ETA wobbles a couple of
    minutes around the delivery, which lands in the promised window; some customers ask
    a question. A pharmacy's order waits for the pharmacist's check of its prescription
    before it is packed; a florist's own driver takes it, and no courier event comes.

    Every draw of a classic vertical's story is the one it was before the pharmacy and
    the florist came (their own draws are made in their own branches only), so a seed
    gives the benchmarks the same stories.
    """
    vertical = rng.choices([v for v, _ in verticals], [w for _, w in verticals])[0]
    country = rng.choice(sorted(COUNTRIES))
    cities, currency = COUNTRIES[country]
    city = rng.choice(cities)
    fault = {name for name, p in VERTICAL_FAULTS[vertical].items() if rng.random() < p}
    parcel = vertical == "parcel"
    couriers_deliver = vertical not in OWN_STAFF
    problems: dict[str, float] = {}
    preparation = rng.uniform(*PREPARATION[vertical])
    ride_estimate = rng.uniform(8, 20)
    promise = (
        rng.uniform(120, 240) if parcel else 1 + preparation + 2 + ride_estimate + rng.uniform(3, 8)
    )
    steps = [
        Step(
            0,
            "order_placed",
            {
                "venue_id": f"venue-{rng.randrange(500)}",
                "customer_id": f"customer-{rng.randrange(100_000)}",
                "promised_delivery_at": promise,  # minutes, made absolute when published
                "amount": rng.randrange(800, 9000),
                "currency": currency,
            },
        )
    ]
    check = _prescription_check(rng, steps, fault, problems) if vertical == "pharmacy" else None
    if "payment_failed" in fault:
        steps.append(Step(0.2, "payment_failed", {"reason": "card declined"}))
        problems["payment_failed"] = 0.2
    accept = rng.uniform(0.3, 1.5)
    if "slow_venue" in fault:
        accept += ACCEPT_WITHIN[vertical] + rng.uniform(1, 7)
    if accept > ACCEPT_WITHIN[vertical]:
        problems["venue_acceptance_delayed"] = ACCEPT_WITHIN[vertical]
    if "venue_rejects" in fault:
        problems.pop("venue_acceptance_delayed", None)  # rejected in time
        accept = min(accept, ACCEPT_WITHIN[vertical] - 0.1)
        steps.append(Step(accept, "venue_rejected", {"reason": "too busy"}))
        problems["venue_rejected"] = accept
        cancel = accept + rng.uniform(1, 5)
        steps.append(Step(cancel, "order_cancelled", {"reason": "venue rejected", "by": "system"}))
        # A prescription's check still under way ends with the order.
        kept = [s for s in steps if s.minute <= cancel]
        return _story(rng, vertical, country, city, kept, fault, _before(problems, cancel))
    estimated_ready = accept + preparation
    accepted = {} if rng.random() < NO_READY_ESTIMATE else {"estimated_ready_at": estimated_ready}
    steps.append(Step(accept, "venue_accepted", accepted))
    assign: float | None = None  # the last courier's assignment; none for own staff
    if couriers_deliver:
        courier, assign = _dispatch(
            rng,
            steps,
            fault,
            problems,
            accept=accept,
            estimated_ready=estimated_ready,
            parcel=parcel,
        )
    else:
        courier = f"driver-{rng.randrange(200)}"  # the florist's own, in order_picked_up
    ready = max(accept + 1, estimated_ready + rng.uniform(-2, 3))
    if "courier_stuck" in fault:  # the kitchen is late: the courier waits for the food
        ready = estimated_ready + rng.uniform(15, 25)
    if check is not None:  # packed once the pharmacist has approved
        ready = max(ready, check.decided + check.packing)
    arrive = None
    if assign is not None:
        arrive = assign + rng.uniform(2, 6)
        steps.append(Step(arrive, "courier_arrived_at_venue", {"courier_id": courier}))
    handover = couriers_deliver or rng.random() < FLORIST_HANDOVER
    if handover:
        steps.append(Step(ready, "order_ready", {}))
    pickup = (ready if arrive is None else max(ready, arrive)) + rng.uniform(0.5, 2.5)
    if arrive is not None and pickup - arrive > COURIER_WAITS_AT_MOST:
        problems["courier_waiting_at_venue"] = arrive + COURIER_WAITS_AT_MOST
    if handover and pickup - ready > PICK_UP_WITHIN[vertical]:
        problems["ready_not_picked_up"] = ready + PICK_UP_WITHIN[vertical]
    cancelled = None  # (minute, by whom, why)
    if "cancelled" in fault:
        cancelled = (rng.uniform(2, pickup), "customer", "changed mind")
    if check is not None and check.rejected and (cancelled is None or check.cancel < cancelled[0]):
        cancelled = (check.cancel, "venue", "prescription rejected")
    if cancelled is not None:
        cancel, by, reason = cancelled
        steps.append(Step(cancel, "order_cancelled", {"reason": reason, "by": by}))
        kept = [s for s in steps if s.minute <= cancel]
        return _story(rng, vertical, country, city, kept, fault, _before(problems, cancel), promise)
    if handover:
        steps.append(Step(pickup, "order_picked_up", {"courier_id": courier}))
    delayed = bool(fault & DELAYING)
    if "eta_slip" in fault:
        deliver = promise + rng.uniform(12, 40)
    elif delayed or parcel:
        deliver = pickup + ride_estimate + rng.uniform(-2, 3)
    elif rng.random() < ETA_NEAR_PROMISE:
        deliver = promise + rng.uniform(-1, 2)
    else:
        deliver = promise + rng.uniform(-8, 0)
    deliver = max(deliver, pickup + 5)
    lat, lon = rng.uniform(40, 61), rng.uniform(-3, 28)
    stationary = None
    if "courier_stationary" in fault:
        start = pickup + rng.uniform(2, 4)
        stationary = (start, start + rng.uniform(10, 15))
        problems["courier_stationary"] = start + 8
        deliver = max(deliver, stationary[1] + rng.uniform(3, 8))
    minute = pickup + 1
    next_eta = pickup + 1
    first_eta = True
    while minute < deliver:
        if minute >= next_eta:
            estimate = deliver + rng.uniform(-2, 2)
            if first_eta and "eta_slip" in fault:
                estimate = deliver  # the slip is known when it is first estimated
            steps.append(Step(minute, "eta_updated", {"estimated_delivery_at": estimate}))
            first_eta = False
            next_eta = minute + rng.uniform(3, 6)
        paused = rng.random() < 0.3  # a traffic light, a door to find
        if not (stationary and stationary[0] <= minute <= stationary[1]) and not paused:
            lat += rng.uniform(0.002, 0.006)
        if couriers_deliver:  # a florist's van sends ETAs, no courier's location
            steps.append(
                Step(minute, "courier_location", {"courier_id": courier, "lat": lat, "lon": lon})
            )
        minute += 1
    steps.append(Step(deliver, "order_delivered", {}))
    return _story(rng, vertical, country, city, steps, fault, problems, promise)


def _dispatch(
    rng: random.Random,
    steps: list[Step],
    fault: set[str],
    problems: dict[str, float],
    *,
    accept: float,
    estimated_ready: float,
    parcel: bool,
) -> tuple[str, float]:
    """The marketplace's courier, assigned just in time (sometimes swapped): the last
    courier and the minute of the last assignment."""
    # Just-in-time dispatch: a courier assigned a few minutes before the food is ready
    # (parcels: soon after acceptance, there is nothing to wait for).
    if parcel:
        assign = accept + rng.uniform(1, 4)
    else:
        assign = max(accept + 0.5, estimated_ready - rng.uniform(3, 7))
    if "no_courier" in fault:
        due = 0.0 if parcel else estimated_ready
        assign = max(assign, due) + rng.uniform(15, 35)
        problems["no_courier_assigned"] = due
    couriers = iter(f"courier-{rng.randrange(2000)}" for _ in range(10))
    courier = next(couriers)
    steps.append(Step(assign, "courier_assigned", {"courier_id": courier}))
    swaps = (
        rng.randint(2, 3)
        if "courier_reassigned" in fault
        else int(rng.random() < QUICK_REASSIGNMENT)
    )
    for _ in range(swaps):
        gone = assign + rng.uniform(0.5, 2)
        steps.append(
            Step(gone, "courier_unassigned", {"courier_id": courier, "reason": "declined"})
        )
        assign = gone + rng.uniform(0.3, 2)
        courier = next(couriers)
        steps.append(Step(assign, "courier_assigned", {"courier_id": courier}))
    if swaps >= 2:
        problems["courier_reassigned_repeatedly"] = assign
    return courier, assign


@dataclass(frozen=True)
class _Check:
    """A pharmacy order's prescription check: when the pharmacist decided, the minutes of
    packing after an approval, and for a rejection when the pharmacy cancels."""

    decided: float
    packing: float
    rejected: bool
    cancel: float


def _prescription_check(
    rng: random.Random, steps: list[Step], fault: set[str], problems: dict[str, float]
) -> _Check:
    """The pharmacy's own events: the prescription submitted soon after the order, and the
    pharmacist's decision a few minutes later (``slow_pharmacist``: past the first tier of
    waiting.prescription_check_pending, which is then a problem from that minute)."""
    submitted = rng.uniform(0.1, 1.0)
    prescription: dict[str, Any] = {"prescription_id": f"rx-{rng.randrange(10**7):07d}"}
    if rng.random() < 0.1:
        prescription["controlled_substance"] = True
    steps.append(Step(submitted, "prescription_submitted", prescription))
    took = rng.uniform(*PRESCRIPTION_CHECK)
    if "slow_pharmacist" in fault:
        took = CHECK_WITHIN + rng.uniform(2, 15)
        problems["prescription_check_pending"] = submitted + CHECK_WITHIN
    decided = submitted + took
    verdict = {**prescription, "pharmacist_id": f"pharmacist-{rng.randrange(300)}"}
    verdict.pop("controlled_substance", None)
    rejected = "prescription_rejected" in fault
    if rejected:
        verdict["reason"] = "prescription expired"
        steps.append(Step(decided, "prescription_rejected", verdict))
    else:
        steps.append(Step(decided, "prescription_approved", verdict))
    # Packing after an approval takes at least the minute a cancellation after a
    # rejection does, so a rejected order is never ready.
    return _Check(decided, rng.uniform(1, 3), rejected, decided + rng.uniform(0.2, 0.9))


def _before(problems: dict[str, float], minute: float) -> dict[str, float]:
    return {kind: at for kind, at in problems.items() if at < minute}


def _story(
    rng: random.Random,
    vertical: str,
    country: str,
    city: str,
    steps: list[Step],
    fault: set[str],
    problems: dict[str, float],
    promise: float | None = None,
) -> Story:
    """The story with the problems its timeline shows (late, stale) added, and a customer
    contact: after the first problem for most problem orders, a question for a few
    healthy ones."""
    steps.sort(key=lambda s: s.minute)
    end = steps[-1].minute
    if promise is not None:
        late = promise + LATE_AFTER[vertical]
        if end > late:  # delivered or cancelled past it
            problems.setdefault("delivery_overdue", late)
        for step in steps:
            if step.type == "eta_updated" and step.data["estimated_delivery_at"] >= late:
                problems.setdefault("eta_slipped", step.minute)
                break
    progress = [s.minute for s in steps if s.type != "customer_contacted_support"]
    for before, after in itertools.pairwise(progress):
        if after - before > STALE_AFTER[vertical]:
            problems.setdefault("order_stale", before + STALE_AFTER[vertical])
            break
    if problems and rng.random() < CONTACT_AFTER_PROBLEM:
        at = min(problems.values()) + rng.uniform(2, 10)
    elif not problems and rng.random() < CONTACT_WITHOUT_PROBLEM:
        at = rng.uniform(1, end)
    else:
        at = end
    if at < end:
        steps.append(
            Step(at, "customer_contacted_support", {"channel": rng.choice(["chat", "phone"])})
        )
        steps.sort(key=lambda s: s.minute)
    # After the contact's draws, which it must not change (the classic stories stay
    # draw for draw what they were before it was seen).
    still = None if vertical in OWN_STAFF else _stood_still(steps)  # no courier to judge
    if still is not None:
        problems.setdefault("courier_stationary", still)
    return Story(vertical, country, city, steps, Truth(frozenset(fault), problems))


def _stood_still(steps: list[Step]) -> float | None:
    """The minute a courier who picked the order up had stood still for longer than
    COURIER_STILL_AT_MOST minutes, if ever: on a healthy ride the pauses at lights and
    doors now and then add up to that, by chance, and then it is a problem like any. (A
    stop of exactly that long, ended by a ping on the minute, is a tie the detector may
    call either way: pings come a whole number of minutes apart.)"""
    moved = lat = None
    for step in steps:
        if step.type == "order_picked_up":
            moved = step.minute
        elif moved is None:
            continue
        elif step.type in ("courier_location", "order_delivered"):
            if round(step.minute - moved, 6) > COURIER_STILL_AT_MOST:
                return moved + COURIER_STILL_AT_MOST
            if step.type == "courier_location" and step.data["lat"] != lat:
                moved, lat = step.minute, step.data["lat"]
    return None


def _absolute(data: dict[str, Any], placed: datetime) -> dict[str, Any]:
    out = dict(data)
    for key in ("promised_delivery_at", "estimated_delivery_at", "estimated_ready_at"):
        if key in out:
            out[key] = (placed + timedelta(minutes=out[key])).isoformat()
    return out


def order_events(
    rng: random.Random, order_id: str, placed: datetime, verticals: Mix = CLASSIC_VERTICALS
) -> list[tuple[datetime, dict[str, Any]]]:
    """One order's lifecycle as (occurred_at, CONTRACT §2 event body), placed at ``placed``."""
    return order_story(rng, order_id, placed, verticals)[0]


def order_story(
    rng: random.Random, order_id: str, placed: datetime, verticals: Mix = CLASSIC_VERTICALS
) -> tuple[list[tuple[datetime, dict[str, Any]]], Truth]:
    """One order's events as :func:`order_events` gives them, and its ground truth."""
    story = lifecycle(rng, order_id, verticals)
    events = []
    for step in story.steps:
        at = placed + timedelta(minutes=step.minute)
        body = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "type": step.type,
            "order_id": order_id,
            "occurred_at": at.isoformat(),
            "vertical": story.vertical,
            "country": story.country,
            "city": story.city,
            "data": _absolute(step.data, placed),
        }
        events.append((at, body))
    return events, story.truth


async def simulate(
    nats: NATS,
    *,
    subject_prefix: str,
    orders: int | None,
    rate: float,
    seed: int,
    clock: ScaledClock,
    stop: asyncio.Event,
    verticals: Mix = DEMO_VERTICALS,
) -> int:
    """Start ``rate`` orders per (scaled) minute until ``orders`` were started (None: for
    ever), of ``verticals``; publish each event when its time comes. Returns the events
    published."""
    rng = random.Random(seed)  # noqa: S311 (a seeded simulation, not cryptography)
    js = nats.jetstream()
    queue: list[tuple[datetime, int, dict[str, Any]]] = []
    counter = itertools.count()
    started = published = 0
    next_order = clock.now()
    while not stop.is_set():
        now = clock.now()
        while (orders is None or started < orders) and next_order <= now:
            order_id = f"sim-{seed}-{started}-{uuid.UUID(int=rng.getrandbits(128)).hex[:8]}"
            for at, body in order_events(rng, order_id, next_order, verticals):
                heapq.heappush(queue, (at, next(counter), body))
            started += 1
            next_order += timedelta(minutes=rng.expovariate(rate))
        while queue and queue[0][0] <= now:
            _, _, body = heapq.heappop(queue)
            await js.publish(
                f"{subject_prefix}.{body['type']}",
                msgspec.json.encode(body),
                headers={"Nats-Msg-Id": body["event_id"]},
            )
            published += 1
        if orders is not None and started >= orders and not queue:
            break
        await wait_or_stop(stop, 0.05)
    log.info("simulator: %d orders started, %d events published", started, published)
    return published
