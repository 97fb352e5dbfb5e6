"""Rules as data (issue 15): verticals, declared event types and waiting rules in the rules
file, checked as a whole; events judged by what their vertical declares."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.ingest import InvalidEvent, validate
from app.rules_config import SHIPPED, RulesError, load, parse, version_of
from domain.detection import IssueSnapshot, plan
from domain.order import OrderEvent, fold
from domain.rules import evaluate
from domain.ruleset import COURIER_RULES

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
RULES = load(None)

PHARMACY = """
[vertical.pharmacy]
extra_rules = ["check"]
[vertical.pharmacy.events]
submitted = { prescription_id = "text", urgent = "boolean?" }
approved = { pharmacist_id = "text" }
[waiting.check]
from = "submitted"
until = ["approved"]
tiers = [[10, "medium"], [20, "high"]]
evidence = ["prescription_id"]
"""


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def pharmacy_order(*steps: tuple[float, str, dict[str, Any]]) -> Any:
    events = [
        OrderEvent(f"e{n}", kind, "o1", at(minute), "pharmacy", "FI", "Helsinki", data)
        for n, (minute, kind, data) in enumerate(steps)
    ]
    return fold(events)


SUBMITTED = (2, "prescription_submitted", {"prescription_id": "rx-1"})
PLACED = (0, "order_placed", {"promised_delivery_at": at(60)})
ACCEPTED: tuple[float, str, dict[str, Any]] = (1, "venue_accepted", {})


def check(state: Any, minutes: float) -> Any:
    rules = RULES.rules_for("pharmacy", "FI")
    return evaluate(state, at(minutes), rules).get("prescription_check_pending")


@pytest.mark.parametrize(
    ("minutes", "severity"), [(11.99, None), (12, "medium"), (22, "high"), (32, "critical")]
)
def test_the_pharmacys_declared_rule_counts_minutes_since_the_prescription(
    minutes: float, severity: str | None
) -> None:
    found = check(pharmacy_order(PLACED, ACCEPTED, SUBMITTED), minutes)
    assert found is not None
    assert found.severity == severity
    if severity:
        assert found.evidence["prescription_id"] == "rx-1"
        assert found.evidence["waiting_for"] == "prescription_approved or prescription_rejected"
        assert found.tier in (10, 20, 30)


def test_the_declared_rule_wakes_at_its_next_tier() -> None:
    found = check(pharmacy_order(PLACED, ACCEPTED, SUBMITTED), 13)
    assert found.recheck_at == at(22)
    assert check(pharmacy_order(PLACED, ACCEPTED, SUBMITTED), 5).recheck_at == at(12)


def test_the_declared_rule_clears_at_its_until_event_or_the_orders_end() -> None:
    approved = (15, "prescription_approved", {"prescription_id": "rx-1", "pharmacist_id": "p"})
    assert not check(pharmacy_order(PLACED, ACCEPTED, SUBMITTED, approved), 40).holds
    delivered: tuple[float, str, dict[str, Any]] = (15, "order_delivered", {})
    assert not check(pharmacy_order(PLACED, ACCEPTED, SUBMITTED, delivered), 40).holds
    # A prescription submitted again after an approval waits again.
    again = (20, "prescription_submitted", {"prescription_id": "rx-2"})
    found = check(pharmacy_order(PLACED, ACCEPTED, SUBMITTED, approved, again), 31)
    assert found.severity == "medium"
    assert found.evidence["prescription_id"] == "rx-2"


def test_a_declared_rules_issue_resolves_as_soon_as_it_clears() -> None:
    """Its until event cannot be undone: no clear-for moment (no flapping possible)."""
    approved = (15, "prescription_approved", {"prescription_id": "rx-1", "pharmacist_id": "p"})
    state = pharmacy_order(PLACED, ACCEPTED, SUBMITTED, approved)
    rules = RULES.rules_for("pharmacy", "FI")
    decided = plan(
        state,
        evaluate(state, at(15), rules),
        {"prescription_check_pending": IssueSnapshot("open", "medium")},
        {},
        at(15),
        RULES.clear_for,
        rules.clear_for,
        settled=rules.settled,
    )
    assert [(a.kind, a.op) for a in decided.actions] == [("prescription_check_pending", "resolve")]


def test_the_own_staff_vertical_applies_no_courier_rule() -> None:
    florist = RULES.rules_for("florist", "FI")
    assert not set(florist.tiers) & COURIER_RULES
    assert {"venue_acceptance_delayed", "delivery_overdue", "eta_slipped"} <= set(florist.tiers)
    assert set(RULES.rules_for("restaurant", "FI").tiers) >= COURIER_RULES
    assert "prescription_check_pending" not in RULES.rules_for("restaurant", "FI").tiers


def test_the_shipped_file_declares_six_verticals_and_its_version_is_its_hash() -> None:
    assert set(RULES.verticals) == {
        "restaurant",
        "grocery",
        "retail",
        "parcel",
        "pharmacy",
        "florist",
    }
    assert RULES.version == version_of(SHIPPED.read_text())
    assert parse(SHIPPED.read_text() + "\n# a comment\n").version != RULES.version
    assert RULES.verticals["parcel"].courier_due == "accepted"
    assert RULES.sla("pharmacy", "high") == timedelta(minutes=10)
    assert RULES.sla("restaurant", "high") == timedelta(minutes=15)


def test_a_few_lines_of_toml_declare_a_vertical_its_events_and_its_rule() -> None:
    rules = parse(PHARMACY)
    assert "check" in rules.kinds
    # No [defaults] here: a built-in rule with no tiers anywhere is off.
    assert set(rules.rules_for("pharmacy", "FI").tiers) == {"check"}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (PHARMACY.replace('until = ["approved"]', 'until = ["aproved"]'), "waits on 'aproved'"),
        (PHARMACY.replace('from = "submitted"', 'from = "sent"'), "waits on 'sent' (from)"),
        (PHARMACY.replace('until = ["approved"]', "until = []"), "waiting.check.until"),
        (
            PHARMACY.replace('evidence = ["prescription_id"]', 'evidence = ["rx"]'),
            "waiting.check.evidence: 'rx' is not a field of submitted",
        ),
        (PHARMACY.replace("[waiting.check]", "[waiting.order_stale]"), "is a built-in rule"),
        (
            PHARMACY.replace('until = ["approved"]', 'until = ["approved", "submitted"]'),
            "waiting.check.until: holds 'submitted', its own from",
        ),
        (
            PHARMACY.replace('from = "submitted"', 'from = "order_ready"'),
            "waiting.check.evidence: names fields of a declared event; 'order_ready' is a built",
        ),
        (
            PHARMACY.replace('urgent = "boolean?"', 'urgent = "bool"'),
            "vertical.pharmacy.events.submitted.fields.urgent: must be one of",
        ),
        (
            PHARMACY.replace("submitted = {", "order_ready = {"),
            "vertical.pharmacy.events.order_ready: is a built-in event type",
        ),
        (
            PHARMACY.replace('[[10, "medium"], [20, "high"]]', '[[10, "high"], [20, "medium"]]'),
            "waiting.check: a later tier cannot lower the severity",
        ),
        (
            PHARMACY.replace('extra_rules = ["check"]', 'extra_rules = ["chek"]'),
            "vertical.pharmacy.rules: unknown rule 'chek'",
        ),
        (PHARMACY.replace("[vertical.pharmacy]", "[vertical.pharmacy]\nsurge = 2"), "surge"),
        # Numbers a datetime cannot take, or that no comparison orders: refused, not a
        # detector that fails on every order once a reload makes them live.
        (PHARMACY.replace("[[10, ", "[[nan, "), "waiting.check: must be a finite number"),
        (PHARMACY.replace("[20, ", "[inf, "), "waiting.check: must be a finite number"),
        (PHARMACY.replace("[20, ", "[1e10, "), "waiting.check: must be at most"),
        (
            "[vertical.x]\n[detector]\nclear_for_seconds = nan",
            "clear_for_seconds: must be a finite",
        ),
        ("[vertical.x]\npreparation_minutes = inf", "vertical.x.preparation_minutes: must be a"),
        ("[vertical.x]\nsla_minutes = { high = 1e12 }", "vertical.x.sla_minutes.high: must be at"),
        ("[vertical.x]\n[clear]\norder_stale = { margin = nan }", "clear.order_stale.margin"),
        ("a = " + "[" * 5000 + "]" * 5000, "nested too deeply"),
    ],
)
def test_a_bad_declaration_names_its_table_and_key(text: str, says: str) -> None:
    with pytest.raises(RulesError, match=says.replace("(", r"\(").replace(")", r"\)")):
        parse(text)


def raw(**overrides: Any) -> dict[str, Any]:
    return {
        "event_id": "e-1",
        "type": "prescription_submitted",
        "order_id": "o-1",
        "occurred_at": "2026-11-25T12:00:00Z",
        "vertical": "pharmacy",
        "country": "FI",
        "city": "Helsinki",
        "data": {"prescription_id": "rx-1"},
    } | overrides


def test_a_declared_event_is_validated_and_folded_into_the_facts() -> None:
    event = validate(raw(data={"prescription_id": "rx-1", "controlled_substance": True}), RULES)
    assert event.data == {"prescription_id": "rx-1", "controlled_substance": True}
    state = fold([event])
    assert state is not None
    assert state.facts["prescription_submitted"]["prescription_id"] == "rx-1"
    assert state.seen["prescription_submitted"] == T0
    # The optional field may be left out.
    assert validate(raw(), RULES).data == {"prescription_id": "rx-1", "controlled_substance": None}


@pytest.mark.parametrize(
    ("overrides", "field", "says"),
    [
        ({"vertical": "spaceship"}, "vertical", "vertical 'spaceship' is not declared"),
        ({"vertical": "Space ship"}, "vertical", "Expected `str` matching"),
        ({"vertical": "restaurant"}, "type", "'prescription_submitted' is neither built in"),
        ({"type": "prescription_lost"}, "type", "nor declared by vertical 'pharmacy'"),
        ({"data": {}}, "data.prescription_id", "missing required field"),
        ({"data": {"prescription_id": 7}}, "data.prescription_id", "Expected `str`"),
        ({"data": {"prescription_id": "rx\x00"}}, "data.prescription_id", "NUL"),
        ({"data": {"prescription_id": "x" * 1001}}, "data.prescription_id", "length <= 1000"),
        (
            {"data": {"prescription_id": "rx", "colour": "red"}},
            "data.colour",
            "unknown field `colour`",
        ),
    ],
)
def test_an_event_its_vertical_does_not_declare_is_refused_naming_the_field(
    overrides: dict[str, Any], field: str, says: str
) -> None:
    with pytest.raises(InvalidEvent, match=says) as refused:
        validate(raw(**overrides), RULES)
    assert refused.value.field == field


def test_a_declared_time_is_kept_as_json_has_it() -> None:
    """Declared data goes into facts and evidence (jsonb, the watch row): as text, the
    same whether the state was folded now or read back."""
    rules = parse(PHARMACY.replace('urgent = "boolean?"', 'expires_at = "time"'))
    event = validate(
        raw(
            vertical="pharmacy",
            type="submitted",
            data={"prescription_id": "rx", "expires_at": "2026-11-25T13:00:00+00:00"},
        ),
        rules,
    )
    assert event.data == {"prescription_id": "rx", "expires_at": "2026-11-25T13:00:00Z"}
    with pytest.raises(InvalidEvent, match=r"data\.expires_at"):
        validate(raw(type="submitted", data={"prescription_id": "r", "expires_at": "soon"}), rules)


def test_a_stored_event_stays_readable_when_the_rules_no_longer_declare_it() -> None:
    """An order's history never becomes unreadable by a change of the rules file."""
    stored = validate(raw(vertical="gone", type="gone_event", data={"x": 1}), None)
    assert (stored.vertical, stored.type, stored.data) == ("gone", "gone_event", {"x": 1})
    assert RULES.rules_for("gone", "FI").tiers == {}
