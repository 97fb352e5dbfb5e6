"""The detector's decisions: raise, escalate, reopen, resolve, without flapping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.detection import _chunks, _Visit
from domain.detection import Action, IssueSnapshot, contact_escalations, plan
from domain.order import OrderState
from domain.rules import Check

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
CLEAR_FOR = timedelta(seconds=60)
ORDER = OrderState("o1", "restaurant", "FI", "Helsinki", placed_at=NOW)
DONE = OrderState("o1", "restaurant", "FI", "Helsinki", placed_at=NOW, delivered_at=NOW)
HOLDS = {"order_stale": Check("high", {"minutes": 50})}
CLEAR = {"order_stale": Check()}


def ops(result: object) -> list[tuple[str, str]]:
    return [(a.kind, a.op) for a in result.actions]  # type: ignore[attr-defined]


def test_a_new_condition_raises_an_issue() -> None:
    assert ops(plan(ORDER, HOLDS, {}, {}, NOW, CLEAR_FOR)) == [("order_stale", "detect")]


def test_a_worse_condition_escalates_and_an_equal_one_does_nothing() -> None:
    medium = {"order_stale": IssueSnapshot("open", "medium")}
    high = {"order_stale": IssueSnapshot("acknowledged", "high")}
    assert ops(plan(ORDER, HOLDS, medium, {}, NOW, CLEAR_FOR)) == [("order_stale", "escalate")]
    assert ops(plan(ORDER, HOLDS, high, {}, NOW, CLEAR_FOR)) == []


def test_a_resolved_issue_whose_condition_recurs_is_reopened_not_duplicated() -> None:
    resolved = {"order_stale": IssueSnapshot("resolved", "high", "system")}
    assert ops(plan(ORDER, HOLDS, resolved, {}, NOW, CLEAR_FOR)) == [("order_stale", "reopen")]


def test_a_cleared_condition_resolves_only_after_staying_clear() -> None:
    issue = {"order_stale": IssueSnapshot("open", "high")}
    first = plan(ORDER, CLEAR, issue, {}, NOW, CLEAR_FOR)
    assert ops(first) == []
    assert first.clear_since == {"order_stale": NOW}
    assert first.recheck_at == NOW + CLEAR_FOR
    almost = plan(ORDER, CLEAR, issue, first.clear_since, NOW + timedelta(seconds=59), CLEAR_FOR)
    assert ops(almost) == []
    later = plan(ORDER, CLEAR, issue, first.clear_since, NOW + CLEAR_FOR, CLEAR_FOR)
    assert ops(later) == [("order_stale", "resolve")]


def test_a_condition_that_cleared_long_ago_in_order_time_resolves_at_once() -> None:
    """The facts that clear it happened ten minutes ago (they arrived late, or in a
    burst after a backlog): the clear-for moment is measured from them, in order time."""
    issue = {"order_stale": IssueSnapshot("open", "high")}
    late = OrderState("o1", "restaurant", "FI", "Helsinki", placed_at=NOW, last_event_at=NOW)
    later = NOW + timedelta(minutes=10)
    assert ops(plan(late, CLEAR, issue, {}, later, CLEAR_FOR)) == [("order_stale", "resolve")]
    # Facts that just happened wait out the moment, as before.
    live = plan(late, CLEAR, issue, {}, NOW + timedelta(seconds=1), CLEAR_FOR)
    assert ops(live) == []
    assert live.clear_since == {"order_stale": NOW}


def test_a_condition_back_before_the_moment_passed_keeps_the_issue() -> None:
    issue = {"order_stale": IssueSnapshot("open", "high")}
    back = plan(ORDER, HOLDS, issue, {"order_stale": NOW}, NOW + timedelta(seconds=30), CLEAR_FOR)
    assert ops(back) == []
    assert back.clear_since == {}


def test_a_finished_order_resolves_every_open_issue_at_once() -> None:
    issues = {
        "order_stale": IssueSnapshot("open", "high"),
        "eta_slipped": IssueSnapshot("snoozed", "low"),
        "payment_failed": IssueSnapshot("resolved", "high"),
    }
    result = plan(DONE, HOLDS, issues, {}, NOW, CLEAR_FOR)
    assert ops(result) == [("eta_slipped", "resolve"), ("order_stale", "resolve")]
    assert "delivered" in result.actions[0].reason


def test_a_contact_escalates_open_issues_one_level() -> None:
    issues = {
        "order_stale": IssueSnapshot("open", "medium"),
        "eta_slipped": IssueSnapshot("open", "critical"),
        "payment_failed": IssueSnapshot("resolved", "low"),
    }
    actions = contact_escalations(issues, ["c1"])
    assert [(a.kind, a.severity) for a in actions] == [("order_stale", "high")]
    assert actions[0].evidence["customer_contacts"] == ["c1"]
    assert contact_escalations({}, ["c1"]) == []


def test_a_contact_already_counted_raises_nothing_again() -> None:
    """Redelivered after a crash that came between the escalation and the watch row."""
    counted = IssueSnapshot("open", "high", contacts=frozenset({"c1"}))
    assert contact_escalations({"order_stale": counted}, ["c1"]) == []
    (again,) = contact_escalations({"order_stale": counted}, ["c1", "c2"])
    assert (again.severity, again.evidence["customer_contacts"]) == ("critical", ["c1", "c2"])


def test_contacts_raise_from_the_planned_severity_and_skip_closing_issues() -> None:
    issues = {
        "order_stale": IssueSnapshot("open", "low"),
        "eta_slipped": IssueSnapshot("open", "low"),
    }
    planned = [
        Action("order_stale", "escalate", "high"),
        Action("eta_slipped", "resolve", reason="the condition cleared"),
    ]
    (action,) = contact_escalations(issues, ["c1", "c2"], planned)
    assert (action.kind, action.severity) == ("order_stale", "critical")


def test_an_issue_an_agent_resolved_stays_resolved_while_the_condition_holds() -> None:
    by_agent = {"order_stale": IssueSnapshot("resolved", "high", "agent")}
    by_system = {"order_stale": IssueSnapshot("resolved", "high", "system")}
    assert ops(plan(ORDER, HOLDS, by_agent, {}, NOW, CLEAR_FOR)) == []
    assert ops(plan(ORDER, HOLDS, by_system, {}, NOW, CLEAR_FOR)) == [("order_stale", "reopen")]


def test_a_condition_that_cannot_come_back_resolves_at_once() -> None:
    issue = {"venue_acceptance_delayed": IssueSnapshot("open", "high")}
    cleared = {"venue_acceptance_delayed": Check()}
    assert ops(plan(ORDER, cleared, issue, {}, NOW, CLEAR_FOR)) == [
        ("venue_acceptance_delayed", "resolve")
    ]


def test_commands_are_cut_into_saves_only_between_orders() -> None:
    a, b, c = (_Visit(order_id=o, clear_since={}) for o in "abc")
    act = Action("order_stale", "escalate", "high")
    commands = [(a, act)] * 3 + [(b, act)] * 2 + [(c, act)] * 4
    chunks = _chunks(commands, 4)
    assert [[v.order_id for v, _ in chunk] for chunk in chunks] == [
        ["a", "a", "a"],
        ["b", "b"],
        ["c", "c", "c", "c"],
    ]
    assert _chunks(commands, 100) == [commands]


def test_a_lingering_condition_keeps_its_issue_open_and_raises_none() -> None:
    """Below the threshold, within the clear margin: an open issue is not counted as
    clear (its clear-for moment is dropped), and no new issue is raised."""
    lingers = {"eta_slipped": Check(lingers=True)}
    issue = {"eta_slipped": IssueSnapshot("open", "low")}
    kept = plan(ORDER, lingers, issue, {"eta_slipped": NOW}, NOW + CLEAR_FOR * 5, CLEAR_FOR)
    assert (ops(kept), kept.clear_since, kept.recheck_at) == ([], {}, None)
    assert ops(plan(ORDER, lingers, {}, {}, NOW, CLEAR_FOR)) == []
    finished = plan(DONE, lingers, issue, {}, NOW, CLEAR_FOR)
    assert ops(finished) == [("eta_slipped", "resolve")]


def test_a_kind_with_its_own_clear_window_waits_that_long() -> None:
    issue = {
        "eta_slipped": IssueSnapshot("open", "low"),
        "order_stale": IssueSnapshot("open", "high"),
    }
    clear = {"eta_slipped": Check(), "order_stale": Check()}
    windows = {"eta_slipped": timedelta(minutes=3)}
    first = plan(ORDER, clear, issue, {}, NOW, CLEAR_FOR, windows)
    assert first.recheck_at == NOW + CLEAR_FOR
    later = plan(ORDER, clear, issue, first.clear_since, NOW + CLEAR_FOR, CLEAR_FOR, windows)
    assert ops(later) == [("order_stale", "resolve")]
    assert later.recheck_at == NOW + timedelta(minutes=3)
    done = plan(
        ORDER, clear, issue, later.clear_since, NOW + timedelta(minutes=3), CLEAR_FOR, windows
    )
    assert ops(done)[0] == ("eta_slipped", "resolve")


def test_behind_on_the_stream_a_clear_condition_is_not_backdated_but_looked_at_soon() -> None:
    """A backlog may still hold an event that makes the condition hold again: counting
    from the facts would resolve, then reopen. Behind, the moment counts from now and the
    order is looked at again within seconds; caught up, the same facts resolve it."""
    issue = {"order_stale": IssueSnapshot("open", "high")}
    late = OrderState("o1", "restaurant", "FI", "Helsinki", placed_at=NOW, last_event_at=NOW)
    later = NOW + timedelta(minutes=10)
    behind = plan(late, CLEAR, issue, {}, later, CLEAR_FOR, backdate=False)
    assert ops(behind) == []
    assert behind.clear_since == {"order_stale": later}
    assert behind.recheck_at is not None
    assert behind.recheck_at <= later + timedelta(seconds=5)
    soon = later + timedelta(seconds=5)
    caught_up = plan(late, CLEAR, issue, behind.clear_since, soon, CLEAR_FOR)
    assert ops(caught_up) == [("order_stale", "resolve")]
