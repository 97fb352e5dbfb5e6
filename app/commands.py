"""The issue use cases: one named command for each thing an agent or the detector does to
an issue (CONTRACT §5), executed by :class:`app.service.IssueService`.

A command is a frozen value: the issue it names, the acting agent (``actor``: an agent id,
or ``"system"`` for the detector and the snooze waker; ``actor_name``: its display name,
None for the system), what it asks, and optionally an
expected version (``If-Match``), an idempotency :class:`Request` and the caller's
:class:`~app.scope.Scope` (the system's: everywhere). Out of its scope an issue is unknown
to the command (``IssueNotFound``), and a new one cannot be raised there. Being data, commands
from many callers queue up and share one ``save()`` (``app/bus.py``). :data:`Command` is
the closed union of them.

What the detector sends also carries ``rule``: the record of the rule that fired, its
tier and the rules version (``domain.issue.fired_rule``), and a :class:`Detect` the SLA
minutes of the order's vertical; an agent's commands carry neither (None).

Two shapes: :class:`Report` and :class:`Detect` raise a new issue (``create``); every
other command ``apply``s itself to the issue as it stands, once the service has checked
that the issue exists and is at the expected version. Both call the aggregate's own
command methods, which check the state machine and raise domain errors when refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal
from uuid import UUID

from app.scope import EVERYWHERE, Scope
from domain.issue import OrderIssue, issue_id_for


@dataclass(frozen=True, slots=True)
class Request:
    """A client's idempotency key for one command, and a fingerprint of what it asked."""

    key: str
    fingerprint: str


@dataclass(frozen=True, kw_only=True, slots=True)
class _Raise:
    """Raise an issue of one kind on one order; its id follows from the two."""

    name: ClassVar[str]

    actor: str
    # The acting agent's display name (the token's name claim); None for the system.
    actor_name: str | None = None
    order_id: str
    kind: str
    severity: str
    vertical: str
    country: str
    city: str
    evidence: dict[str, Any]
    # The rule that fired (the detector's, Detect), and the vertical's SLA minutes.
    rule: dict[str, Any] | None = None
    sla_minutes: dict[str, float] | None = None
    request: Request | None = None
    scope: Scope = EVERYWHERE

    @property
    def issue_id(self) -> UUID:
        return issue_id_for(self.order_id, self.kind)

    def create(self, at: datetime) -> OrderIssue:
        return OrderIssue.detect(
            order_id=self.order_id,
            kind=self.kind,
            severity=self.severity,
            vertical=self.vertical,
            country=self.country,
            city=self.city,
            evidence=self.evidence,
            at=at,
            by=self.actor,
            by_name=self.actor_name,
            rule=self.rule,
            sla_minutes=self.sla_minutes,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Report(_Raise):
    """An agent raises an issue by hand."""

    name: ClassVar[str] = "report"


@dataclass(frozen=True, kw_only=True, slots=True)
class Detect(_Raise):
    """The detector raises an issue its rules found."""

    name: ClassVar[str] = "detect"


@dataclass(frozen=True, kw_only=True, slots=True)
class _Change:
    """A command on an existing issue (at ``expected_version`` when one is given)."""

    name: ClassVar[str]

    issue_id: UUID
    actor: str
    actor_name: str | None = None
    expected_version: int | None = None
    request: Request | None = None
    scope: Scope = EVERYWHERE

    def apply(self, issue: OrderIssue, at: datetime) -> None:
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True, slots=True)
class Escalate(_Change):
    name: ClassVar[str] = "escalate"
    severity: str
    evidence: dict[str, Any]
    rule: dict[str, Any] | None = None  # the detector's: the rule and tier that fired

    def apply(self, issue: OrderIssue, at: datetime) -> None:
        issue.escalate(
            severity=self.severity,
            evidence=self.evidence,
            at=at,
            by=self.actor,
            by_name=self.actor_name,
            rule=self.rule,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Assign(_Change):
    name: ClassVar[str] = "assign"
    assignee: str

    def apply(self, issue: OrderIssue, at: datetime) -> None:
        issue.assign(assignee=self.assignee, at=at, by=self.actor, by_name=self.actor_name)


@dataclass(frozen=True, kw_only=True, slots=True)
class Unassign(_Change):
    name: ClassVar[str] = "unassign"

    def apply(self, issue: OrderIssue, at: datetime) -> None:
        issue.unassign(at=at, by=self.actor, by_name=self.actor_name)


@dataclass(frozen=True, kw_only=True, slots=True)
class Acknowledge(_Change):
    name: ClassVar[str] = "acknowledge"

    def apply(self, issue: OrderIssue, at: datetime) -> None:
        issue.acknowledge(at=at, by=self.actor, by_name=self.actor_name)


@dataclass(frozen=True, kw_only=True, slots=True)
class AddNote(_Change):
    name: ClassVar[str] = "add_note"
    text: str

    def apply(self, issue: OrderIssue, at: datetime) -> None:
        issue.add_note(text=self.text, at=at, by=self.actor, by_name=self.actor_name)


@dataclass(frozen=True, kw_only=True, slots=True)
class TakeAction(_Change):
    name: ClassVar[str] = "take_action"
    action: str
    details: dict[str, Any]

    def apply(self, issue: OrderIssue, at: datetime) -> None:
        issue.take_action(
            action=self.action, details=self.details, at=at, by=self.actor, by_name=self.actor_name
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Snooze(_Change):
    name: ClassVar[str] = "snooze"
    until: datetime

    def apply(self, issue: OrderIssue, at: datetime) -> None:
        issue.snooze(until=self.until, at=at, by=self.actor, by_name=self.actor_name)


@dataclass(frozen=True, kw_only=True, slots=True)
class Wake(_Change):
    """End a snooze: its time came (the waker), or an agent wakes it early."""

    name: ClassVar[str] = "wake"

    def apply(self, issue: OrderIssue, at: datetime) -> None:
        issue.wake(at=at, by=self.actor, by_name=self.actor_name)


@dataclass(frozen=True, kw_only=True, slots=True)
class Resolve(_Change):
    """``resolved_by`` says whether an agent judged it or the condition cleared."""

    name: ClassVar[str] = "resolve"
    resolution: str
    note: str
    resolved_by: Literal["agent", "system"] = "agent"
    rule: dict[str, Any] | None = None  # the detector's: the rule whose condition cleared

    def apply(self, issue: OrderIssue, at: datetime) -> None:
        issue.resolve(
            resolution=self.resolution,
            note=self.note,
            at=at,
            by=self.actor,
            by_name=self.actor_name,
            resolved_by=self.resolved_by,
            rule=self.rule,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Reopen(_Change):
    name: ClassVar[str] = "reopen"
    reason: str
    rule: dict[str, Any] | None = None  # the detector's: the rule whose condition recurred

    def apply(self, issue: OrderIssue, at: datetime) -> None:
        issue.reopen(
            reason=self.reason, at=at, by=self.actor, by_name=self.actor_name, rule=self.rule
        )


RaiseIssue = Report | Detect
ChangeIssue = (
    Escalate
    | Assign
    | Unassign
    | Acknowledge
    | AddNote
    | TakeAction
    | Snooze
    | Wake
    | Resolve
    | Reopen
)
# Every command the issue service executes.
Command = RaiseIssue | ChangeIssue
