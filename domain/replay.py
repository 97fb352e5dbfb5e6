"""The backtest's simulation of one order: its recorded events replayed through a rule set
as the live detector judges them when it is caught up, with the issues kept in memory.

The live detector (``app/detection.py``) and this replay share every decision: the fold
(``domain/order.apply``), the rules (``domain/rules.evaluate`` with
``RuleSet.rules_for``) and the per-order decision (``domain/detection.decide``: the plan,
the customer contacts' escalations, the next timer). What is simulated here is only what
the detector's storage and the issue aggregate would do with it: the order is looked at
at each of its events' times (events of one instant together) and at each timer it sets,
and the actions change simulated issues as ``OrderIssue`` would (detect, escalate with the
evidence added to the old, reopen, resolve by the system). No agent acts on them.

Pure: no I/O, no clock; time stops at ``until`` (the caller's ``min(--until, now)``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, assert_never

from domain.detection import Action, IssueSnapshot, decide
from domain.order import OrderEvent, OrderState, apply, sort_key
from domain.rules import OrderRules, evaluate
from domain.ruleset import RuleSet

# A courier's location ping: the most frequent event by far (about 60 % of them).
PING = "courier_location"

# More looks than this at one order is a timer that does not move on (a bug): refused.
MAX_LOOKS_PER_ORDER = 100_000
_MOMENT = timedelta(microseconds=1)


class ReplayError(Exception):
    """An order whose replay cannot finish (a timer that never moves on)."""


@dataclass
class SimulatedIssue:
    """One (order, kind) issue as the replay raised it. ``episodes``: each stretch it was
    open, (opened, resolved or None while open)."""

    kind: str
    detected_at: datetime
    severity: str  # the highest it reached (severities only ever go up)
    evidence: dict[str, Any]
    status: str = "open"
    resolved_by: str | None = None
    episodes: list[tuple[datetime, datetime | None]] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.status != "resolved"

    def snapshot(self) -> IssueSnapshot:
        """What the plan sees of it, as the detector's ``_snapshot`` builds it."""
        counted = frozenset(self.evidence.get("customer_contacts", ()))
        return IssueSnapshot(self.status, self.severity, self.resolved_by, counted)


@dataclass(frozen=True)
class SimulatedContact:
    """A customer's contact with support, and whether an issue was open as it came (as
    the detector records it in ``support_contacts``)."""

    event_id: str
    at: datetime
    detected: bool
    first_detected_at: datetime | None


@dataclass(frozen=True)
class OrderReplay:
    order_id: str
    vertical: str
    country: str
    issues: dict[str, SimulatedIssue]
    contacts: list[SimulatedContact]
    events: int  # distinct events replayed
    looks: int  # times the order was evaluated (events' instants and timers)


def replay_order(
    events: Iterable[OrderEvent], rule_sets: Sequence[RuleSet], until: datetime
) -> list[OrderReplay]:
    """Replay one order's ``events`` (any order, repeats dropped) through each of
    ``rule_sets`` up to ``until`` (events after it are not replayed, no timer fires after
    it): one replay per rule set, in their order. The events are folded once for all; a
    rule set that judges the order exactly as an earlier one does (the same rules for its
    vertical and country, the same clear-for) has that one's replay."""
    unique = {e.event_id: e for e in events if e.occurred_at <= until}
    ordered = sorted(unique.values(), key=sort_key)
    if not ordered:
        raise ValueError("an order to replay needs at least one event up to `until`")
    first = ordered[0]
    sims: list[_Simulation] = []
    which: list[int] = []  # the simulation of each rule set
    for rules in rule_sets:
        order_rules = rules.rules_for(first.vertical, first.country)
        same = next(
            (
                n
                for n, sim in enumerate(sims)
                if sim.order_rules == order_rules and sim.clear_for == rules.clear_for
            ),
            None,
        )
        if same is None:
            sims.append(_Simulation(order_rules, rules.clear_for))
            same = len(sims) - 1
        which.append(same)
    state: OrderState | None = None
    for at, grouped in itertools.groupby(ordered, key=lambda e: e.occurred_at):
        group = list(grouped)
        if state is not None:
            for sim in sims:
                sim.timers_before(state, at)
        before = state
        for event in group:
            state = apply(state, event)
        assert state is not None
        pings = all(e.type == PING for e in group)
        for sim in sims:
            if not (pings and sim.idle_at(at, before)):
                sim.look(state, at, group)
    assert state is not None
    for sim in sims:
        sim.timers_before(state, until, inclusive=True)
    replays = [
        OrderReplay(
            first.order_id,
            first.vertical,
            first.country,
            sim.issues,
            sim.contacts,
            len(ordered),
            sim.looks,
        )
        for sim in sims
    ]
    return [replays[n] for n in which]


class _Simulation:
    """One order's simulated watch row and issues under one rule set."""

    def __init__(self, order_rules: OrderRules, clear_for: timedelta) -> None:
        self.order_rules = order_rules
        self.clear_for = clear_for
        self.issues: dict[str, SimulatedIssue] = {}
        self.contacts: list[SimulatedContact] = []
        self.clear_since: dict[str, datetime] = {}
        self.next_at: datetime | None = None
        self.looks = 0
        # No declared rule of the order waits on a ping (from or until): see idle_at.
        self._pings_inert = not any(
            PING in (getattr(rule, "start", None), *getattr(rule, "until", ()))
            for rule in order_rules.waiting.values()
        )

    def idle_at(self, at: datetime, before: OrderState | None) -> bool:
        """Whether a look at a ping at ``at`` (onto the state ``before`` it) would change
        nothing, so it can be left out (the replay's one shortcut; tests/unit/test_replay.py
        and tests/integration/test_backtest.py hold it to the live detector, which looks at
        every event):

        - the order has been looked at before, and its clocks a ping moves were running
          already: its news (``last_progress_at``: order_stale) and, once picked up, its
          courier's last move (``last_moved_at``: none yet after a hand-over to another
          courier, whose first ping starts courier_stationary's clock);
        - then a ping can only clear a condition (it moves the courier; it is news of the
          order) or leave it as it was; no built-in rule comes to hold by one, nor does a
          declared one that does not wait on pings;
        - every threshold a condition crosses between two events is a timer, and every
          timer due before ``at`` has had its look; one due at ``at`` needs this look;
        - with no issue open there is nothing to resolve, escalate or count a clear-since
          for, and a condition newly holding at ``at`` would have needed a timer or a
          non-ping event;
        - the timer the ping's look would set can only come later than the one standing
          (conditions cleared or pushed back): the standing one fires, looks at the same
          state, changes nothing and sets the later one."""
        return (
            self._pings_inert
            and self.looks > 0
            and before is not None
            and before.last_progress_at is not None
            and (before.picked_up_at is None or before.last_moved_at is not None)
            and (self.next_at is None or self.next_at > at)
            and not any(issue.open for issue in self.issues.values())
        )

    def timers_before(self, state: OrderState, at: datetime, *, inclusive: bool = False) -> None:
        """Fire the order's timers due before ``at`` (at or before, ``inclusive``): a timer
        due at an event's instant is that event's look."""
        while self.next_at is not None and (
            self.next_at < at or (inclusive and self.next_at == at)
        ):
            self.look(state, self.next_at, ())

    def look(self, state: OrderState, now: datetime, new: Iterable[OrderEvent]) -> None:
        """What ``Detector._visit`` does on one look, caught up (``backdate``)."""
        self.looks += 1
        if self.looks > MAX_LOOKS_PER_ORDER:
            raise ReplayError(f"order looked at over {MAX_LOOKS_PER_ORDER} times")
        checks = evaluate(state, now, self.order_rules)
        snapshots = {kind: issue.snapshot() for kind, issue in self.issues.items()}
        contacts = [e for e in new if e.type == "customer_contacted_support"]
        decided = decide(
            state,
            checks,
            snapshots,
            self.clear_since,
            now,
            self.clear_for,
            self.order_rules,
            backdate=True,
            contacts=[c.event_id for c in contacts],
        )
        if contacts:
            first = min((i.detected_at for i in self.issues.values() if i.open), default=None)
            self.contacts += [
                SimulatedContact(c.event_id, c.occurred_at, decided.detected, first)
                for c in contacts
            ]
        for action in decided.actions:
            self._act(action, now)
        self.clear_since = decided.clear_since
        next_at = decided.next_at
        if next_at is not None and next_at <= now:
            # Not seen (every timer lies ahead), but the live detector would fire one due
            # already at once, at a later clock: so does the replay.
            next_at = now + _MOMENT
        self.next_at = next_at

    def _act(self, action: Action, now: datetime) -> None:
        """The action on the simulated issue, as ``OrderIssue`` applies its command."""
        issue = self.issues.get(action.kind)
        match action.op:
            case "detect":
                assert issue is None
                assert action.severity is not None
                self.issues[action.kind] = SimulatedIssue(
                    action.kind, now, action.severity, dict(action.evidence), episodes=[(now, None)]
                )
            case "escalate":
                assert issue is not None
                assert action.severity is not None
                issue.severity = action.severity
                issue.evidence = {**issue.evidence, **action.evidence}
            case "reopen":
                assert issue is not None
                issue.status, issue.resolved_by = "open", None
                issue.episodes.append((now, None))
            case "resolve":
                assert issue is not None
                issue.status, issue.resolved_by = "resolved", "system"
                issue.episodes[-1] = (issue.episodes[-1][0], now)
            case unknown:
                assert_never(unknown)
