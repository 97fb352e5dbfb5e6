"""What the detector's issue events record of the rules behind them (the rule, its tier,
the rules version, why), and the SLA minutes of the order's vertical that ``due_at``
counts from: on the aggregate, in the history, in the published payloads, and for events
stored before either was recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from app import rules_config
from app.commands import Detect, Escalate, Resolve
from app.detection import Detector
from app.ingest import validate
from app.integration import IssueFacts, event_item, integration_event
from app.rules_source import RulesSource
from domain.detection import IssueSnapshot, plan
from domain.errors import InvalidValue
from domain.issue import (
    SLA_BY_SEVERITY,
    OrderIssue,
    check_rule,
    check_sla_minutes,
    due_at,
    fired_rule,
    issue_id_for,
)
from domain.order import OrderEvent, OrderState
from domain.rules import Check
from domain.ruleset import RuleSet
from tests.unit.fakes import FakeDeadLetters, FakeIssues, FakeWatchStore, SetClock

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
RULES: RuleSet = rules_config.load(None)
PENDING = "prescription_check_pending"
PHARMACY_SLA = {"low": 30.0, "medium": 15.0, "high": 10.0, "critical": 5.0}


def ev(order_id: str, kind: str, minute: float, vertical: str, **data: Any) -> OrderEvent:
    return validate(
        {
            "event_id": f"{order_id}-{kind}-{minute}",
            "type": kind,
            "order_id": order_id,
            "occurred_at": (T0 + timedelta(minutes=minute)).isoformat(),
            "vertical": vertical,
            "country": "FI",
            "city": "Helsinki",
            "data": data,
        },
        RULES,
    )


def pharmacy_order(order_id: str) -> list[OrderEvent]:
    """Placed, accepted with a ready estimate and a courier at once, its prescription
    submitted: only the prescription check can hold."""
    return [
        ev(
            order_id,
            "order_placed",
            0,
            "pharmacy",
            venue_id="v",
            customer_id="c",
            promised_delivery_at=(T0 + timedelta(minutes=60)).isoformat(),
            amount=900,
            currency="EUR",
        ),
        ev(
            order_id,
            "venue_accepted",
            0.5,
            "pharmacy",
            estimated_ready_at=(T0 + timedelta(minutes=40)).isoformat(),
        ),
        ev(order_id, "courier_assigned", 0.6, "pharmacy", courier_id="k1"),
        ev(order_id, "prescription_submitted", 1, "pharmacy", prescription_id="rx-1"),
    ]


@pytest.fixture
def clock() -> SetClock:
    return SetClock(T0)


@pytest.fixture
def issues(clock: SetClock) -> FakeIssues:
    return FakeIssues(now=clock.now)


@pytest.fixture
def detector(issues: FakeIssues, clock: SetClock) -> Detector:
    return Detector(
        store=FakeWatchStore(issue_versions=issues.versions),
        dead_letters=FakeDeadLetters(),
        issues=issues,
        rules=RulesSource(RULES),
        clock=clock,
    )


def sent(issues: FakeIssues, kind: str) -> list[Any]:
    return [c for save in issues.saves for c in save if c.issue_id == issue_id_for("rx", kind)]


async def test_a_declared_rule_records_its_tier_and_the_rules_version_on_each_event(
    detector: Detector, issues: FakeIssues, clock: SetClock
) -> None:
    clock.at = T0 + timedelta(minutes=11.5)  # 10.5 minutes since the prescription came
    await detector.ingest(pharmacy_order("rx"))
    clock.at = T0 + timedelta(minutes=21.5)
    assert await detector.fire_due() == 1
    await detector.ingest([ev("rx", "prescription_approved", 21.5, "pharmacy", **_approved())])
    detect, escalate, resolve = sent(issues, PENDING)
    assert isinstance(detect, Detect)
    assert detect.rule == {
        "version": RULES.version,
        "name": PENDING,
        "tier": {"threshold": 10.0, "severity": "medium"},
        "reason": "the condition reached the medium tier (threshold 10)",
    }
    assert detect.sla_minutes == PHARMACY_SLA
    assert isinstance(escalate, Escalate)
    assert escalate.rule == {
        "version": RULES.version,
        "name": PENDING,
        "tier": {"threshold": 20.0, "severity": "high"},
        "reason": "the condition worsened to the high tier (threshold 20)",
    }
    assert isinstance(resolve, Resolve)
    assert resolve.resolved_by == "system"
    assert resolve.rule == {
        "version": RULES.version,
        "name": PENDING,
        "tier": None,
        "reason": "the condition cleared",
    }
    touched = {c.issue_id for save in issues.saves for c in save}
    assert touched == {issue_id_for("rx", PENDING)}, "only the prescription check held"
    issue = issues.issues[issue_id_for("rx", PENDING)]
    # High since the escalation: the pharmacy's 10 minutes from detection, not 15.
    assert issue.due_at == issue.detected_at + timedelta(minutes=10)


def _approved() -> dict[str, str]:
    return {"prescription_id": "rx-1", "pharmacist_id": "ph-1"}


async def test_a_customer_contact_escalates_with_its_own_reason_and_no_tier(
    detector: Detector, issues: FakeIssues, clock: SetClock
) -> None:
    clock.at = T0 + timedelta(minutes=11.5)
    await detector.ingest(pharmacy_order("rx"))
    contact = ev("rx", "customer_contacted_support", 11.5, "pharmacy", channel="phone")
    await detector.ingest([contact])
    escalate = sent(issues, PENDING)[-1]
    assert isinstance(escalate, Escalate)
    assert escalate.severity == "high"
    assert escalate.rule == {
        "version": RULES.version,
        "name": PENDING,
        "tier": None,
        "reason": "customer contacted support",
    }


async def test_an_order_that_ends_resolves_saying_so(
    detector: Detector, issues: FakeIssues, clock: SetClock
) -> None:
    clock.at = T0 + timedelta(minutes=11.5)
    await detector.ingest(pharmacy_order("rx"))
    await detector.ingest([ev("rx", "order_cancelled", 11.5, "pharmacy", reason="x", by="venue")])
    resolve = sent(issues, PENDING)[-1]
    assert isinstance(resolve, Resolve)
    assert resolve.rule is not None
    assert (resolve.rule["tier"], resolve.rule["reason"]) == (None, "the order was cancelled")


def test_a_reopen_carries_the_tier_of_the_condition_that_recurred() -> None:
    order = OrderState("o1", "restaurant", "FI", "Helsinki", placed_at=T0)
    checks = {"order_stale": Check("high", {"minutes": 95}, tier=90.0)}
    resolved = {"order_stale": IssueSnapshot("resolved", "medium", "system")}
    reopen, escalate = plan(order, checks, resolved, {}, T0, timedelta(seconds=60)).actions
    assert (reopen.op, reopen.severity, reopen.tier) == ("reopen", "high", 90.0)
    assert (escalate.op, escalate.tier) == ("escalate", 90.0)


# ---- the aggregate, the history, the payloads ------------------------------------------


def detected(**extra: Any) -> OrderIssue:
    return OrderIssue.detect(
        order_id="o1",
        kind="order_stale",
        severity="medium",
        vertical="pharmacy",
        country="FI",
        city="Helsinki",
        evidence={},
        at=T0,
        **extra,
    )


RULE = fired_rule("9cc5ab", "order_stale", "reached", threshold=45, severity="medium")


def test_each_event_the_detector_causes_keeps_its_rule_in_history_and_payload() -> None:
    issue = detected(rule=RULE, sla_minutes=PHARMACY_SLA)
    later = T0 + timedelta(minutes=1)
    high = fired_rule("9cc5ab", "order_stale", "worse", threshold=90, severity="high")
    issue.escalate(severity="high", evidence={}, at=later, by="system", rule=high)
    cleared = fired_rule("9cc5ab", "order_stale", "the condition cleared")
    issue.resolve(
        resolution="fixed", note="", at=later, by="system", resolved_by="system", rule=cleared
    )
    again = fired_rule(
        "9cc5ab", "order_stale", "the condition recurred", threshold=90, severity="high"
    )
    issue.reopen(reason="the condition recurred", at=later, by="system", rule=again)
    issue.resolve(resolution="false_positive", note="", at=later, by="ann")  # an agent's: none
    events = issue.collect_events()
    facts = IssueFacts.of(events[0])
    shown = [event_item(n, e).data["rule"] for n, e in enumerate(events, start=1)]
    assert shown == [RULE, high, cleared, again, None]
    published = [msgspec.to_builtins(integration_event(e, facts)[1])["rule"] for e in events]
    assert published == shown
    first = msgspec.to_builtins(integration_event(events[0], facts)[1])
    assert first["sla_minutes"] == PHARMACY_SLA
    assert first["rule"]["tier"] == {"threshold": 45.0, "severity": "medium"}


def test_events_stored_before_rules_and_slas_were_recorded_replay_unchanged() -> None:
    events = detected().collect_events()
    for key in ("rule", "sla_minutes"):  # as a Detected event stored before them
        del vars(events[0])[key]
    replayed: OrderIssue | None = None
    replayed = events[0].mutate(replayed)
    assert replayed is not None
    assert replayed.sla_minutes is None
    assert replayed.due_at == T0 + SLA_BY_SEVERITY["medium"]
    data = event_item(1, events[0]).data
    assert (data["rule"], data["sla_minutes"]) == (None, None)
    payload = integration_event(events[0], IssueFacts.of(events[0]))[1]
    assert msgspec.to_builtins(payload)["rule"] is None
    assert msgspec.to_builtins(payload)["sla_minutes"] is None


@pytest.mark.parametrize(
    ("vertical", "severity", "minutes"),
    [
        ("pharmacy", "high", 10),
        ("pharmacy", "medium", 15),
        ("restaurant", "high", 15),
        ("restaurant", "critical", 5),
        ("florist", "low", 60),
    ],
)
def test_due_at_follows_the_sla_minutes_of_the_vertical(
    vertical: str, severity: str, minutes: float
) -> None:
    sla = {s: RULES.sla(vertical, s).total_seconds() / 60 for s in PHARMACY_SLA}
    assert due_at(T0, severity, sla) == T0 + timedelta(minutes=minutes)
    assert RULES.sla(vertical, severity) == timedelta(minutes=minutes)


def test_an_issue_raised_by_hand_is_due_by_the_fixed_table() -> None:
    issue = detected()
    assert issue.sla_minutes is None
    assert issue.due_at == T0 + timedelta(minutes=30)
    assert detected(sla_minutes=PHARMACY_SLA).due_at == T0 + timedelta(minutes=15)


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"name": "x"}, "rule"),
        ({**RULE, "version": ""}, "rule.version"),
        ({**RULE, "name": "Not A Name"}, "rule.name"),
        ({**RULE, "reason": ""}, "rule.reason"),
        ({**RULE, "tier": {"threshold": 1}}, "rule.tier"),
        ({**RULE, "tier": {"threshold": "10", "severity": "low"}}, "rule.tier.threshold"),
        ({**RULE, "tier": {"threshold": float("inf"), "severity": "low"}}, "rule.tier.threshold"),
        ({**RULE, "tier": {"threshold": 1, "severity": "dire"}}, "rule.tier.severity"),
    ],
)
def test_a_malformed_rule_record_is_refused_naming_the_key(
    rule: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidValue) as refused:
        check_rule(rule)
    assert refused.value.field == field
    with pytest.raises(InvalidValue):
        detected(rule=rule)


@pytest.mark.parametrize(
    ("sla", "field"),
    [
        ({"low": 1}, "sla_minutes"),
        ({**PHARMACY_SLA, "high": 0}, "sla_minutes.high"),
        ({**PHARMACY_SLA, "low": float("nan")}, "sla_minutes.low"),
        ({**PHARMACY_SLA, "critical": True}, "sla_minutes.critical"),
    ],
)
def test_malformed_sla_minutes_are_refused_naming_the_severity(
    sla: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidValue) as refused:
        check_sla_minutes(sla)
    assert refused.value.field == field
