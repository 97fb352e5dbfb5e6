"""``OrderIssue``: one suspected problem of one kind with one order, event-sourced.

Each public command checks the state machine, then calls a private method decorated with
``@event``; only the private method runs again when the aggregate is replayed, so checks
never re-run against history. Every event carries ``at`` (when it happened, given by the
caller), ``by`` (who did it: an agent id or ``"system"``) and ``by_name`` (that agent's
display name, the token's ``name`` claim; None for the system, for a token without one,
and in every event stored before it was recorded). The events the detector causes
(Detected, Escalated, Resolved, Reopened) also carry ``rule``: which rule fired, at which
tier, under which version of the rules file, and why (:func:`fired_rule`); None for an
agent's, and for every event stored before it was recorded. Detected carries the SLA
minutes of the order's vertical (``sla_minutes``) that ``due_at`` counts from.

Statuses (CONTRACT §3)::

    open ──acknowledge──▶ acknowledged ──resolve──▶ resolved ──reopen──▶ open
      │                        │                        ▲
      └──snooze──▶ snoozed ◀───┘      (wake: back to the status before snoozing)
                     └──────────────resolve─────────────┘
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidValue, TransitionNotAllowed
from domain.values import (
    ACTIONS,
    MAX_TEXT_LENGTH,
    RESOLUTIONS,
    SEVERITIES,
    SEVERITY_RANK,
    SYSTEM_ACTOR,
    check_country,
    check_minutes,
    check_name,
    check_object,
    check_text,
    check_time,
)

# The longest agent id or agent name an event records (a token's sub and name claims).
MAX_ACTOR_LENGTH = 200

ISSUE_NAMESPACE = uuid5(NAMESPACE_URL, "https://support-inbox.invalid/order-issue")

# Priority is a number where higher is more urgent; severity decides it.
_PRIORITY_BY_SEVERITY = {"low": 100, "medium": 200, "high": 300, "critical": 400}
# How soon an agent should act on an issue of each severity (its SLA), from detection:
# for an issue whose Detected event names no SLA of its own (raised by hand, or stored
# before the rules file's per-vertical SLA minutes were recorded).
SLA_BY_SEVERITY = {
    "low": timedelta(minutes=60),
    "medium": timedelta(minutes=30),
    "high": timedelta(minutes=15),
    "critical": timedelta(minutes=5),
}
# The longest rules version (a content hash) and reason a rule record holds.
MAX_RULE_VERSION_LENGTH = 200


def priority_of(severity: str) -> int:
    return _PRIORITY_BY_SEVERITY[severity]


def due_at(
    detected_at: datetime, severity: str, sla_minutes: Mapping[str, float] | None = None
) -> datetime:
    """When an issue of this severity, detected then, should have been acted on: after its
    vertical's SLA minutes (recorded on Detected), or the fixed table without them."""
    if sla_minutes is None:
        return detected_at + SLA_BY_SEVERITY[severity]
    return detected_at + timedelta(minutes=sla_minutes[severity])


def fired_rule(
    version: str,
    name: str,
    reason: str,
    *,
    threshold: float | None = None,
    severity: str | None = None,
) -> dict[str, Any]:
    """What an event the detector causes records of the rule behind it: the rules
    version (the file's content hash), the rule's name (the issue's kind), the tier that
    fired (its threshold and severity; None when no tier did: a resolve, a customer's
    contact) and why."""
    tier = None if threshold is None else {"threshold": float(threshold), "severity": severity}
    return {"version": version, "name": name, "tier": tier, "reason": reason}


def check_rule(rule: Any) -> None:
    """A rule record as :func:`fired_rule` makes it, or None; refused naming the key."""
    if rule is None:
        return
    if not isinstance(rule, dict) or set(rule) != {"version", "name", "tier", "reason"}:
        raise InvalidValue("rule", "must hold exactly version, name, tier and reason")
    version = rule["version"]
    if not isinstance(version, str) or not 0 < len(version) <= MAX_RULE_VERSION_LENGTH:
        raise InvalidValue("rule.version", f"must be 1 to {MAX_RULE_VERSION_LENGTH} characters")
    check_text("rule.version", version)
    if not isinstance(rule["name"], str):
        raise InvalidValue("rule.name", "must be a rule name")
    check_name("rule.name", rule["name"])
    if not isinstance(rule["reason"], str):
        raise InvalidValue("rule.reason", "must be text")
    _check_text("rule.reason", rule["reason"])
    tier = rule["tier"]
    if tier is None:
        return
    if not isinstance(tier, dict) or set(tier) != {"threshold", "severity"}:
        raise InvalidValue("rule.tier", "must hold exactly threshold and severity, or be null")
    threshold = tier["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise InvalidValue("rule.tier.threshold", "must be a number")
    if not math.isfinite(threshold):
        raise InvalidValue("rule.tier.threshold", "must be a finite number")
    if tier["severity"] not in SEVERITY_RANK:
        raise InvalidValue("rule.tier.severity", f"must be one of {', '.join(SEVERITIES)}")


def check_sla_minutes(sla_minutes: Any) -> None:
    """Minutes for every severity, each a positive finite number, or None (the fixed
    table)."""
    if sla_minutes is None:
        return
    if not isinstance(sla_minutes, dict) or set(sla_minutes) != set(SEVERITIES):
        raise InvalidValue("sla_minutes", f"must name exactly {', '.join(SEVERITIES)}")
    for severity, minutes in sla_minutes.items():
        check_minutes(f"sla_minutes.{severity}", minutes, positive=True)


@lru_cache(maxsize=1 << 16)
def issue_id_for(order_id: str, kind: str) -> UUID:
    """The one id of the (order, kind) issue, the same on every replica."""
    return uuid5(ISSUE_NAMESPACE, f"{order_id}\x1f{kind}")


def _check_text(field: str, value: str, *, required: bool = True) -> None:
    if required and not value.strip():
        raise InvalidValue(field, "must not be empty")
    if len(value) > MAX_TEXT_LENGTH:
        raise InvalidValue(field, f"must be at most {MAX_TEXT_LENGTH} characters")
    check_text(field, value)


def _check_actor(by: str, by_name: str | None) -> None:
    _check_text("agent_id", by)
    if len(by) > MAX_ACTOR_LENGTH:
        raise InvalidValue("agent_id", f"must be at most {MAX_ACTOR_LENGTH} characters")
    if by_name is not None:
        _check_text("by_name", by_name)
        if len(by_name) > MAX_ACTOR_LENGTH:
            raise InvalidValue("by_name", f"must be at most {MAX_ACTOR_LENGTH} characters")


def _check_severity(severity: str) -> None:
    if severity not in SEVERITY_RANK:
        raise InvalidValue("severity", f"must be one of {', '.join(SEVERITIES)}")


class OrderIssue(Aggregate):
    """The aggregate. Its id is derived from (order id, kind): see :func:`issue_id_for`."""

    @staticmethod
    def create_id(order_id: str, kind: str, **_: Any) -> UUID:
        return issue_id_for(order_id, kind)

    # ---- creation -------------------------------------------------------------------

    @classmethod
    def detect(
        cls,
        *,
        order_id: str,
        kind: str,
        severity: str,
        vertical: str,
        country: str,
        city: str,
        evidence: dict[str, Any],
        at: datetime,
        by: str = SYSTEM_ACTOR,
        by_name: str | None = None,
        rule: dict[str, Any] | None = None,
        sla_minutes: dict[str, float] | None = None,
    ) -> OrderIssue:
        """Raise a new issue (the detector, or an agent reporting one by hand: no
        ``rule``, no ``sla_minutes``)."""
        _check_text("order_id", order_id)
        # Which kinds and verticals there are, the rules file says (the application
        # checks it): the aggregate holds any well-formed name, so a history stays
        # readable after a kind or a vertical leaves the file.
        check_name("kind", kind)
        _check_severity(severity)
        check_name("vertical", vertical)
        check_country("country", country)
        _check_text("city", city, required=False)
        check_object("evidence", evidence)
        _check_actor(by, by_name)
        check_rule(rule)
        check_sla_minutes(sla_minutes)
        return cls(
            order_id=order_id,
            kind=kind,
            severity=severity,
            vertical=vertical,
            country=country,
            city=city,
            evidence=evidence,
            at=at,
            by=by,
            by_name=by_name,
            rule=rule,
            sla_minutes=None if sla_minutes is None else dict(sla_minutes),
        )

    # ``rule=None``, ``sla_minutes=None``: what a Detected event stored before they were
    # recorded replays with (see ``by_name`` below).
    @event("Detected")
    def __init__(
        self,
        *,
        order_id: str,
        kind: str,
        severity: str,
        vertical: str,
        country: str,
        city: str,
        evidence: dict[str, Any],
        at: datetime,
        by: str,
        by_name: str | None = None,
        rule: dict[str, Any] | None = None,
        sla_minutes: dict[str, float] | None = None,
    ) -> None:
        self.order_id = order_id
        self.kind = kind
        self.severity = severity
        self.vertical = vertical
        self.country = country
        self.city = city
        self.evidence = evidence
        self.detected_at = at
        self.sla_minutes = None if sla_minutes is None else dict(sla_minutes)
        self.updated_at = at
        self.status = "open"
        self.status_before_snooze: str | None = None
        self.snoozed_until: datetime | None = None
        self.assignee: str | None = None
        self.acknowledged_by: str | None = None
        self.resolved_at: datetime | None = None
        self.resolved_by: str | None = None
        self.resolution: str | None = None
        self.notes: list[dict[str, Any]] = []
        self.actions: list[dict[str, Any]] = []
        self.reopen_count = 0

    # ---- derived values -------------------------------------------------------------

    @property
    def priority(self) -> int:
        return priority_of(self.severity)

    @property
    def due_at(self) -> datetime:
        return due_at(self.detected_at, self.severity, self.sla_minutes)

    @property
    def is_resolved(self) -> bool:
        return self.status == "resolved"

    # ---- commands -------------------------------------------------------------------

    def escalate(
        self,
        *,
        severity: str,
        evidence: dict[str, Any],
        at: datetime,
        by: str,
        by_name: str | None = None,
        rule: dict[str, Any] | None = None,
    ) -> None:
        """Raise the severity as the condition worsens; new evidence adds to the old."""
        _check_severity(severity)
        check_object("evidence", evidence)
        _check_actor(by, by_name)
        check_rule(rule)
        self._check_not_resolved("escalate")
        if SEVERITY_RANK[severity] <= SEVERITY_RANK[self.severity]:
            self._refuse("escalate", f"severity {severity} is not above {self.severity}")
        self._escalated(
            severity=severity, evidence=evidence, at=at, by=by, by_name=by_name, rule=rule
        )

    def assign(self, *, assignee: str, at: datetime, by: str, by_name: str | None = None) -> None:
        _check_actor(by, by_name)
        _check_text("assignee", assignee)
        self._check_not_resolved("assign")
        if self.assignee == assignee:
            self._refuse("assign", f"already assigned to {assignee}")
        self._assigned(assignee=assignee, at=at, by=by, by_name=by_name)

    def unassign(self, *, at: datetime, by: str, by_name: str | None = None) -> None:
        _check_actor(by, by_name)
        self._check_not_resolved("unassign")
        if self.assignee is None:
            self._refuse("unassign", "nobody is assigned")
        self._unassigned(previous_assignee=self.assignee, at=at, by=by, by_name=by_name)

    def acknowledge(self, *, at: datetime, by: str, by_name: str | None = None) -> None:
        _check_actor(by, by_name)
        if self.status != "open":
            self._refuse("acknowledge", "only an open issue can be acknowledged")
        self._acknowledged(at=at, by=by, by_name=by_name)

    def add_note(self, *, text: str, at: datetime, by: str, by_name: str | None = None) -> None:
        """Notes are allowed in every status, resolved included: auditors annotate too."""
        _check_actor(by, by_name)
        _check_text("text", text)
        self._note_added(text=text, at=at, by=by, by_name=by_name)

    def take_action(
        self,
        *,
        action: str,
        details: dict[str, Any],
        at: datetime,
        by: str,
        by_name: str | None = None,
    ) -> None:
        _check_actor(by, by_name)
        if action not in ACTIONS:
            raise InvalidValue("action", f"must be one of {', '.join(sorted(ACTIONS))}")
        check_object("details", details)
        self._check_not_resolved("take action on")
        self._action_taken(action=action, details=details, at=at, by=by, by_name=by_name)

    def snooze(self, *, until: datetime, at: datetime, by: str, by_name: str | None = None) -> None:
        """Hide the issue until a time; snoozing a snoozed issue moves the time."""
        _check_actor(by, by_name)
        check_time("until", until)
        if until <= at:
            raise InvalidValue("until", "must be in the future")
        self._check_not_resolved("snooze")
        previous = self.status_before_snooze if self.status == "snoozed" else self.status
        self._snoozed(until=until, previous_status=previous, at=at, by=by, by_name=by_name)

    def wake(self, *, at: datetime, by: str = SYSTEM_ACTOR, by_name: str | None = None) -> None:
        """End a snooze (its time came, or an agent woke it early)."""
        _check_actor(by, by_name)
        if self.status != "snoozed":
            self._refuse("wake", "only a snoozed issue can be woken")
        self._woken(at=at, by=by, by_name=by_name)

    def resolve(
        self,
        *,
        resolution: str,
        note: str,
        at: datetime,
        by: str,
        by_name: str | None = None,
        resolved_by: str = "agent",
        rule: dict[str, Any] | None = None,
    ) -> None:
        _check_actor(by, by_name)
        check_rule(rule)
        if resolution not in RESOLUTIONS:
            raise InvalidValue("resolution", f"must be one of {', '.join(sorted(RESOLUTIONS))}")
        if resolved_by not in ("agent", "system"):
            raise InvalidValue("resolved_by", "must be agent or system")
        _check_text("note", note, required=False)
        self._check_not_resolved("resolve")
        self._resolved(
            resolution=resolution,
            note=note,
            resolved_by=resolved_by,
            at=at,
            by=by,
            by_name=by_name,
            rule=rule,
        )

    def reopen(
        self,
        *,
        reason: str,
        at: datetime,
        by: str,
        by_name: str | None = None,
        rule: dict[str, Any] | None = None,
    ) -> None:
        _check_actor(by, by_name)
        _check_text("reason", reason)
        check_rule(rule)
        if self.status != "resolved":
            self._refuse("reopen", "only a resolved issue can be reopened")
        self._reopened(reason=reason, at=at, by=by, by_name=by_name, rule=rule)

    # ---- checks ---------------------------------------------------------------------

    def _check_not_resolved(self, command: str) -> None:
        if self.status == "resolved":
            self._refuse(command, "the issue is resolved; reopen it first")

    def _refuse(self, command: str, reason: str) -> None:
        raise TransitionNotAllowed(self.id, command, self.status, reason)

    # ---- events (these alone run on replay) -----------------------------------------
    #
    # ``by_name=None``: the default is what an event stored before names were recorded
    # replays with; ``rule=None`` likewise for the rule record. Triggering an event still
    # needs every keyword-only argument (the library's rule): the commands above always
    # pass them.

    @event("Escalated")
    def _escalated(
        self,
        *,
        severity: str,
        evidence: dict[str, Any],
        at: datetime,
        by: str,
        by_name: str | None = None,
        rule: dict[str, Any] | None = None,
    ) -> None:
        self.severity = severity
        self.evidence = {**self.evidence, **evidence}
        self.updated_at = at

    @event("Assigned")
    def _assigned(
        self, *, assignee: str, at: datetime, by: str, by_name: str | None = None
    ) -> None:
        self.assignee = assignee
        self.updated_at = at

    @event("Unassigned")
    def _unassigned(
        self, *, previous_assignee: str | None, at: datetime, by: str, by_name: str | None = None
    ) -> None:
        self.assignee = None
        self.updated_at = at

    @event("Acknowledged")
    def _acknowledged(self, *, at: datetime, by: str, by_name: str | None = None) -> None:
        self.status = "acknowledged"
        self.acknowledged_by = by
        self.updated_at = at

    @event("NoteAdded")
    def _note_added(self, *, text: str, at: datetime, by: str, by_name: str | None = None) -> None:
        self.notes.append({"text": text, "at": at, "by": by, "by_name": by_name})
        self.updated_at = at

    @event("ActionTaken")
    def _action_taken(
        self,
        *,
        action: str,
        details: dict[str, Any],
        at: datetime,
        by: str,
        by_name: str | None = None,
    ) -> None:
        self.actions.append(
            {"action": action, "details": details, "at": at, "by": by, "by_name": by_name}
        )
        self.updated_at = at

    @event("Snoozed")
    def _snoozed(
        self,
        *,
        until: datetime,
        previous_status: str | None,
        at: datetime,
        by: str,
        by_name: str | None = None,
    ) -> None:
        self.status_before_snooze = previous_status
        self.status = "snoozed"
        self.snoozed_until = until
        self.updated_at = at

    @event("Woken")
    def _woken(self, *, at: datetime, by: str, by_name: str | None = None) -> None:
        self.status = self.status_before_snooze or "open"
        self.status_before_snooze = None
        self.snoozed_until = None
        self.updated_at = at

    @event("Resolved")
    def _resolved(
        self,
        *,
        resolution: str,
        note: str,
        resolved_by: str,
        at: datetime,
        by: str,
        by_name: str | None = None,
        rule: dict[str, Any] | None = None,
    ) -> None:
        self.status = "resolved"
        self.resolution = resolution
        self.resolved_by = resolved_by
        self.resolved_at = at
        self.status_before_snooze = None
        self.snoozed_until = None
        self.updated_at = at

    @event("Reopened")
    def _reopened(
        self,
        *,
        reason: str,
        at: datetime,
        by: str,
        by_name: str | None = None,
        rule: dict[str, Any] | None = None,
    ) -> None:
        self.status = "open"
        self.reopen_count += 1
        self.acknowledged_by = None
        self.resolution = None
        self.resolved_at = None
        self.resolved_by = None
        self.updated_at = at


# The public name of each domain event (CONTRACT §4: inbox.issue.<name>).
EVENT_NAMES: dict[type[Any], str] = {
    OrderIssue.Detected: "detected",  # type: ignore[attr-defined]
    OrderIssue.Escalated: "escalated",  # type: ignore[attr-defined]
    OrderIssue.Assigned: "assigned",  # type: ignore[attr-defined]
    OrderIssue.Unassigned: "unassigned",  # type: ignore[attr-defined]
    OrderIssue.Acknowledged: "acknowledged",  # type: ignore[attr-defined]
    OrderIssue.NoteAdded: "note_added",  # type: ignore[attr-defined]
    OrderIssue.ActionTaken: "action_taken",  # type: ignore[attr-defined]
    OrderIssue.Snoozed: "snoozed",  # type: ignore[attr-defined]
    OrderIssue.Woken: "woken",  # type: ignore[attr-defined]
    OrderIssue.Resolved: "resolved",  # type: ignore[attr-defined]
    OrderIssue.Reopened: "reopened",  # type: ignore[attr-defined]
}
