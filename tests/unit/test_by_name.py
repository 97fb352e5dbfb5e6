"""The acting agent's name (``by_name``, the token's ``name`` claim) on every issue event:
carried from the command to the event, the history and the published payload; bounded
like ``by``; and None in events stored before it was recorded, which still decode."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent

from app.commands import (
    Acknowledge,
    AddNote,
    Assign,
    Command,
    Detect,
    Escalate,
    Reopen,
    Report,
    Resolve,
    Snooze,
    TakeAction,
    Unassign,
    Wake,
)
from app.integration import IssueFacts, event_item, integration_event
from app.service import IssueApplication
from domain.errors import InvalidValue
from domain.issue import OrderIssue

AT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
NAME = "Ann Agent"


def _report(**overrides: Any) -> Report:
    fields: dict[str, Any] = {
        "actor": "ann",
        "actor_name": NAME,
        "order_id": "ord-1",
        "kind": "venue_acceptance_delayed",
        "severity": "medium",
        "vertical": "restaurant",
        "country": "FI",
        "city": "Helsinki",
        "evidence": {},
    }
    return Report(**(fields | overrides))


def _lifecycle() -> OrderIssue:
    issue = _report().create(AT)
    steps: list[Command] = [
        Escalate(issue_id=issue.id, actor="ann", actor_name=NAME, severity="high", evidence={}),
        Assign(issue_id=issue.id, actor="ann", actor_name=NAME, assignee="bob"),
        Unassign(issue_id=issue.id, actor="ann", actor_name=NAME),
        Acknowledge(issue_id=issue.id, actor="ann", actor_name=NAME),
        AddNote(issue_id=issue.id, actor="ann", actor_name=NAME, text="called"),
        TakeAction(
            issue_id=issue.id, actor="ann", actor_name=NAME, action="contact_venue", details={}
        ),
        Snooze(issue_id=issue.id, actor="ann", actor_name=NAME, until=AT + timedelta(hours=1)),
        Wake(issue_id=issue.id, actor="ann", actor_name=NAME),
        Resolve(issue_id=issue.id, actor="ann", actor_name=NAME, resolution="fixed", note=""),
        Reopen(issue_id=issue.id, actor="ann", actor_name=NAME, reason="again"),
    ]
    for n, step in enumerate(steps, start=1):
        assert not isinstance(step, Report | Detect)
        step.apply(issue, AT + timedelta(minutes=n))
    return issue


def test_every_event_records_the_name_of_its_actor() -> None:
    issue = _lifecycle()
    events = issue.collect_events()
    assert len(events) == 11
    assert {(e.by, e.by_name) for e in events} == {("ann", NAME)}  # type: ignore[attr-defined]
    items = [event_item(n, e) for n, e in enumerate(events, start=1)]
    assert {item.data["by_name"] for item in items} == {NAME}
    assert issue.notes[0]["by_name"] == issue.actions[0]["by_name"] == NAME


def test_the_system_and_a_nameless_token_record_none() -> None:
    issue = _report(actor="system", actor_name=None).create(AT)
    Acknowledge(issue_id=issue.id, actor="ann").apply(issue, AT)  # a token without a name
    Snooze(issue_id=issue.id, actor="ann", until=AT + timedelta(hours=1)).apply(issue, AT)
    Wake(issue_id=issue.id, actor="system").apply(issue, AT)  # the waker names no one
    events = issue.collect_events()
    assert [e.by_name for e in events] == [None] * 4  # type: ignore[attr-defined]
    assert [event_item(1, e).data["by_name"] for e in events] == [None] * 4


def test_the_published_payload_carries_the_name_as_actor_name() -> None:
    issue = _lifecycle()
    events = issue.collect_events()
    facts = IssueFacts.of(events[0])
    for event in events:
        _, payload = integration_event(event, facts)
        assert (payload.actor, payload.actor_name) == ("ann", NAME)


@pytest.mark.parametrize(
    ("name", "reason"),
    [("x" * 201, "at most 200"), ("Ann\x00", "")],
)
def test_a_name_is_bounded_like_the_actor(name: str, reason: str) -> None:
    with pytest.raises(InvalidValue) as raised:
        _report(actor_name=name).create(AT)
    assert raised.value.field == "by_name"
    assert reason in str(raised.value)
    issue = _report().create(AT)
    with pytest.raises(InvalidValue) as refused:
        AddNote(issue_id=issue.id, actor="ann", actor_name=name, text="x").apply(issue, AT)
    assert refused.value.field == "by_name"


def test_a_name_of_200_characters_is_kept() -> None:
    issue = _report(actor_name="n" * 200).create(AT)
    assert issue.collect_events()[0].by_name == "n" * 200  # type: ignore[attr-defined]


def _without_by_name(stored: StoredEvent) -> StoredEvent:
    """The event as it was stored before names were recorded: no ``by_name`` at all."""
    state = json.loads(stored.state)
    assert state.pop("by_name") == NAME
    old = json.dumps(state).encode()
    assert b"by_name" not in old
    return StoredEvent(stored.originator_id, stored.originator_version, stored.topic, old)


def test_an_event_stored_before_names_decodes_replays_and_shows_none() -> None:
    mapper = IssueApplication().mapper
    issue = _lifecycle()
    old = [_without_by_name(mapper.to_stored_event(e)) for e in issue.collect_events()]
    decoded = [mapper.to_domain_event(stored) for stored in old]
    replayed: OrderIssue | None = None
    for event in decoded:
        replayed = event.mutate(replayed)  # type: ignore[attr-defined]
    assert replayed is not None
    assert (replayed.version, replayed.status, replayed.reopen_count) == (11, "open", 1)
    assert replayed.notes[0]["by"] == "ann"
    assert replayed.notes[0]["by_name"] is None
    items = [event_item(n, e) for n, e in enumerate(decoded, start=1)]
    assert {(item.data["by"], item.data["by_name"]) for item in items} == {("ann", None)}
    facts = IssueFacts.of(decoded[0])
    assert {integration_event(e, facts)[1].actor_name for e in decoded} == {None}
