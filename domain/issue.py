"""``OrderIssue``: one suspected problem of one kind with one order, event-sourced.

Each public command checks the state machine, then calls a private method decorated with
``@event``; only the private method runs again when the aggregate is replayed, so checks
never re-run against history. Every event carries ``at`` (when it happened, given by the
caller), ``by`` (who did it: an agent id or ``"system"``) and ``by_name`` (that agent's
display name, the token's ``name`` claim; None for the system, for a token without one,
and in every event stored before it was recorded).

Statuses (CONTRACT §3)::

    open ──acknowledge──▶ acknowledged ──resolve──▶ resolved ──reopen──▶ open
      │                        │                        ▲
      └──snooze──▶ snoozed ◀───┘      (wake: back to the status before snoozing)
                     └──────────────resolve─────────────┘
"""

from __future__ import annotations

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
# How soon an agent should act on an issue of each severity (its SLA), from detection.
SLA_BY_SEVERITY = {
    "low": timedelta(minutes=60),
    "medium": timedelta(minutes=30),
    "high": timedelta(minutes=15),
    "critical": timedelta(minutes=5),
}


def priority_of(severity: str) -> int:
    return _PRIORITY_BY_SEVERITY[severity]


def due_at(detected_at: datetime, severity: str) -> datetime:
    """When an issue of this severity, detected then, should have been acted on."""
    return detected_at + SLA_BY_SEVERITY[severity]


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
    ) -> OrderIssue:
        """Raise a new issue (the detector, or an agent reporting one by hand)."""
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
        )

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
    ) -> None:
        self.order_id = order_id
        self.kind = kind
        self.severity = severity
        self.vertical = vertical
        self.country = country
        self.city = city
        self.evidence = evidence
        self.detected_at = at
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
        return due_at(self.detected_at, self.severity)

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
    ) -> None:
        """Raise the severity as the condition worsens; new evidence adds to the old."""
        _check_severity(severity)
        check_object("evidence", evidence)
        _check_actor(by, by_name)
        self._check_not_resolved("escalate")
        if SEVERITY_RANK[severity] <= SEVERITY_RANK[self.severity]:
            self._refuse("escalate", f"severity {severity} is not above {self.severity}")
        self._escalated(severity=severity, evidence=evidence, at=at, by=by, by_name=by_name)

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
    ) -> None:
        _check_actor(by, by_name)
        if resolution not in RESOLUTIONS:
            raise InvalidValue("resolution", f"must be one of {', '.join(sorted(RESOLUTIONS))}")
        if resolved_by not in ("agent", "system"):
            raise InvalidValue("resolved_by", "must be agent or system")
        _check_text("note", note, required=False)
        self._check_not_resolved("resolve")
        self._resolved(
            resolution=resolution, note=note, resolved_by=resolved_by, at=at, by=by, by_name=by_name
        )

    def reopen(self, *, reason: str, at: datetime, by: str, by_name: str | None = None) -> None:
        _check_actor(by, by_name)
        _check_text("reason", reason)
        if self.status != "resolved":
            self._refuse("reopen", "only a resolved issue can be reopened")
        self._reopened(reason=reason, at=at, by=by, by_name=by_name)

    # ---- checks ---------------------------------------------------------------------

    def _check_not_resolved(self, command: str) -> None:
        if self.status == "resolved":
            self._refuse(command, "the issue is resolved; reopen it first")

    def _refuse(self, command: str, reason: str) -> None:
        raise TransitionNotAllowed(self.id, command, self.status, reason)

    # ---- events (these alone run on replay) -----------------------------------------
    #
    # ``by_name=None``: the default is what an event stored before names were recorded
    # replays with. Triggering an event still needs every keyword-only argument (the
    # library's rule): the commands above always pass ``by_name``.

    @event("Escalated")
    def _escalated(
        self,
        *,
        severity: str,
        evidence: dict[str, Any],
        at: datetime,
        by: str,
        by_name: str | None = None,
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
    ) -> None:
        self.status = "resolved"
        self.resolution = resolution
        self.resolved_by = resolved_by
        self.resolved_at = at
        self.status_before_snooze = None
        self.snoozed_until = None
        self.updated_at = at

    @event("Reopened")
    def _reopened(self, *, reason: str, at: datetime, by: str, by_name: str | None = None) -> None:
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
