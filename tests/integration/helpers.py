"""Builders shared by the integration tests."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from adapters.clock import SystemClock
from adapters.eventstore import eventstore_env
from app.service import Command, IssueApplication, IssueService
from domain.issue import OrderIssue, issue_id_for


def service(url: str, *, pool_size: int = 4) -> IssueService:
    """An IssueService with a connection pool of its own, as a separate replica has."""
    return IssueService(
        app=IssueApplication(env=eventstore_env(url, pool_size=pool_size)), clock=SystemClock()
    )


def report(order_id: str, kind: str = "venue_acceptance_delayed") -> Command:
    def create(at: datetime) -> OrderIssue:
        return OrderIssue.detect(
            order_id=order_id,
            kind=kind,
            severity="medium",
            vertical="restaurant",
            country="FI",
            city="Helsinki",
            evidence={"minutes_waiting": 5},
            at=at,
        )

    return Command(issue_id_for(order_id, kind), "report", create=create)


def note(issue_id: UUID, text: str, expected_version: int | None = None) -> Command:
    return Command(
        issue_id,
        "add_note",
        act=lambda issue, at: issue.add_note(text=text, at=at, by="ann"),
        expected_version=expected_version,
    )


T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
