"""``inbox simulate``: realistic order lifecycles, some going wrong, published to NATS.

Each order is a timeline of events in minutes after it was placed, drawn from a seeded
random generator: venues accept in about a minute, kitchens take 10-20 minutes
(restaurants) or pickers 15-25 (grocery), couriers are assigned within a few minutes and
deliver in 8-20, with location pings on the way. Faults are injected at published-ish
rates: slow venues, rejections, no courier, couriers stuck at the venue or stationary,
ETA slips, cancellations, payment failures, and customers who contact support after a
problem (the detection KPI needs them).

Time: events are stamped and published by a :class:`ScaledClock`. At speed 1 that is the
wall clock; ``inbox up --speed 30`` runs the detector on the same scaled clock, so that a
40-minute order plays out in 80 seconds and the demo is lively.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from nats.aio.client import Client as NATS

from adapters.leadership import wait_or_stop

log = logging.getLogger(__name__)

COUNTRIES = {
    "FI": (["Helsinki", "Espoo", "Tampere"], "EUR"),
    "SE": (["Stockholm", "Gothenburg"], "SEK"),
    "DE": (["Berlin", "Munich", "Hamburg"], "EUR"),
    "PL": (["Warsaw", "Krakow"], "PLN"),
    "GR": (["Athens"], "EUR"),
}
VERTICALS = [("restaurant", 0.6), ("grocery", 0.2), ("retail", 0.1), ("parcel", 0.1)]
PREPARATION = {"restaurant": (10, 20), "grocery": (15, 25), "retail": (10, 30), "parcel": (0, 5)}
FAULTS = {  # probability per order
    "slow_venue": 0.06,
    "venue_rejects": 0.02,
    "no_courier": 0.05,
    "courier_stuck": 0.05,
    "courier_stationary": 0.03,
    "eta_slip": 0.08,
    "cancelled": 0.03,
    "payment_failed": 0.02,
}
CONTACT_AFTER_PROBLEM = 0.6
CONTACT_WITHOUT_PROBLEM = 0.01


class ScaledClock:
    """Wall-clock time, optionally running ``speed`` times faster from ``anchor``."""

    def __init__(self, speed: float = 1.0, anchor: datetime | None = None) -> None:
        self.speed = speed
        self.anchor = anchor or datetime.now(UTC)

    def now(self) -> datetime:
        real = datetime.now(UTC)
        return self.anchor + (real - self.anchor) * self.speed


@dataclass(frozen=True)
class Step:
    minute: float
    type: str
    data: dict[str, Any]


def lifecycle(rng: random.Random, order_id: str) -> tuple[str, str, str, list[Step]]:  # noqa: PLR0915 (one story, told in order)
    """(vertical, country, city, steps) of one order, faults included."""
    vertical = rng.choices([v for v, _ in VERTICALS], [w for _, w in VERTICALS])[0]
    country = rng.choice(sorted(COUNTRIES))
    cities, currency = COUNTRIES[country]
    city = rng.choice(cities)
    fault = {name for name, p in FAULTS.items() if rng.random() < p}
    promise = rng.uniform(30, 45) if vertical != "parcel" else rng.uniform(120, 240)
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
    problem_at: float | None = None
    if "payment_failed" in fault:
        steps.append(Step(0.2, "payment_failed", {"reason": "card declined"}))
        problem_at = 0.2
    accept = rng.uniform(0.3, 1.5) + (rng.uniform(4, 10) if "slow_venue" in fault else 0)
    if "slow_venue" in fault:
        problem_at = 3
    if "venue_rejects" in fault:
        steps.append(Step(accept, "venue_rejected", {"reason": "too busy"}))
        steps.append(
            Step(
                accept + rng.uniform(1, 5),
                "order_cancelled",
                {"reason": "venue rejected", "by": "system"},
            )
        )
        return vertical, country, city, _with_contact(rng, steps, accept)
    steps.append(Step(accept, "venue_accepted", {}))
    ready = accept + rng.uniform(*PREPARATION[vertical])
    assign = accept + rng.uniform(1, 4) + (rng.uniform(15, 35) if "no_courier" in fault else 0)
    if "no_courier" in fault:
        problem_at = problem_at or accept + 10
    courier = f"courier-{rng.randrange(2000)}"
    steps.append(Step(assign, "courier_assigned", {"courier_id": courier}))
    arrive = max(assign + rng.uniform(3, 8), ready - rng.uniform(0, 3))
    steps.append(Step(arrive, "courier_arrived_at_venue", {"courier_id": courier}))
    steps.append(Step(ready, "order_ready", {}))
    pickup = max(ready, arrive) + rng.uniform(0.5, 3)
    if "courier_stuck" in fault:
        pickup += rng.uniform(15, 25)
        problem_at = problem_at or arrive + 10
    if "cancelled" in fault:
        cancel = rng.uniform(2, pickup)
        steps.append(Step(cancel, "order_cancelled", {"reason": "changed mind", "by": "customer"}))
        return vertical, country, city, [s for s in steps if s.minute <= cancel]
    steps.append(Step(pickup, "order_picked_up", {"courier_id": courier}))
    ride = rng.uniform(8, 20)
    if "eta_slip" in fault:
        slip = rng.uniform(12, 40)
        steps.append(Step(pickup + 2, "eta_updated", {"estimated_delivery_at": promise + slip}))
        ride = max(ride, promise + slip - pickup)
        problem_at = problem_at or pickup + 2
    else:
        steps.append(Step(pickup + 1, "eta_updated", {"estimated_delivery_at": pickup + ride}))
    lat, lon = rng.uniform(40, 61), rng.uniform(-3, 28)
    stationary = (
        (pickup + 3, pickup + 3 + rng.uniform(10, 15)) if "courier_stationary" in fault else None
    )
    if stationary:
        problem_at = problem_at or stationary[0] + 8
        ride = max(ride, stationary[1] - pickup + 3)
    minute = pickup + 1
    while minute < pickup + ride:
        if not (stationary and stationary[0] <= minute <= stationary[1]):
            lat += rng.uniform(0.002, 0.006)
        steps.append(
            Step(minute, "courier_location", {"courier_id": courier, "lat": lat, "lon": lon})
        )
        minute += 1
    steps.append(Step(pickup + ride, "order_delivered", {}))
    return vertical, country, city, _with_contact(rng, steps, problem_at)


def _with_contact(rng: random.Random, steps: list[Step], problem_at: float | None) -> list[Step]:
    if problem_at is not None and rng.random() < CONTACT_AFTER_PROBLEM:
        at = problem_at + rng.uniform(2, 10)
    elif problem_at is None and rng.random() < CONTACT_WITHOUT_PROBLEM:
        at = rng.uniform(1, 20)
    else:
        return steps
    last = max(s.minute for s in steps)
    if at < last:
        steps.append(
            Step(at, "customer_contacted_support", {"channel": rng.choice(["chat", "phone"])})
        )
    return steps


def _absolute(data: dict[str, Any], placed: datetime) -> dict[str, Any]:
    out = dict(data)
    for key in ("promised_delivery_at", "estimated_delivery_at"):
        if key in out:
            out[key] = (placed + timedelta(minutes=out[key])).isoformat()
    return out


def order_events(
    rng: random.Random, order_id: str, placed: datetime
) -> list[tuple[datetime, dict[str, Any]]]:
    """One order's lifecycle as (occurred_at, CONTRACT §2 event body), placed at ``placed``."""
    vertical, country, city, steps = lifecycle(rng, order_id)
    events = []
    for step in steps:
        at = placed + timedelta(minutes=step.minute)
        body = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "type": step.type,
            "order_id": order_id,
            "occurred_at": at.isoformat(),
            "vertical": vertical,
            "country": country,
            "city": city,
            "data": _absolute(step.data, placed),
        }
        events.append((at, body))
    return events


async def simulate(
    nats: NATS,
    *,
    subject_prefix: str,
    orders: int | None,
    rate: float,
    seed: int,
    clock: ScaledClock,
    stop: asyncio.Event,
) -> int:
    """Start ``rate`` orders per (scaled) minute until ``orders`` were started (None: for
    ever); publish each event when its time comes. Returns the events published."""
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
            for at, body in order_events(rng, order_id, next_order):
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
