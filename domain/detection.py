"""From rule checks to issue actions: what the detector should do to an order's issues.

Pure: given what the rules see now, the issues as they stand and since when each
condition has been clear, it says which issues to raise, escalate, reopen or resolve.
A condition that *lingers* (below its threshold, within the clear margin) keeps an open
issue open without counting as clear; a cleared one resolves its issue once it has stayed
clear for the kind's clear-for window, in order time (no flapping).
Re-running it on the same inputs asks for nothing new, so redelivered events and re-fired
timers have no second effect.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from domain.order import OrderState
from domain.rules import CLEAR, Check, OrderRules, next_check
from domain.values import SEVERITIES, SEVERITY_RANK

# Conditions that, once cleared, cannot come back for the order (the venue accepted, the
# order was picked up): their issues resolve at once, with no clear-for moment (CONTRACT
# §2: "a late venue_accepted clears that issue when it comes").
SETTLED_WHEN_CLEAR = frozenset(
    {"venue_acceptance_delayed", "courier_waiting_at_venue", "ready_not_picked_up"}
)

# What a planned action does to its issue: a closed set, matched exhaustively by the
# detector (app/detection.py), so an op it does not know is a type error.
ActionOp = Literal["detect", "escalate", "reopen", "resolve"]


@dataclass(frozen=True)
class IssueSnapshot:
    status: str
    severity: str
    resolved_by: str | None = None
    contacts: frozenset[str] = frozenset()  # customer contacts (event ids) it has counted


@dataclass(frozen=True)
class Action:
    kind: str
    op: ActionOp
    severity: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    # The threshold of the tier that fired (detect, escalate, reopen): its rule record.
    tier: float | None = None


@dataclass(frozen=True)
class Plan:
    actions: list[Action]
    clear_since: dict[str, datetime]  # kind -> first seen clear (for open issues only)
    recheck_at: datetime | None  # the earliest clear-for deadline still to come


def plan(
    order: OrderState,
    checks: Mapping[str, Check],
    issues: Mapping[str, IssueSnapshot],
    clear_since: Mapping[str, datetime],
    now: datetime,
    clear_for: timedelta,
    clear_for_kind: Mapping[str, timedelta] | None = None,
    *,
    backdate: bool = True,
    settled: frozenset[str] = frozenset(),
) -> Plan:
    """The actions for one order; ``clear_for`` is how long a condition must stay clear
    before its issue resolves, unless ``clear_for_kind`` names the kind; ``settled``
    kinds (declared waiting rules: their end event cannot be undone) resolve at once, as
    ``SETTLED_WHEN_CLEAR`` do.

    ``backdate``: the detector has every event up to now (it is not behind on the
    stream), so a condition found clear has been clear since the order's facts became
    what they are (:func:`_facts_since`). Behind, more of the order's events may be
    on their way (one that makes the condition hold again would flap the issue): the
    moment counts from now, and the order is looked at again soon."""
    if not issues and not any(check.severity is not None for check in checks.values()):
        # Nothing holds and nothing is open (most looks at an order): nothing to do.
        return Plan([], {}, None)
    actions: list[Action] = []
    still_clear: dict[str, datetime] = {}
    recheck: list[datetime] = []
    for kind in sorted(set(checks) | set(issues)):
        check = checks.get(kind, CLEAR)
        issue = issues.get(kind)
        if check.holds and not order.finished:
            assert check.severity is not None
            if issue is None:
                actions.append(
                    Action(kind, "detect", check.severity, check.evidence, tier=check.tier)
                )
                continue
            if issue.status == "resolved":
                if issue.resolved_by != "system":
                    # An agent closed it while the condition held (false positive, handled
                    # elsewhere): their call stands; reopening would undo it on every ping.
                    continue
                actions.append(
                    Action(
                        kind,
                        "reopen",
                        check.severity,
                        reason="the condition recurred",
                        tier=check.tier,
                    )
                )
            if SEVERITY_RANK[check.severity] > SEVERITY_RANK[issue.severity]:
                actions.append(
                    Action(kind, "escalate", check.severity, check.evidence, tier=check.tier)
                )
        elif issue is not None and issue.status != "resolved":
            if check.lingers and not order.finished:
                continue  # not clear: the clear-for moment starts again when it is
            if order.finished:
                why = "the order was delivered" if order.delivered_at else "the order was cancelled"
                actions.append(Action(kind, "resolve", reason=why))
                continue
            facts = _facts_since(order, now)
            since = _clear_since(clear_since.get(kind), facts, now, backdate=backdate)
            window = clear_for_kind.get(kind, clear_for) if clear_for_kind else clear_for
            if kind in SETTLED_WHEN_CLEAR or kind in settled or now - since >= window:
                actions.append(Action(kind, "resolve", reason="the condition cleared"))
            else:
                still_clear[kind] = since
                # Not backdated (behind): once caught up it may resolve at once.
                soon = now + BEHIND_RECHECK if facts < since else since + window
                recheck.append(min(since + window, soon))
    return Plan(actions, still_clear, min(recheck) if recheck else None)


# How soon an order whose clear condition could not be backdated is looked at again.
BEHIND_RECHECK = timedelta(seconds=5)


def _clear_since(
    stored: datetime | None, facts: datetime, now: datetime, *, backdate: bool
) -> datetime:
    """Since when a condition found clear now counts as clear: since the facts when the
    detector is caught up (or since it was first seen clear, if earlier), else since it
    was first seen clear (now, the first time)."""
    if backdate:
        return min(stored, facts) if stored else facts
    return stored or now


def _facts_since(order: OrderState, now: datetime) -> datetime:
    """Since when, in order time, an order's condition found clear now has been clear.

    Every rule's condition can only come to hold as time passes while the facts stay the
    same (it waits for something), so one clear now was clear since the facts became what
    they are: the order's latest event. Arriving late, or in a burst after a backlog,
    such facts clear the issue at once instead of a clear-for moment after arrival;
    facts that just happened wait out the moment as before, so a wobble does not flap.
    """
    last = order.last_event_at
    return now if last is None or last > now else last


def contact_escalations(
    issues: Mapping[str, IssueSnapshot], contacts: Sequence[str], planned: Sequence[Action] = ()
) -> list[Action]:
    """Customers contacted support (``contacts``: their event ids): every open issue of
    the order goes up one level per contact it has not counted yet, from the severity the
    ``planned`` actions leave it at. Each issue records the contacts it counted
    (``customer_contacts`` in its evidence), so a contact seen again (redelivered after a
    crash) raises nothing twice. No open issue means the inbox missed it (the caller
    records a missed detection)."""
    raised = {a.kind: a.severity for a in planned if a.op == "escalate" and a.severity}
    closing = {a.kind for a in planned if a.op == "resolve"}
    actions = []
    for kind, issue in sorted(issues.items()):
        if issue.status == "resolved" or kind in closing:
            continue
        new = [c for c in contacts if c not in issue.contacts]
        rank = SEVERITY_RANK[raised.get(kind, issue.severity)]
        target = min(rank + len(new), len(SEVERITIES) - 1)
        if new and target > rank:
            counted = sorted(issue.contacts.union(new))
            evidence = {"customer_contacted_support": True, "customer_contacts": counted}
            actions.append(Action(kind, "escalate", SEVERITIES[target], evidence))
    return actions


@dataclass(frozen=True)
class Decision:
    """What the detector does to one order's issues on one look at it (:func:`decide`)."""

    actions: list[Action]
    clear_since: dict[str, datetime]
    next_at: datetime | None  # the order's next timer
    # The contact ids the escalations counted (passed again if their commands fail).
    contacts: list[str]
    # An issue of the order was open when the contacts came (else the inbox missed them).
    detected: bool


def decide(
    order: OrderState,
    checks: Mapping[str, Check],
    issues: Mapping[str, IssueSnapshot],
    clear_since: Mapping[str, datetime],
    now: datetime,
    clear_for: timedelta,
    rules: OrderRules,
    *,
    backdate: bool,
    pending: Sequence[str] = (),
    contacts: Sequence[str] = (),
) -> Decision:
    """The one per-order decision, shared by the live detector (``app/detection.py``) and
    the backtest (``domain/replay.py``), so that the two cannot disagree: :func:`plan` on
    the rules' ``checks`` of ``order`` at ``now``, the escalations of the customer
    ``contacts`` that came (and the ``pending`` ones not yet landed), and the next timer.
    A contact counts only when an issue of the order is open as it comes."""
    decided = plan(
        order,
        checks,
        issues,
        clear_since,
        now,
        clear_for,
        rules.clear_for,
        backdate=backdate,
        settled=rules.settled,
    )
    actions = list(decided.actions)
    detected = any(issue.status != "resolved" for issue in issues.values())
    counted = [*pending, *(contacts if detected else ())]
    if counted:
        actions += contact_escalations(issues, counted, decided.actions)
    times = [t for t in (next_check(checks), decided.recheck_at) if t is not None]
    return Decision(actions, decided.clear_since, min(times) if times else None, counted, detected)
