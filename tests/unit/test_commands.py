"""The named commands (app/commands.py): each one applies the aggregate command it names,
with its actor as ``by``, and the raising ones derive the issue id from (order, kind)."""

from __future__ import annotations

import dataclasses
import typing
from datetime import UTC, datetime, timedelta

import pytest

from app import commands
from app.commands import (
    Acknowledge,
    AddNote,
    Assign,
    Command,
    Detect,
    Escalate,
    Reopen,
    Report,
    Request,
    Resolve,
    Snooze,
    TakeAction,
    Unassign,
    Wake,
)
from domain.issue import OrderIssue, issue_id_for

AT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _raise(kind: type[Report | Detect], actor: str) -> Report | Detect:
    return kind(
        actor=actor,
        order_id="ord-1",
        kind="venue_acceptance_delayed",
        severity="medium",
        vertical="restaurant",
        country="FI",
        city="Helsinki",
        evidence={"minutes_waiting": 5},
    )


def _issue() -> OrderIssue:
    return _raise(Detect, "system").create(AT)


@pytest.mark.parametrize(("kind", "name"), [(Report, "report"), (Detect, "detect")])
def test_a_raising_command_creates_the_issue_of_its_order_and_kind(
    kind: type[Report | Detect], name: str
) -> None:
    command = _raise(kind, "ann")
    issue = command.create(AT)
    assert command.name == name
    assert command.issue_id == issue.id == issue_id_for("ord-1", "venue_acceptance_delayed")
    assert (issue.status, issue.severity, issue.detected_at) == ("open", "medium", AT)
    assert issue.pending_events[-1].by == "ann"  # type: ignore[attr-defined]


def test_each_change_applies_its_aggregate_command_as_its_actor() -> None:
    issue = _issue()
    steps: list[Command] = [
        Escalate(issue_id=issue.id, actor="lead", severity="high", evidence={"why": "late"}),
        Assign(issue_id=issue.id, actor="lead", assignee="bob"),
        Unassign(issue_id=issue.id, actor="lead"),
        Acknowledge(issue_id=issue.id, actor="bob"),
        AddNote(issue_id=issue.id, actor="bob", text="called the venue"),
        TakeAction(issue_id=issue.id, actor="bob", action="contact_venue", details={"a": 1}),
        Snooze(issue_id=issue.id, actor="bob", until=AT + timedelta(hours=1)),
        Wake(issue_id=issue.id, actor="system"),
        Resolve(issue_id=issue.id, actor="bob", resolution="fixed", note="done"),
        Reopen(issue_id=issue.id, actor="eve", reason="again"),
    ]
    for n, step in enumerate(steps, start=1):
        assert not isinstance(step, Report | Detect)
        step.apply(issue, AT + timedelta(minutes=n))
        assert issue.pending_events[-1].by == step.actor  # type: ignore[attr-defined]
    names = [type(e).__name__ for e in issue.pending_events[1:]]
    assert names == [
        "Escalated",
        "Assigned",
        "Unassigned",
        "Acknowledged",
        "NoteAdded",
        "ActionTaken",
        "Snoozed",
        "Woken",
        "Resolved",
        "Reopened",
    ]
    assert (issue.status, issue.severity, issue.reopen_count) == ("open", "high", 1)


def test_a_system_resolve_says_so() -> None:
    issue = _issue()
    Resolve(
        issue_id=issue.id, actor="system", resolution="fixed", note="cleared", resolved_by="system"
    ).apply(issue, AT)
    assert (issue.resolved_by, issue.resolution) == ("system", "fixed")


def test_commands_are_data_a_key_is_added_to() -> None:
    note = AddNote(issue_id=_issue().id, actor="ann", text="x", expected_version=3)
    keyed = dataclasses.replace(note, request=Request("k", "f"))
    assert keyed == AddNote(
        issue_id=note.issue_id, actor="ann", text="x", expected_version=3, request=Request("k", "f")
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        keyed.text = "y"  # type: ignore[misc]


def test_the_union_names_every_command_once() -> None:
    members = typing.get_args(Command)
    public = {
        value
        for name, value in vars(commands).items()
        if isinstance(value, type) and not name.startswith("_") and hasattr(value, "name")
    }
    assert set(members) == public
    assert len({m.name for m in members}) == len(members)
