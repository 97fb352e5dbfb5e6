"""Detection rules: one pure function per issue kind, of (order state, now, thresholds).

Each rule answers a :class:`Check`: the severity the condition has reached now (None while
it does not hold), the evidence behind it, and when to look again (the next threshold the
condition would cross if nothing else happens: the detector's durable timer). Time is
the orders' own time (``occurred_at``), so a deadline already passed fires at once.

Thresholds are *tiers*: ascending (minutes, severity) pairs; a condition that has lasted
at least the first tier's minutes has that tier's severity, and so on.

Each rule is judged against what a healthy order of its vertical looks like (issue 11):
the parameters besides the tiers (a :class:`Tuning`: typical preparation time,
reassignment grace, clear margins) come from the rules file with their reasons. A
condition that wobbles around its first threshold (an ETA) *lingers* between the
threshold and the threshold less its margin: an open issue stays open, no new one is
raised (see ``domain/detection.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, Protocol

from domain.order import OrderState

Tiers = tuple[tuple[float, str], ...]


@dataclass(frozen=True, slots=True)
class Check:
    severity: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    recheck_at: datetime | None = None
    # Below the first threshold but within its clear margin: not held, not clear either.
    lingers: bool = False
    # The threshold of the tier that holds (minutes, or a count): recorded with the rule.
    tier: float | None = None

    @property
    def holds(self) -> bool:
        return self.severity is not None


CLEAR = Check()
LINGERS = Check(lingers=True)


@dataclass(frozen=True)
class Tuning:
    """What one order's rules are judged with besides their tiers (the rules file's
    ``[detector]``, ``[preparation_minutes]`` and ``[clear]`` tables)."""

    # Typical minutes from acceptance to ready, for a venue that sends no estimate.
    preparation_minutes: float = 15.0
    # A courier unassigned and replaced within this many minutes was never missing.
    reassignment_grace_minutes: float = 0.0
    # Per rule: how far below its first threshold a condition must drop to be clear.
    clear_margins: Mapping[str, float] = field(default_factory=dict)
    # A courier is due as soon as the order is accepted (nothing to prepare: parcels),
    # not at the venue's ready time.
    courier_due_at_acceptance: bool = False


DEFAULT_TUNING = Tuning()


def tiered(
    elapsed_minutes: float,
    since: datetime,
    tiers: Tiers,
    evidence: Callable[[], dict[str, Any]] = dict,
    margin: float = 0.0,
) -> Check:
    """The check of a condition that has lasted ``elapsed_minutes`` since ``since``;
    ``evidence`` is asked for only when the condition holds. Below the first threshold
    by less than ``margin`` it lingers."""
    if tiers and margin > 0 and tiers[0][0] - margin <= elapsed_minutes < tiers[0][0]:
        return Check(None, {}, since + timedelta(minutes=tiers[0][0]), lingers=True)
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
    return Check(severity, shown, recheck_at, tier=threshold)


def _minutes(now: datetime, since: datetime) -> float:
    return max(0.0, (now - since).total_seconds() / 60)


def _waiting(
    order: OrderState, now: datetime, since: datetime | None, tiers: Tiers, what: str
) -> Check:
    if since is None or order.finished:
        return CLEAR
    if now < since and tiers:  # the wait has not begun yet (a courier due later)
        return Check(recheck_at=since + timedelta(minutes=tiers[0][0]))
    elapsed = _minutes(now, since)
    if tiers and elapsed < tiers[0][0]:  # the usual case, without building the evidence
        return Check(recheck_at=since + timedelta(minutes=tiers[0][0]))
    return tiered(elapsed, since, tiers, lambda: {"waiting_for": what, "since": since.isoformat()})


def venue_acceptance_delayed(
    order: OrderState, now: datetime, tiers: Tiers, tuning: Tuning = DEFAULT_TUNING
) -> Check:
    if order.accepted_at is not None or order.rejected_at is not None:
        return CLEAR
    return _waiting(order, now, order.placed_at, tiers, "venue acceptance")


def venue_rejected(
    order: OrderState, now: datetime, tiers: Tiers, tuning: Tuning = DEFAULT_TUNING
) -> Check:
    if order.rejected_at is None or order.finished:
        return CLEAR
    check = tiered(_minutes(now, order.rejected_at), order.rejected_at, tiers)
    return Check(
        check.severity,
        {"rejected_at": order.rejected_at.isoformat(), "reason": order.rejection_reason},
        check.recheck_at,
        tier=check.tier,
    )


def no_courier_assigned(
    order: OrderState, now: datetime, tiers: Tiers, tuning: Tuning = DEFAULT_TUNING
) -> Check:
    """Minutes past the time a courier was due.

    Marketplaces dispatch couriers just in time, to arrive as the food gets ready (a
    courier assigned at acceptance would wait at the venue, unpaid): a venue order's
    courier is due at the venue's estimated ready time (``estimated_ready_at`` of
    ``venue_accepted``; without one, acceptance plus the vertical's typical preparation
    time). A parcel waits for no kitchen (its vertical's ``courier_due = "accepted"``):
    its courier is due as soon as the sender has accepted (within a minute of placement;
    a courier cannot be sent before, and that wait is venue_acceptance_delayed's). After an
    unassignment a replacement is due no sooner than the reassignment grace: swapping a
    courier who declined within minutes is routine dispatch, not a missing courier."""
    if order.courier_id is not None or order.picked_up_at is not None:
        return CLEAR
    due: datetime | None
    if order.accepted_at is None:
        return CLEAR  # the venue's own wait is venue_acceptance_delayed
    if tuning.courier_due_at_acceptance:
        due = order.accepted_at
    else:
        due = order.estimated_ready_at or order.accepted_at + timedelta(
            minutes=tuning.preparation_minutes
        )
    if due is not None and order.unassigned_at is not None:
        due = max(due, order.unassigned_at + timedelta(minutes=tuning.reassignment_grace_minutes))
    return _waiting(order, now, due, tiers, "a courier")


def courier_waiting_at_venue(
    order: OrderState, now: datetime, tiers: Tiers, tuning: Tuning = DEFAULT_TUNING
) -> Check:
    if order.picked_up_at is not None:
        return CLEAR
    return _waiting(order, now, order.courier_arrived_at, tiers, "pick-up at the venue")


def ready_not_picked_up(
    order: OrderState, now: datetime, tiers: Tiers, tuning: Tuning = DEFAULT_TUNING
) -> Check:
    if order.picked_up_at is not None:
        return CLEAR
    return _waiting(order, now, order.ready_at, tiers, "pick-up of a ready order")


def eta_slipped(
    order: OrderState, now: datetime, tiers: Tiers, tuning: Tuning = DEFAULT_TUNING
) -> Check:
    """Minutes the latest ETA lies past the promise (no timer: only a new ETA changes it).
    An ETA wobbles by a minute or two with every update: it clears only below the first
    threshold by the rule's clear margin."""
    if order.finished or order.estimated_delivery_at is None or order.promised_delivery_at is None:
        return CLEAR
    slip = (order.estimated_delivery_at - order.promised_delivery_at).total_seconds() / 60
    margin = tuning.clear_margins.get("eta_slipped", 0.0)
    if not tiers or slip < tiers[0][0] - margin:
        return CLEAR  # the usual case, well within the promise (no timer: see above)
    promised, estimated = order.promised_delivery_at, order.estimated_delivery_at
    check = tiered(
        max(0.0, slip),
        promised,
        tiers,
        lambda: {
            "promised_delivery_at": promised.isoformat(),
            "estimated_delivery_at": estimated.isoformat(),
        },
        margin,
    )
    return LINGERS if check.lingers else Check(check.severity, check.evidence, tier=check.tier)


def delivery_overdue(
    order: OrderState, now: datetime, tiers: Tiers, tuning: Tuning = DEFAULT_TUNING
) -> Check:
    if order.promised_delivery_at is None or now < order.promised_delivery_at:
        return Check(recheck_at=_first_deadline(order, tiers)) if not order.finished else CLEAR
    return _waiting(order, now, order.promised_delivery_at, tiers, "delivery past the promise")


def _first_deadline(order: OrderState, tiers: Tiers) -> datetime | None:
    if order.promised_delivery_at is None or not tiers:
        return None
    return order.promised_delivery_at + timedelta(minutes=tiers[0][0])


def courier_stationary(
    order: OrderState, now: datetime, tiers: Tiers, tuning: Tuning = DEFAULT_TUNING
) -> Check:
    if order.picked_up_at is None:
        return CLEAR
    return _waiting(order, now, order.last_moved_at, tiers, "the courier to move")


def courier_reassigned_repeatedly(
    order: OrderState, now: datetime, tiers: Tiers, tuning: Tuning = DEFAULT_TUNING
) -> Check:
    """Tiers count unassignments here, not minutes."""
    if order.finished:
        return CLEAR
    severity = tier = None
    for count, tier_severity in tiers:
        if order.unassignments >= count:
            severity, tier = tier_severity, count
    return Check(severity, {"unassignments": order.unassignments} if severity else {}, tier=tier)


def payment_failed(
    order: OrderState, now: datetime, tiers: Tiers, tuning: Tuning = DEFAULT_TUNING
) -> Check:
    if order.payment_failed_at is None or order.finished:
        return CLEAR
    check = tiered(_minutes(now, order.payment_failed_at), order.payment_failed_at, tiers)
    return Check(
        check.severity,
        {"failed_at": order.payment_failed_at.isoformat()},
        check.recheck_at,
        tier=check.tier,
    )


def order_stale(
    order: OrderState, now: datetime, tiers: Tiers, tuning: Tuning = DEFAULT_TUNING
) -> Check:
    """Minutes without news of the order. A customer asking support about it is not
    news of the order (the question is often *because* there is none)."""
    return _waiting(order, now, order.last_progress_at, tiers, "any news of the order")


Rule = Callable[[OrderState, datetime, Tiers, Tuning], Check]

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


class Declared(Protocol):
    """A rule declared in the rules file (``domain/ruleset.WaitingRule``)."""

    def check(self, order: OrderState, now: datetime, tiers: Tiers) -> Check: ...


@dataclass(frozen=True)
class OrderRules:
    """Everything the rules of one order are judged with: each kind's tiers (merged for
    its vertical and country; only the kinds that apply to it), the tuning, per kind the
    minutes of order time a condition must stay clear before its issue resolves (kinds
    not named: the default), the declared rules among the kinds, and the kinds whose
    condition cannot come back once cleared (their issues resolve at once)."""

    tiers: Mapping[str, Tiers]
    tuning: Tuning = DEFAULT_TUNING
    clear_for: Mapping[str, timedelta] = field(default_factory=dict)
    waiting: Mapping[str, Declared] = field(default_factory=dict)
    settled: frozenset[str] = frozenset()

    @cached_property
    def judges(self) -> tuple[tuple[str, Rule, Tiers], ...]:
        """Each enabled rule (a kind without tiers is disabled) with its tiers, resolved
        once: :func:`evaluate` runs for every look at every order."""
        return tuple(
            (kind, RULES.get(kind) or _declared(self.waiting[kind]), tiers)
            for kind, tiers in self.tiers.items()
            if tiers
        )


def _declared(rule: Declared) -> Rule:
    def judge(order: OrderState, now: datetime, tiers: Tiers, tuning: Tuning) -> Check:
        return rule.check(order, now, tiers)

    return judge


def evaluate(
    order: OrderState, now: datetime, thresholds: Mapping[str, Tiers] | OrderRules
) -> dict[str, Check]:
    """Every enabled rule's check of one order (a kind without tiers is disabled)."""
    if not isinstance(thresholds, OrderRules):
        thresholds = OrderRules(thresholds)
    tuning = thresholds.tuning
    return {kind: rule(order, now, tiers, tuning) for kind, rule, tiers in thresholds.judges}


def next_check(checks: Mapping[str, Check]) -> datetime | None:
    """The earliest time any rule wants to look again: the order's durable timer."""
    times = [c.recheck_at for c in checks.values() if c.recheck_at is not None]
    return min(times) if times else None
