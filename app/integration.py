"""Domain → public shapes: the issue as the API shows it, and each event as history shows it.

Only the fields listed here leave the service; a new domain field stays private until it is
added on purpose.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from domain.issue import EVENT_NAMES, OrderIssue

# Attributes of every stored event that the item carries in its own fields.
_ENVELOPE = frozenset(
    {"originator_id", "originator_version", "originator_topic", "timestamp", "at"}
)


class IssueView(msgspec.Struct, kw_only=True):
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
    evidence: dict[str, Any]
    notes: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    reopen_count: int
    version: int


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
    attributes = vars(event)
    return EventItem(
        position=position,
        issue_id=event.originator_id,
        version=event.originator_version,
        type=name,
        occurred_at=event.at,
        recorded_at=event.timestamp,
        data={key: value for key, value in attributes.items() if key not in _ENVELOPE},
    )
