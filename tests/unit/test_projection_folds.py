"""The read models fold events exactly as the aggregate does: for any sequence of commands,
the rows equal what OrderIssue itself holds."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import DomainError
from domain.issue import OrderIssue
from projections import PROJECTIONS, inbox, orders, stats

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

COMMANDS = [
    lambda i, t: i.escalate(severity="high", evidence={"k": t.minute}, at=t, by="sys"),
    lambda i, t: i.escalate(severity="critical", evidence={"c": 1}, at=t, by="sys"),
    lambda i, t: i.assign(assignee="bob", at=t, by="ann"),
    lambda i, t: i.assign(assignee="carl", at=t, by="ann"),
    lambda i, t: i.unassign(at=t, by="ann"),
    lambda i, t: i.acknowledge(at=t, by="ann"),
    lambda i, t: i.add_note(text="n", at=t, by="ann"),
    lambda i, t: i.take_action(action="other", details={}, at=t, by="ann"),
    lambda i, t: i.snooze(until=t + timedelta(hours=1), at=t, by="ann"),
    lambda i, t: i.wake(at=t, by="ann"),
    lambda i, t: i.resolve(resolution="fixed", note="", at=t, by="ann"),
    lambda i, t: i.reopen(reason="again", at=t, by="ann"),
]


# A vertical's own SLA minutes (as the detector records them), or none (the fixed table).
PHARMACY_SLA = {"low": 30.0, "medium": 15.0, "high": 10.0, "critical": 5.0}


def run(
    steps: list[int], sla_minutes: dict[str, float] | None = None
) -> tuple[OrderIssue, list[Any]]:
    issue = OrderIssue.detect(
        order_id="o1",
        kind="eta_slipped",
        severity="low",
        vertical="retail",
        country="SE",
        city="Malmö",
        evidence={"slip": 11},
        at=T0,
        sla_minutes=sla_minutes,
    )
    for n, step in enumerate(steps, start=1):
        with contextlib.suppress(DomainError):  # refused commands record nothing
            COMMANDS[step](issue, T0 + timedelta(minutes=n))
    return issue, list(issue.collect_events())


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, len(COMMANDS) - 1), max_size=25),
    st.sampled_from([None, PHARMACY_SLA]),
)
def test_the_inbox_row_is_the_aggregate(
    steps: list[int], sla_minutes: dict[str, float] | None
) -> None:
    issue, events = run(steps, sla_minutes)
    row = None
    for position, event in enumerate(events, start=100):
        row = inbox.fold(row, event, position)
    assert row is not None
    expected = {
        "issue_id": issue.id,
        "order_id": issue.order_id,
        "kind": issue.kind,
        "status": issue.status,
        "status_before_snooze": issue.status_before_snooze,
        "severity": issue.severity,
        "priority": issue.priority,
        "vertical": issue.vertical,
        "country": issue.country,
        "city": issue.city,
        "assignee": issue.assignee,
        "detected_at": issue.detected_at,
        "updated_at": issue.updated_at,
        "due_at": issue.due_at,
        "sla_minutes": issue.sla_minutes,
        "resolved_at": issue.resolved_at,
        "resolved_by": issue.resolved_by,
        "resolution": issue.resolution,
        "snoozed_until": issue.snoozed_until,
        "evidence": issue.evidence,
        "note_count": len(issue.notes),
        "action_count": len(issue.actions),
        "reopen_count": issue.reopen_count,
        "version": issue.version,
        "position": 99 + len(events),
    }
    assert row == expected
    assert set(row) == set(inbox.COLUMNS)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, len(COMMANDS) - 1), max_size=25))
def test_stats_and_orders_follow_status_and_severity(steps: list[int]) -> None:
    issue, events = run(steps)
    stats_row = order_row = None
    for event in events:
        stats_row = stats.fold(stats_row, event)
        order_row = orders.fold(order_row, event)
    assert stats_row is not None
    assert order_row is not None
    for row in (stats_row, order_row):
        assert (row["status"], row["severity"], row["country"]) == (
            issue.status,
            issue.severity,
            issue.country,
        )
    assert order_row["version"] == issue.version


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(0, len(COMMANDS) - 1), max_size=25),
    st.sampled_from([None, PHARMACY_SLA]),
)
def test_a_rebuild_folds_and_records_each_issue_as_the_model_does(
    steps: list[int], sla_minutes: dict[str, float] | None
) -> None:
    """What ``inbox rebuild`` COPYs for an issue: its row from the model's own fold, as a
    record in the issue table's column order (the inbox's evidence and SLA minutes as
    JSON, no SLA minutes as NULL)."""
    _, events = run(steps, sla_minutes)
    folds: dict[str, Any] = {
        "inbox": inbox.fold,
        "stats": lambda row, event, _: stats.fold(row, event),
        "orders": lambda row, event, _: orders.fold(row, event),
    }
    for name, projection in PROJECTIONS.items():
        row = expected = None
        for position, event in enumerate(events, start=100):
            row = projection.fold(row, event, position)
            expected = folds[name](expected, event, position)
        assert row is not None
        assert row == expected
        assert set(row) == set(projection.issue_columns)
        values = dict(zip(projection.issue_columns, projection.record(row), strict=True))
        if name == "inbox":
            assert json.loads(values["evidence"]) == row["evidence"]
            values["evidence"] = row["evidence"]
            if sla_minutes is None:
                assert values["sla_minutes"] is None
            else:
                assert json.loads(values["sla_minutes"]) == sla_minutes == row["sla_minutes"]
                values["sla_minutes"] = row["sla_minutes"]
        assert values == row
