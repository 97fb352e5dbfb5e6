"""Detection rules: table-driven, boundaries included; thresholds and the rules file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.rules_config import RulesError, load, parse
from domain.order import OrderEvent, fold
from domain.rules import RULES, evaluate, next_check

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SHIPPED = load(None)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def order(*steps: tuple[float, str, dict[str, Any]], vertical: str = "restaurant") -> Any:
    events = [
        OrderEvent(f"e{n}", kind, "o1", at(minute), vertical, "FI", "Helsinki", data)
        for n, (minute, kind, data) in enumerate(steps)
    ]
    return fold(events)


PLACED = (0, "order_placed", {"promised_delivery_at": at(40)})
READY_AT_12 = {"estimated_ready_at": at(12)}

# (rule, order steps, minutes after T0 "now", expected severity or None)
CASES: list[tuple[str, tuple[Any, ...], float, str | None]] = [
    ("venue_acceptance_delayed", (PLACED,), 3.49, None),
    ("venue_acceptance_delayed", (PLACED,), 3.5, "medium"),
    ("venue_acceptance_delayed", (PLACED,), 5, "high"),
    ("venue_acceptance_delayed", (PLACED,), 60, "critical"),
    ("venue_acceptance_delayed", (PLACED, (1, "venue_accepted", {})), 60, None),
    ("venue_acceptance_delayed", (PLACED, (20, "order_cancelled", {})), 60, None),
    ("venue_rejected", (PLACED, (1, "venue_rejected", {"reason": "closed"})), 1, "high"),
    ("venue_rejected", (PLACED, (1, "venue_rejected", {})), 11, "critical"),
    ("venue_rejected", (PLACED, (1, "venue_rejected", {}), (2, "order_cancelled", {})), 3, None),
    # Due at acceptance + the typical preparation (15), raised 5 minutes past it.
    ("no_courier_assigned", (PLACED, (1, "venue_accepted", {})), 20.99, None),
    ("no_courier_assigned", (PLACED, (1, "venue_accepted", {})), 21, "medium"),
    # Due at the venue's estimated ready time.
    ("no_courier_assigned", (PLACED, (1, "venue_accepted", READY_AT_12)), 16.99, None),
    ("no_courier_assigned", (PLACED, (1, "venue_accepted", READY_AT_12)), 17, "medium"),
    ("no_courier_assigned", (PLACED, (1, "venue_accepted", READY_AT_12)), 27, "high"),
    (
        "no_courier_assigned",
        (PLACED, (1, "venue_accepted", {}), (5, "courier_assigned", {"courier_id": "c"})),
        40,
        None,
    ),
    ("courier_waiting_at_venue", (PLACED, (5, "courier_arrived_at_venue", {})), 14.9, None),
    ("courier_waiting_at_venue", (PLACED, (5, "courier_arrived_at_venue", {})), 15, "medium"),
    ("courier_waiting_at_venue", (PLACED, (5, "courier_arrived_at_venue", {})), 20, "high"),
    (
        "courier_waiting_at_venue",
        (PLACED, (5, "courier_arrived_at_venue", {}), (6, "order_picked_up", {})),
        30,
        None,
    ),
    ("ready_not_picked_up", (PLACED, (10, "order_ready", {})), 20, "medium"),
    ("ready_not_picked_up", (PLACED, (10, "order_ready", {})), 19.9, None),
    ("eta_slipped", (PLACED, (5, "eta_updated", {"estimated_delivery_at": at(40)})), 5, None),
    ("eta_slipped", (PLACED, (5, "eta_updated", {"estimated_delivery_at": at(44.9)})), 5, None),
    ("eta_slipped", (PLACED, (5, "eta_updated", {"estimated_delivery_at": at(45)})), 5, "low"),
    ("eta_slipped", (PLACED, (5, "eta_updated", {"estimated_delivery_at": at(50)})), 5, "low"),
    ("eta_slipped", (PLACED, (5, "eta_updated", {"estimated_delivery_at": at(51)})), 5, "medium"),
    ("eta_slipped", (PLACED, (5, "eta_updated", {"estimated_delivery_at": at(71)})), 5, "critical"),
    ("delivery_overdue", (PLACED,), 44.9, None),
    ("delivery_overdue", (PLACED,), 45, "low"),
    ("delivery_overdue", (PLACED,), 71, "critical"),
    ("delivery_overdue", (PLACED, (39, "order_delivered", {})), 90, None),
    (
        "courier_stationary",
        (
            PLACED,
            (20, "order_picked_up", {}),
            (21, "courier_location", {"lat": 60.17, "lon": 24.94}),
            (25, "courier_location", {"lat": 60.17001, "lon": 24.94}),
        ),
        28.9,
        None,
    ),
    (
        "courier_stationary",
        (
            PLACED,
            (20, "order_picked_up", {}),
            (21, "courier_location", {"lat": 60.17, "lon": 24.94}),
            (25, "courier_location", {"lat": 60.17001, "lon": 24.94}),
        ),
        29,
        "medium",
    ),
    (
        "courier_stationary",
        (
            PLACED,
            (20, "order_picked_up", {}),
            (21, "courier_location", {"lat": 60.17, "lon": 24.94}),
            (28, "courier_location", {"lat": 60.18, "lon": 24.94}),
        ),
        35,
        None,
    ),
    (
        "courier_reassigned_repeatedly",
        (
            PLACED,
            (2, "courier_unassigned", {}),
        ),
        3,
        None,
    ),
    (
        "courier_reassigned_repeatedly",
        (PLACED, (2, "courier_unassigned", {}), (3, "courier_unassigned", {})),
        3,
        "medium",
    ),
    ("payment_failed", (PLACED, (1, "payment_failed", {"reason": "declined"})), 1, "high"),
    ("order_stale", (PLACED, (1, "venue_accepted", {})), 45.9, None),
    ("order_stale", (PLACED, (1, "venue_accepted", {})), 46, "medium"),
    (
        "order_stale",
        (
            PLACED,
            (1, "venue_accepted", {}),
            (30, "customer_contacted_support", {"channel": "chat"}),
        ),
        46,
        "medium",
    ),
]


@pytest.mark.parametrize(("rule", "steps", "now", "expected"), CASES)
def test_rule(rule: str, steps: tuple[Any, ...], now: float, expected: str | None) -> None:
    state = order(*steps)
    rules = SHIPPED.rules_for(state.vertical, state.country)
    check = RULES[rule](state, at(now), rules.tiers[rule], rules.tuning)
    assert check.severity == expected
    if expected is not None:
        assert check.evidence


def test_an_eta_within_the_clear_margin_lingers() -> None:
    """Below the 5-minute tier by less than the 2-minute margin: neither held nor clear."""
    rules = SHIPPED.rules_for("restaurant", "FI")
    for minutes, lingers in ((42.9, False), (43, True), (44.9, True), (45, False)):
        state = order(PLACED, (5, "eta_updated", {"estimated_delivery_at": at(minutes)}))
        check = evaluate(state, at(5), rules)["eta_slipped"]
        assert (check.lingers, check.holds) == (lingers, minutes >= 45), minutes


def test_the_shipped_rules_carry_the_tuning() -> None:
    rules = SHIPPED.rules_for("grocery", "FI")
    assert rules.tuning.preparation_minutes == 20
    assert rules.tuning.reassignment_grace_minutes == 5
    assert rules.clear_for["eta_slipped"] == timedelta(minutes=3)
    assert "order_stale" not in rules.clear_for  # the default clear_for_seconds
    assert SHIPPED.rules_for("parcel", "FI").tuning.preparation_minutes == 15  # unused


def test_a_late_unassignment_of_an_earlier_courier_keeps_the_current_one() -> None:
    state = order(
        PLACED,
        (1, "courier_assigned", {"courier_id": "a"}),
        (2, "courier_assigned", {"courier_id": "b"}),
        (3, "courier_unassigned", {"courier_id": "a"}),
    )
    assert (state.courier_id, state.unassignments) == ("b", 1)


def test_out_of_order_and_repeated_events_give_the_same_state() -> None:
    steps: list[tuple[float, str, dict[str, Any]]] = [
        PLACED,
        (1, "venue_accepted", {}),
        (3, "courier_assigned", {"courier_id": "c"}),
        (9, "order_ready", {}),
    ]
    events = [
        OrderEvent(f"e{n}", k, "o1", at(m), "restaurant", "FI", "H", d)
        for n, (m, k, d) in enumerate(steps)
    ]
    shuffled = [events[3], events[1], events[0], events[3], events[2], events[1]]
    assert fold(shuffled) == fold(events)


def test_a_deadline_already_passed_fires_at_once() -> None:
    """Judged by occurred_at: placed 20 minutes ago with no acceptance is late now."""
    checks = evaluate(order(PLACED), at(20), SHIPPED.for_order("restaurant", "FI"))
    assert checks["venue_acceptance_delayed"].severity == "critical"


def test_the_next_check_is_the_next_threshold() -> None:
    checks = evaluate(order(PLACED), at(1), SHIPPED.for_order("restaurant", "FI"))
    assert next_check(checks) == at(3.5)


def test_verticals_have_their_own_thresholds() -> None:
    grocery = SHIPPED.for_order("grocery", "FI")["venue_acceptance_delayed"]
    restaurant = SHIPPED.for_order("restaurant", "FI")["venue_acceptance_delayed"]
    assert grocery[0][0] > restaurant[0][0]


def test_the_most_specific_table_wins() -> None:
    thresholds = parse(
        """
        [defaults]
        order_stale = [[45, "medium"]]
        [vertical.restaurant]
        [vertical.grocery]
        order_stale = [[50, "medium"]]
        [country.FI]
        order_stale = [[55, "medium"]]
        [vertical.grocery.country.FI]
        order_stale = [[60, "medium"]]
        """
    )
    assert thresholds.for_order("restaurant", "SE")["order_stale"] == ((45.0, "medium"),)
    assert thresholds.for_order("grocery", "SE")["order_stale"] == ((50.0, "medium"),)
    assert thresholds.for_order("restaurant", "FI")["order_stale"] == ((55.0, "medium"),)
    assert thresholds.for_order("grocery", "FI")["order_stale"] == ((60.0, "medium"),)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[defaults]\nbogus_rule = [[1, 'low']]", "unknown rule"),
        ("[defaults]\norder_stale = [[1, 'apocalyptic']]", "unknown severity"),
        ("[defaults]\norder_stale = [[5, 'low'], [3, 'high']]", "ascending"),
        ("[defaults]\norder_stale = [[1, 'high'], [3, 'low']]", "lower the severity"),
        ("[defaults]\norder_stale = 'soon'", "defaults"),
        ("[defaults\n", "rules"),
        ("[detector]\nflap = 3", "detector: Object contains unknown field `flap`"),
        ("[weather]\nrain = 1", "weather"),
        (
            "[vertical.grocery]\ndelivery = 'drone'",
            "vertical.grocery: Invalid enum value 'drone' - at `\\$.delivery`",
        ),
        ("[vertical.grocery]\norder_stael = [[1, 'low']]", "vertical.grocery.order_stael: neither"),
        (
            "[vertical.florist]\ndelivery = 'own_staff'\nrules = ['courier_stationary']",
            "vertical.florist.rules: courier_stationary judges the marketplace's couriers",
        ),
        ("[vertical.Flowers]", "vertical.Flowers: must be lower-case"),
        ("[defaults]\norder_stale = [[1, 'low']]", "declare at least one vertical"),
        ("[country.fi]\norder_stale = [[1, 'low']]", "ISO 3166"),
        ("[vertical.grocery]\ncountry = 3", "must be a table"),
        ("[defaults]\ncourier_reassigned_repeatedly = [[0, 'low']]", ">= 1"),
        ("[detector]\nreassignment_grace_minutes = -1", "detector.reassignment_grace_minutes"),
        (
            "[detector]\nreassignment_grace_minutes = 'soon'",
            "detector: Expected `float`, got `str` - at `\\$.reassignment_grace_minutes`",
        ),
        ("[preparation_minutes]\ngrocery = 12", "preparation_minutes: moved into each vertical"),
        (
            "[vertical.grocery]\npreparation_minutes = -3",
            "vertical.grocery.preparation_minutes: must be >= 0",
        ),
        ("[vertical.grocery]\npreparation_minutes = 'long'", "vertical.grocery: Expected"),
        (
            "[vertical.grocery]\nsla_minutes = { high = 0 }",
            "vertical.grocery.sla_minutes.high: must be > 0",
        ),
        ("[clear]\neta_slip = { margin = 2 }", "clear.eta_slip: unknown rule"),
        ("[clear]\neta_slipped = { margin = -2 }", "clear.eta_slipped.margin: must be >= 0"),
        ("[clear]\neta_slipped = { for_minutes = -1 }", "clear.eta_slipped.for_minutes"),
        (
            "[clear]\neta_slipped = { margn = 2 }",
            "clear.eta_slipped: Object contains unknown field `margn`",
        ),
        ("[clear]\neta_slipped = 2", "clear.eta_slipped: Expected `object`"),
    ],
)
def test_a_bad_rules_file_says_where(text: str, says: str) -> None:
    with pytest.raises(RulesError, match=says) as bad:
        parse(text)
    assert "\n" not in str(bad.value)


def test_a_missing_rules_file_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="INBOX_RULES_FILE"):
        load(tmp_path / "nope.toml")
