"""Detection rules: one pure function per issue kind, of (order state, now, thresholds).

Each rule answers a :class:`Check`: the severity the condition has reached now (None while
it does not hold), the evidence behind it, and when to look again (the next threshold the
condition would cross if nothing else happens: the detector's durable timer). Time is
the orders' own time (``occurred_at``), so a deadline already passed fires at once.

Thresholds are *tiers*: ascending (minutes, severity) pairs; a condition that has lasted
at least the first tier's minutes has that tier's severity, and so on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from domain.order import OrderState

Tiers = tuple[tuple[float, str], ...]


@dataclass(frozen=True)
class Check:
    severity: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    recheck_at: datetime | None = None

    @property
    def holds(self) -> bool:
        return self.severity is not None


CLEAR = Check()


def tiered(
    elapsed_minutes: float,
    since: datetime,
    tiers: Tiers,
    evidence: Callable[[], dict[str, Any]] = dict,
) -> Check:
    """The check of a condition that has lasted ``elapsed_minutes`` since ``since``;
    ``evidence`` is asked for only when the condition holds."""
    severity = threshold = recheck_at = None
    for minutes, tier_severity in tiers:
        if elapsed_minutes >= minutes:
            severity, threshold = tier_severity, minutes
        else:
            recheck_at = since + timedelta(minutes=minutes)
            break
    if severity is None:
        return Check(None, {}, recheck_at)
    shown = {**evidence(), "minutes": round(elapsed_minutes, 1), "threshold_minutes": threshold}
    return Check(severity, shown, recheck_at)


def _minutes(now: datetime, since: datetime) -> float:
    return max(0.0, (now - since).total_seconds() / 60)


def _waiting(
    order: OrderState, now: datetime, since: datetime | None, tiers: Tiers, what: str
) -> Check:
    if since is None or order.finished:
        return CLEAR
    elapsed = _minutes(now, since)
    if tiers and elapsed < tiers[0][0]:  # the usual case, without building the evidence
        return Check(recheck_at=since + timedelta(minutes=tiers[0][0]))
    return tiered(elapsed, since, tiers, lambda: {"waiting_for": what, "since": since.isoformat()})


def venue_acceptance_delayed(order: OrderState, now: datetime, tiers: Tiers) -> Check:
    if order.accepted_at is not None or order.rejected_at is not None:
        return CLEAR
    return _waiting(order, now, order.placed_at, tiers, "venue acceptance")


def venue_rejected(order: OrderState, now: datetime, tiers: Tiers) -> Check:
    if order.rejected_at is None or order.finished:
        return CLEAR
    check = tiered(_minutes(now, order.rejected_at), order.rejected_at, tiers)
    return Check(
        check.severity,
        {"rejected_at": order.rejected_at.isoformat(), "reason": order.rejection_reason},
        check.recheck_at,
    )


def no_courier_assigned(order: OrderState, now: datetime, tiers: Tiers) -> Check:
    if order.courier_id is not None or order.picked_up_at is not None:
        return CLEAR
    since = order.accepted_at or (order.placed_at if order.vertical == "parcel" else None)
    return _waiting(order, now, since, tiers, "a courier")


def courier_waiting_at_venue(order: OrderState, now: datetime, tiers: Tiers) -> Check:
    if order.picked_up_at is not None:
        return CLEAR
    return _waiting(order, now, order.courier_arrived_at, tiers, "pick-up at the venue")


def ready_not_picked_up(order: OrderState, now: datetime, tiers: Tiers) -> Check:
    if order.picked_up_at is not None:
        return CLEAR
    return _waiting(order, now, order.ready_at, tiers, "pick-up of a ready order")


def eta_slipped(order: OrderState, now: datetime, tiers: Tiers) -> Check:
    """Minutes the latest ETA lies past the promise (no timer: only a new ETA changes it)."""
    if order.finished or order.estimated_delivery_at is None or order.promised_delivery_at is None:
        return CLEAR
    slip = (order.estimated_delivery_at - order.promised_delivery_at).total_seconds() / 60
    promised, estimated = order.promised_delivery_at, order.estimated_delivery_at
    check = tiered(
        max(0.0, slip),
        promised,
        tiers,
        lambda: {
            "promised_delivery_at": promised.isoformat(),
            "estimated_delivery_at": estimated.isoformat(),
        },
    )
    return Check(check.severity, check.evidence, None)


def delivery_overdue(order: OrderState, now: datetime, tiers: Tiers) -> Check:
    if order.promised_delivery_at is None or now < order.promised_delivery_at:
        return Check(recheck_at=_first_deadline(order, tiers)) if not order.finished else CLEAR
    return _waiting(order, now, order.promised_delivery_at, tiers, "delivery past the promise")


def _first_deadline(order: OrderState, tiers: Tiers) -> datetime | None:
    if order.promised_delivery_at is None or not tiers:
        return None
    return order.promised_delivery_at + timedelta(minutes=tiers[0][0])


def courier_stationary(order: OrderState, now: datetime, tiers: Tiers) -> Check:
    if order.picked_up_at is None:
        return CLEAR
    return _waiting(order, now, order.last_moved_at, tiers, "the courier to move")


def courier_reassigned_repeatedly(order: OrderState, now: datetime, tiers: Tiers) -> Check:
    """Tiers count unassignments here, not minutes."""
    if order.finished:
        return CLEAR
    severity = None
    for count, tier_severity in tiers:
        if order.unassignments >= count:
            severity = tier_severity
    return Check(severity, {"unassignments": order.unassignments} if severity else {})


def payment_failed(order: OrderState, now: datetime, tiers: Tiers) -> Check:
    if order.payment_failed_at is None or order.finished:
        return CLEAR
    check = tiered(_minutes(now, order.payment_failed_at), order.payment_failed_at, tiers)
    return Check(
        check.severity, {"failed_at": order.payment_failed_at.isoformat()}, check.recheck_at
    )


def order_stale(order: OrderState, now: datetime, tiers: Tiers) -> Check:
    return _waiting(order, now, order.last_event_at, tiers, "any news of the order")


Rule = Callable[[OrderState, datetime, Tiers], Check]

RULES: Mapping[str, Rule] = {
    "venue_acceptance_delayed": venue_acceptance_delayed,
    "venue_rejected": venue_rejected,
    "no_courier_assigned": no_courier_assigned,
    "courier_waiting_at_venue": courier_waiting_at_venue,
    "ready_not_picked_up": ready_not_picked_up,
    "eta_slipped": eta_slipped,
    "delivery_overdue": delivery_overdue,
    "courier_stationary": courier_stationary,
    "courier_reassigned_repeatedly": courier_reassigned_repeatedly,
    "payment_failed": payment_failed,
    "order_stale": order_stale,
}


def evaluate(order: OrderState, now: datetime, thresholds: Mapping[str, Tiers]) -> dict[str, Check]:
    """Every enabled rule's check of one order (a kind without tiers is disabled)."""
    return {kind: RULES[kind](order, now, tiers) for kind, tiers in thresholds.items() if tiers}


def next_check(checks: Mapping[str, Check]) -> datetime | None:
    """The earliest time any rule wants to look again: the order's durable timer."""
    times = [c.recheck_at for c in checks.values() if c.recheck_at is not None]
    return min(times) if times else None
