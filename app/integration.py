"""Domain → public shapes.

- :class:`IssueView`: the issue as the API shows it.
- :class:`EventItem`: one event as the history API shows it.
- Integration events (CONTRACT §4): versioned msgspec Structs published on NATS. The
  allow-list :data:`INTEGRATION_EVENTS` says which domain event becomes which public event;
  a domain event that is not in it is never published by accident (the relay halts).
  :func:`cloud_event` makes the message the relay publishes: subject, CloudEvents
  headers, JSON body.
  Their JSON Schemas are generated into ``docs/schemas/`` by ``inbox schemas``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import msgspec

from adapters.nats import Outgoing
from app.edge import Country, Name
from app.ingest import order_event_schemas
from domain.issue import EVENT_NAMES, OrderIssue
from domain.values import Action, Resolution, ResolvedBy, Severity

# Attributes of every stored event that the item carries in its own fields.
_ENVELOPE = frozenset(
    {"originator_id", "originator_version", "originator_topic", "timestamp", "at"}
)


class IssueFields(msgspec.Struct, kw_only=True):
    """The fields of an issue every view shows (CONTRACT §3)."""

    issue_id: UUID
    order_id: str
    kind: str
    status: str
    severity: str
    priority: int
    vertical: str
    country: str
    city: str
    assignee: str | None
    detected_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: str | None
    snoozed_until: datetime | None
    reopen_count: int
    version: int


class IssueView(IssueFields, kw_only=True):
    """An issue as it was at a version (auditors), folded from the event store."""

    evidence: dict[str, Any]
    notes: list[dict[str, Any]]
    actions: list[dict[str, Any]]


class EventItem(msgspec.Struct, kw_only=True):
    position: int
    issue_id: UUID
    version: int
    type: str
    occurred_at: datetime
    recorded_at: datetime
    data: dict[str, Any]


def issue_view(issue: OrderIssue) -> IssueView:
    return IssueView(
        issue_id=issue.id,
        order_id=issue.order_id,
        kind=issue.kind,
        status=issue.status,
        severity=issue.severity,
        priority=issue.priority,
        vertical=issue.vertical,
        country=issue.country,
        city=issue.city,
        assignee=issue.assignee,
        detected_at=issue.detected_at,
        updated_at=issue.updated_at,
        resolved_at=issue.resolved_at,
        resolved_by=issue.resolved_by,
        resolution=issue.resolution,
        snoozed_until=issue.snoozed_until,
        evidence=issue.evidence,
        notes=issue.notes,
        actions=issue.actions,
        reopen_count=issue.reopen_count,
        version=issue.version,
    )


class UnmappedEvent(Exception):
    """A stored event with no public name: a new domain event nobody mapped yet."""


def event_item(position: int, event: Any) -> EventItem:
    try:
        name = EVENT_NAMES[type(event)]
    except KeyError:
        raise UnmappedEvent(f"no public name for {type(event).__qualname__}") from None
    data = {key: value for key, value in vars(event).items() if key not in _ENVELOPE}
    # Events stored before names were recorded have none: they show null, like the system.
    data.setdefault("by_name", None)
    # Likewise the rule record of the events the detector causes (null for an agent's),
    # and a Detected event's SLA minutes (null: the fixed table).
    if name in _RULED:
        data.setdefault("rule", None)
    if name == "detected":
        data.setdefault("sla_minutes", None)
    return EventItem(
        position=position,
        issue_id=event.originator_id,
        version=event.originator_version,
        type=name,
        occurred_at=event.at,
        recorded_at=event.timestamp,
        data=data,
    )


# ---- integration events (NATS) ---------------------------------------------------------


Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]
# The events that may carry the rule behind them (the detector causes them).
_RULED = frozenset({"detected", "escalated", "resolved", "reopened"})


class RuleTierV1(msgspec.Struct, kw_only=True):
    threshold: float  # minutes (unassignments for courier_reassigned_repeatedly)
    severity: Severity


class FiredRuleV1(msgspec.Struct, kw_only=True):
    """The rule behind an event the detector caused: so an auditor can tell which
    thresholds raised, escalated, reopened or resolved an issue."""

    version: str  # the rules file's content hash (RuleSet.version)
    name: Name  # the rule: the issue's kind
    tier: RuleTierV1 | None  # the tier that fired; null for a resolve or a contact
    reason: str


class IssueEventV1(msgspec.Struct, kw_only=True):
    """Fields every issue event carries, whatever happened."""

    issue_id: UUID
    order_id: str
    kind: Name
    vertical: Name
    country: Country
    city: str
    version: Annotated[int, msgspec.Meta(ge=1)]
    occurred_at: Timestamp
    actor: str  # the agent id, or "system"
    # The agent's display name (its token's name claim): null for the system, for a token
    # without a name, and for events stored before names were recorded.
    actor_name: str | None = None


class IssueDetectedV1(IssueEventV1, kw_only=True):
    severity: Severity
    evidence: dict[str, Any]
    # Null for an issue an agent raised, and for events stored before it was recorded.
    rule: FiredRuleV1 | None = None
    # The SLA minutes per severity of the order's vertical (due_at = occurred_at plus the
    # issue's severity's); null: the fixed table (60, 30, 15, 5).
    sla_minutes: dict[Severity, float] | None = None


class IssueEscalatedV1(IssueEventV1, kw_only=True):
    severity: Severity
    evidence: dict[str, Any]
    rule: FiredRuleV1 | None = None  # null for an agent's escalation


class IssueAssignedV1(IssueEventV1, kw_only=True):
    assignee: str


class IssueUnassignedV1(IssueEventV1, kw_only=True):
    previous_assignee: str | None


class IssueAcknowledgedV1(IssueEventV1, kw_only=True):
    pass


class IssueNoteAddedV1(IssueEventV1, kw_only=True):
    text: str


class IssueActionTakenV1(IssueEventV1, kw_only=True):
    action: Action
    details: dict[str, Any]


class IssueSnoozedV1(IssueEventV1, kw_only=True):
    until: Timestamp


class IssueWokenV1(IssueEventV1, kw_only=True):
    pass


class IssueResolvedV1(IssueEventV1, kw_only=True):
    resolution: Resolution
    note: str
    resolved_by: ResolvedBy
    rule: FiredRuleV1 | None = None  # null for an agent's resolve


class IssueReopenedV1(IssueEventV1, kw_only=True):
    reason: str
    rule: FiredRuleV1 | None = None  # null for an agent's reopen


@dataclass(frozen=True)
class IntegrationEvent:
    """One entry of the allow-list: the public name, schema version and payload type."""

    name: str
    version: int
    struct: type[IssueEventV1]

    @property
    def ce_type(self) -> str:
        return f"inbox.issue.{self.name}.v{self.version}"

    @property
    def own_fields(self) -> tuple[str, ...]:
        common = set(IssueEventV1.__struct_fields__)
        return tuple(f for f in self.struct.__struct_fields__ if f not in common)


_ALLOWED: list[tuple[Any, type[IssueEventV1]]] = [
    (OrderIssue.Detected, IssueDetectedV1),  # type: ignore[attr-defined]
    (OrderIssue.Escalated, IssueEscalatedV1),  # type: ignore[attr-defined]
    (OrderIssue.Assigned, IssueAssignedV1),  # type: ignore[attr-defined]
    (OrderIssue.Unassigned, IssueUnassignedV1),  # type: ignore[attr-defined]
    (OrderIssue.Acknowledged, IssueAcknowledgedV1),  # type: ignore[attr-defined]
    (OrderIssue.NoteAdded, IssueNoteAddedV1),  # type: ignore[attr-defined]
    (OrderIssue.ActionTaken, IssueActionTakenV1),  # type: ignore[attr-defined]
    (OrderIssue.Snoozed, IssueSnoozedV1),  # type: ignore[attr-defined]
    (OrderIssue.Woken, IssueWokenV1),  # type: ignore[attr-defined]
    (OrderIssue.Resolved, IssueResolvedV1),  # type: ignore[attr-defined]
    (OrderIssue.Reopened, IssueReopenedV1),  # type: ignore[attr-defined]
]

# The allow-list: domain event class → what it is published as.
INTEGRATION_EVENTS: dict[type[Any], IntegrationEvent] = {
    domain_class: IntegrationEvent(EVENT_NAMES[domain_class], 1, struct)
    for domain_class, struct in _ALLOWED
}


@dataclass(frozen=True)
class IssueFacts:
    """What every event of one issue repeats: from its Detected event."""

    order_id: str
    kind: Name
    vertical: Name
    country: str
    city: str

    @classmethod
    def of(cls, detected: Any) -> IssueFacts:
        return cls(
            detected.order_id, detected.kind, detected.vertical, detected.country, detected.city
        )


def integration_event(event: Any, facts: IssueFacts) -> tuple[IntegrationEvent, IssueEventV1]:
    """The public event for one domain event; UnmappedEvent when it is not allowed out."""
    try:
        entry = INTEGRATION_EVENTS[type(event)]
    except KeyError:
        raise UnmappedEvent(
            f"{type(event).__module__}.{type(event).__qualname__} is not in the "
            "integration allow-list (app/integration.py)"
        ) from None
    payload = entry.struct(
        issue_id=event.originator_id,
        order_id=facts.order_id,
        kind=facts.kind,
        vertical=facts.vertical,
        country=facts.country,
        city=facts.city,
        version=event.originator_version,
        occurred_at=event.at,
        actor=event.by,
        actor_name=vars(event).get("by_name"),
        **{name: _own_field(event, name) for name in entry.own_fields},
    )
    return entry, payload


def _own_field(event: Any, name: str) -> Any:
    """An event's own field as its payload carries it; the optional ones added since
    (``rule``, ``sla_minutes``) are absent from events stored before them."""
    if name == "rule":
        rule = vars(event).get("rule")
        return None if rule is None else msgspec.convert(rule, FiredRuleV1)
    if name == "sla_minutes":
        return vars(event).get("sla_minutes")
    return getattr(event, name)


_ENCODE = msgspec.json.Encoder().encode


def cloud_event(
    position: int, event: Any, facts: IssueFacts, *, subject_prefix: str, source: str
) -> Outgoing:
    """The message of one domain event at ``position`` (CONTRACT §4): subject
    ``<prefix>.<event>``, ``Nats-Msg-Id = <issue_id>:<version>``, CloudEvents binary-mode
    headers, the public event as JSON; UnmappedEvent when it is not allowed out."""
    entry, payload = integration_event(event, facts)
    issue_id = event.originator_id
    message_id = f"{issue_id}:{event.originator_version}"
    return Outgoing(
        position=position,
        issue_id=issue_id,
        version=event.originator_version,
        subject=f"{subject_prefix}.{entry.name}",
        payload=_ENCODE(payload),
        headers={
            "Nats-Msg-Id": message_id,
            "Inbox-Position": str(position),
            "ce-specversion": "1.0",
            "ce-id": message_id,
            "ce-type": entry.ce_type,
            "ce-source": source,
            "ce-subject": str(issue_id),
            "ce-time": event.at.isoformat(),
            "content-type": "application/json",
        },
    )


def schema_documents() -> dict[str, str]:
    """File name → JSON Schema text of every integration event and every incoming order
    event, generated from the Structs."""
    documents = {}
    for entry in INTEGRATION_EVENTS.values():
        schema = msgspec.json.schema(entry.struct)
        schema["$id"] = f"urn:support-inbox:schema:{entry.ce_type}"
        schema["title"] = entry.ce_type
        documents[f"{entry.ce_type}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    for kind, schema in order_event_schemas().items():
        name = f"orders.{kind}"  # incoming: the ORDERS stream and POST /api/order-events
        schema["$id"] = f"urn:support-inbox:schema:{name}"
        schema["title"] = name
        documents[f"{name}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return documents


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in schema_documents().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written
