"""The simulator's stories: the classic verticals' exactly as they were (the benchmarks'
figures depend on it), the pharmacy's prescription check and the florist's own van true
to the shipped rules file, and ``--verticals`` checked at the edge."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app import rules_config
from app.cli import main
from app.ingest import validate
from app.simulated_verticals import (
    ACCEPT_WITHIN,
    CHECK_WITHIN,
    CLASSIC_VERTICALS,
    DEMO_VERTICALS,
    LATE_AFTER,
    MODELLED,
    PICK_UP_WITHIN,
    PRESCRIPTION_CHECK,
    STALE_AFTER,
    VERTICAL_FAULTS,
    Mix,
    VerticalsError,
    check_verticals,
    parse_verticals,
    simulated_verticals,
)
from app.simulator import Step, Truth, _stood_still, order_story
from domain.ruleset import COURIER_RULES

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SHIPPED = rules_config.load(None)
COURIER_EVENTS = {
    "courier_assigned",
    "courier_unassigned",
    "courier_arrived_at_venue",
    "courier_location",
}
Events = list[tuple[datetime, dict[str, Any]]]

# sha256 of the first 400 stories of seeds 11 and 2026 (the default, classic mix), computed
# on main at 73212b8, before the pharmacy and the florist came to the simulator: a classic
# story must stay draw for draw what it was, or bench precision's figures move.
PINNED = {
    11: "74f8287c8bd9eb7941a506a74714dc644dd6590df4e7ac1ee3708f937c8a57af",
    2026: "21299ae334e096dbb4c01414bd49abf1c99cb69befc9be131a077f15428ae376",
}


def stories(seed: int, n: int, verticals: Mix | None = None) -> list[tuple[Events, Truth]]:
    rng = random.Random(seed)
    told: list[tuple[Events, Truth]] = []
    for i in range(n):
        placed = T0 + timedelta(minutes=i)
        if verticals is None:  # called as every caller did before the mix was a parameter
            told.append(order_story(rng, f"pin-{seed}-{i}", placed))
        else:
            told.append(order_story(rng, f"pin-{seed}-{i}", placed, verticals))
    return told


def digest(seed: int, n: int) -> str:
    h = hashlib.sha256()
    for events, truth in stories(seed, n):
        h.update(
            json.dumps(
                [
                    [[at.isoformat(), body] for at, body in events],
                    sorted(truth.faults),
                    sorted(truth.problems.items()),
                ],
                sort_keys=True,
            ).encode()
        )
    return h.hexdigest()


@pytest.mark.parametrize("seed", sorted(PINNED))
def test_the_classic_mix_tells_the_stories_it_told_before(seed: int) -> None:
    assert digest(seed, 400) == PINNED[seed]


def test_the_classic_mix_is_the_default_of_order_story() -> None:
    assert [json.dumps([b for _, b in e]) for e, _ in stories(3, 50)] == [
        json.dumps([b for _, b in e]) for e, _ in stories(3, 50, CLASSIC_VERTICALS)
    ]
    assert {v for v, _ in CLASSIC_VERTICALS} == {"restaurant", "grocery", "retail", "parcel"}


def test_every_event_of_every_vertical_is_valid_by_the_shipped_rules() -> None:
    mix = tuple((v, 1.0) for v in sorted(MODELLED))
    told = stories(7, 600, mix)
    seen: Counter[tuple[str, str]] = Counter()
    for events, _ in told:
        for _, body in events:
            event = validate(json.loads(json.dumps(body)), SHIPPED)
            seen[event.vertical, event.type] += 1
    assert {v for v, _ in seen} == set(MODELLED)
    assert seen["pharmacy", "prescription_submitted"] > 50
    assert seen["pharmacy", "prescription_approved"] > 50
    assert seen["pharmacy", "prescription_rejected"] >= 1


def test_florist_stories_send_no_courier_event_and_raise_no_courier_problem() -> None:
    told = stories(8, 400, (("florist", 1.0),))
    florist = SHIPPED.verticals["florist"]
    types: Counter[str] = Counter()
    for events, truth in told:
        sent = [body["type"] for _, body in events]
        types.update(sent)
        assert not COURIER_EVENTS & set(sent)
        assert {body["vertical"] for _, body in events} == {"florist"}
        assert set(truth.problems) <= florist.rules
        assert not COURIER_RULES & set(truth.problems)
        assert truth.faults <= set(VERTICAL_FAULTS["florist"])
        assert sent.count("order_delivered") + sent.count("order_cancelled") == 1
        if "order_picked_up" in sent:  # by the florist's own driver
            picked = next(b for _, b in events if b["type"] == "order_picked_up")
            assert picked["data"]["courier_id"].startswith("driver-")
    assert types["order_delivered"] > 300
    # Some florists' staff mark the handover, some do not; their van's app sends ETAs.
    assert 0 < types["order_picked_up"] < types["order_delivered"]
    assert types["eta_updated"] > types["order_delivered"]
    assert not {"no_courier", "courier_stuck", "courier_stationary", "courier_reassigned"} & set(
        VERTICAL_FAULTS["florist"]
    )


def minutes(events: Events, kind: str) -> list[float]:
    placed = events[0][0]
    return [(at - placed).total_seconds() / 60 for at, body in events if body["type"] == kind]


def test_pharmacy_stories_wait_for_the_pharmacists_check() -> None:
    told = stories(9, 400, (("pharmacy", 1.0),))
    slow = rejected = 0
    for events, truth in told:
        sent = [body["type"] for _, body in events]
        assert sent.count("prescription_submitted") == 1
        (submitted,) = minutes(events, "prescription_submitted")
        assert 0 < submitted <= 1.0  # soon after placement
        decided = minutes(events, "prescription_approved") + minutes(
            events, "prescription_rejected"
        )
        faults, problems = truth.faults, truth.problems
        end = max(minutes(events, "order_delivered") + minutes(events, "order_cancelled"))
        if not decided:  # the order ended before the pharmacist decided
            assert "order_cancelled" in sent
            continue
        (at,) = decided
        took = at - submitted
        if "slow_pharmacist" in faults:
            slow += 1
            assert took > CHECK_WITHIN
            assert problems["prescription_check_pending"] == pytest.approx(submitted + CHECK_WITHIN)
        else:
            assert PRESCRIPTION_CHECK[0] <= took <= PRESCRIPTION_CHECK[1]
            assert "prescription_check_pending" not in problems
        if "prescription_rejected" in sent:
            rejected += 1
            cancelled = next(b for _, b in events if b["type"] == "order_cancelled")
            assert cancelled["data"] == {"reason": "prescription rejected", "by": "venue"} or (
                "cancelled" in faults
            )
            assert "order_ready" not in sent
            assert "order_delivered" not in sent
        elif "order_ready" in sent:  # packed once approved
            assert minutes(events, "order_ready")[0] > at
        assert at <= end
    assert slow >= 20
    assert rejected >= 3


def test_a_pharmacy_story_is_healthy_without_a_fault() -> None:
    told = stories(10, 400, (("pharmacy", 1.0),))
    healthy = [t for _, t in told if not t.faults]
    assert len(healthy) > 150
    # A healthy order may be a customer's question, never a problem of the check.
    assert all("prescription_check_pending" not in t.problems for t in healthy)


@pytest.mark.parametrize("vertical", ["pharmacy", "florist"])
def test_the_new_verticals_norms_are_the_rules_files_first_tiers(vertical: str) -> None:
    tiers = SHIPPED.for_order(vertical, "FI")
    assert LATE_AFTER[vertical] == tiers["delivery_overdue"][0][0]
    assert PICK_UP_WITHIN[vertical] == tiers["ready_not_picked_up"][0][0]
    assert STALE_AFTER[vertical] == tiers["order_stale"][0][0]
    if vertical == "florist":
        assert ACCEPT_WITHIN[vertical] == tiers["venue_acceptance_delayed"][0][0]
        assert not COURIER_RULES & set(tiers)
    else:  # the restaurants' 3 minutes, which the file raises half a minute after
        assert ACCEPT_WITHIN[vertical] == ACCEPT_WITHIN["restaurant"] == 3
        assert tiers["venue_acceptance_delayed"][0][0] == 3.5
        assert tiers["prescription_check_pending"][0][0] == CHECK_WITHIN


def test_the_demo_mix_has_the_new_verticals_at_a_few_percent() -> None:
    told = stories(12, 2000, DEMO_VERTICALS)
    share = Counter(events[0][1]["vertical"] for events, _ in told)
    assert set(share) == set(MODELLED)
    for vertical in ("pharmacy", "florist"):
        assert 0.03 < share[vertical] / 2000 < 0.07


def test_a_mix_is_parsed() -> None:
    assert parse_verticals("restaurant=0.6, grocery=0.2,pharmacy=1") == (
        ("restaurant", 0.6),
        ("grocery", 0.2),
        ("pharmacy", 1.0),
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "expected name=weight"),
        ("restaurant", "expected name=weight"),
        ("=0.5", "expected name=weight"),
        ("restaurant=lots", "'lots' is not a number"),
        ("restaurant=0", "weight must be > 0"),
        ("restaurant=-1", "weight must be > 0"),
        ("restaurant=nan", "weight must be > 0"),
        ("restaurant=inf", "weight must be > 0"),
        ("restaurant=1,restaurant=2", "named twice"),
        ("x" * 1001, "at most 1000 characters"),
    ],
)
def test_a_malformed_mix_is_refused_saying_why(text: str, says: str) -> None:
    with pytest.raises(VerticalsError, match=says):
        parse_verticals(text)


def test_a_mix_names_only_verticals_the_rules_file_declares_and_the_simulator_models() -> None:
    declared = set(SHIPPED.verticals)
    assert check_verticals((("florist", 2.0),), declared) == (("florist", 2.0),)
    with pytest.raises(VerticalsError, match="'bakery' is not declared in the rules file"):
        check_verticals((("restaurant", 1.0), ("bakery", 1.0)), declared)
    with pytest.raises(VerticalsError, match="'electronics' is declared, but the simulator"):
        check_verticals((("electronics", 1.0),), declared | {"electronics"})
    with pytest.raises(VerticalsError, match="at least one"):
        check_verticals((), declared)


def test_the_demo_mix_keeps_to_the_verticals_the_rules_file_declares(tmp_path: Path) -> None:
    assert simulated_verticals(None, None) == DEMO_VERTICALS
    only = tmp_path / "rules.toml"
    only.write_text("[vertical.restaurant]\n[vertical.florist]\ndelivery = 'own_staff'\n")
    assert simulated_verticals(None, only) == (("restaurant", 0.54), ("florist", 0.05))
    with pytest.raises(VerticalsError, match="'pharmacy' is not declared"):
        simulated_verticals((("pharmacy", 1.0),), only)
    none = tmp_path / "none.toml"
    none.write_text("[vertical.bakery]\n")
    with pytest.raises(VerticalsError, match="declares none of the simulator's verticals"):
        simulated_verticals(None, none)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["simulate", "--verticals", "restaurant"], "expected name=weight"),
        (["up", "--verticals", "pharmacy=0"], "weight must be > 0"),
    ],
)
def test_the_command_line_refuses_a_malformed_mix(
    capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "argument --verticals" in err
    assert says in err


def test_the_command_line_refuses_an_undeclared_vertical_before_starting_anything(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv("INBOX_RULES_FILE", raising=False)
    assert main(["simulate", "--verticals", "restaurant=0.6,bakery=0.4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("inbox: --verticals: 'bakery' is not declared")
    # The default mix is checked too: against a file that declares none of it.
    rules = tmp_path / "rules.toml"
    rules.write_text("[vertical.bakery]\n")
    monkeypatch.setenv("INBOX_RULES_FILE", str(rules))
    assert main(["up"]) == 2
    assert "declares none of the simulator's verticals" in capsys.readouterr().err
    rules.write_text("[vertical.restaurant]\nno_such_rule = []\n")
    assert main(["simulate"]) == 2
    assert capsys.readouterr().err.startswith("inbox: bad rules file:")


def ride(still_minutes: int) -> list[Step]:
    """Picked up at minute 10, a ping a minute from 11, standing still ``still_minutes``
    from minute 12, then moving on until delivered at 30."""
    steps = [Step(10, "order_picked_up", {"courier_id": "c"})]
    lat = 60.0
    for minute in range(11, 30):
        if not 12 < minute < 12 + still_minutes:
            lat += 0.003
        steps.append(Step(minute, "courier_location", {"courier_id": "c", "lat": lat, "lon": 1}))
    return [*steps, Step(30, "order_delivered", {})]


def test_a_courier_who_stood_still_past_the_first_tier_is_a_problem_even_unplanned() -> None:
    assert _stood_still(ride(9)) == 20  # moved at 12, still past 20
    assert _stood_still(ride(8)) is None  # moved again on the 8th minute: a tie
    assert _stood_still(ride(3)) is None
    assert _stood_still(ride(8)[:-12]) is None  # no pick-up seen: no ride to judge
    stuck = [*ride(0)[:5], Step(24, "order_delivered", {})]  # last ping 14, delivered at 24
    assert _stood_still(stuck) == 22
