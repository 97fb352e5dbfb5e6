"""``inbox backtest`` against real PostgreSQL: a recorded scenario run through the live
detector (a controllable clock stepped to each event and each due timer) gives the same
issues as the backtest with the same rules; a stricter candidate shows exactly the extra
issues; the backtest writes nothing; the CLI's table and JSON; a bad candidate."""

from __future__ import annotations

import itertools
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from app import backtest
from app.detection import Detector
from app.ingest import validate
from app.rules_config import load, parse, read
from app.service import IssueService
from app.simulator import order_events
from domain.issue import issue_id_for
from domain.order import OrderEvent
from domain.replay import replay_order
from domain.ruleset import RuleSet
from tests.integration import helpers
from tests.integration.helpers import inbox_without_nats
from tests.unit.fakes import SetClock

RULES = load(None)
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
END = T0 + timedelta(minutes=75)  # some orders still on their way
Outcome = dict[tuple[str, str], tuple[str, str]]  # (order, kind) -> (severity, by | open)


def stricter() -> tuple[RuleSet, str]:
    text, _ = read(None)
    old = 'venue_acceptance_delayed = [[3.5, "medium"]'
    assert old in text
    text = text.replace(old, 'venue_acceptance_delayed = [[2, "medium"]')
    return parse(text, "candidate"), text


def scenario(orders: int = 60, seed: int = 15) -> list[OrderEvent]:
    """Simulated orders (faults included) placed over the first hour, every step up to END."""
    rng = random.Random(seed)
    events = []
    for n in range(orders):
        placed = T0 + timedelta(minutes=rng.uniform(0, 60))
        for at, body in order_events(rng, f"bt-{n}", placed):
            if at <= END:
                events.append(validate(body, RULES))
    return events + slow_venues()


# Orders whose venue accepts after 2 but before 3.5 minutes: the stricter candidate's extra.
SLOW = {"slow-1": 2.5, "slow-2": 3.0, "slow-3": 3.4}


def slow_venues() -> list[OrderEvent]:
    events = []
    for order_id, accepted in SLOW.items():
        placed = T0 + timedelta(minutes=5)
        for minute, kind, data in [
            (
                0,
                "order_placed",
                {
                    "venue_id": "v1",
                    "customer_id": "c1",
                    "amount": 1000,
                    "currency": "EUR",
                    "promised_delivery_at": (placed + timedelta(minutes=40)).isoformat(),
                },
            ),
            (accepted, "venue_accepted", {}),
            (10, "order_cancelled", {"reason": "test", "by": "customer"}),
        ]:
            raw = {
                "event_id": f"{order_id}-{kind}",
                "type": kind,
                "order_id": order_id,
                "occurred_at": (placed + timedelta(minutes=minute)).isoformat(),
                "vertical": "restaurant",
                "country": "FI",
                "city": "Helsinki",
                "data": data,
            }
            events.append(validate(raw, RULES))
    return events


async def run_live(
    detector: Detector, clock: SetClock, pool: asyncpg.Pool, events: list[OrderEvent]
) -> None:
    """The live detector caught up: at each instant the events of that instant, and before
    each the timers due strictly earlier, each at its own time; then timers up to END."""
    groups = [
        (at, list(group))
        for at, group in itertools.groupby(
            sorted(events, key=lambda e: e.occurred_at), key=lambda e: e.occurred_at
        )
    ]

    async def fire_until(moment: datetime, *, inclusive: bool) -> None:
        while True:
            due = await pool.fetchval("SELECT min(next_check_at) FROM order_watch")
            if due is None or due > moment or (due == moment and not inclusive):
                return
            clock.at = due
            assert await detector.fire_due(10_000) > 0

    for at, group in groups:
        await fire_until(at, inclusive=False)
        clock.at = at
        await detector.ingest(group)
    await fire_until(END, inclusive=True)


def live_outcome(issues: IssueService, events: list[OrderEvent]) -> Outcome:
    found: Outcome = {}
    orders = {e.order_id for e in events}
    ids = {issue_id_for(o, k): (o, k) for o in orders for k in RULES.kinds}
    for issue_id, issue in issues.current(set(ids)).items():
        found[ids[issue_id]] = (issue.severity, issue.resolved_by or "open")
    return found


async def replayed(db: str, rules: list[RuleSet]) -> list[Outcome]:
    """Each rule set's issues, replayed from what ``order_events`` holds."""
    conn = await asyncpg.connect(db)
    try:
        rows = await conn.fetch("SELECT order_id, body::text FROM order_events")
    finally:
        await conn.close()
    by_order: dict[str, list[OrderEvent]] = {}
    for order_id, body in rows:
        by_order.setdefault(order_id, []).append(validate(msgspec.json.decode(body), None))
    outcomes: list[Outcome] = [{} for _ in rules]
    for order_id, events in by_order.items():
        for outcome, replay in zip(outcomes, replay_order(events, rules, END), strict=True):
            for kind, issue in replay.issues.items():
                outcome[(order_id, kind)] = (issue.severity, issue.resolved_by or "open")
    return outcomes


async def writes(db: str) -> dict[str, Any]:
    """Every table's row count and its rows ever inserted, updated and deleted."""
    conn = await asyncpg.connect(db)
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        stats = await conn.fetch(
            "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables"
        )
        counts = {}
        for row in stats:
            counts[row["relname"]] = await conn.fetchval(f'SELECT count(*) FROM "{row["relname"]}"')
        return {"stats": sorted(tuple(r) for r in stats), "counts": counts}
    finally:
        await conn.close()


@pytest.fixture
def recorded_clock() -> SetClock:
    return SetClock(T0)


async def test_the_backtest_agrees_with_the_live_detector_and_shows_a_stricter_candidate(
    db: str, pool: asyncpg.Pool, writer: IssueService, recorded_clock: SetClock
) -> None:
    events = scenario()
    detector = helpers.detector(pool, writer, recorded_clock)
    await run_live(detector, recorded_clock, pool, events)
    live = live_outcome(writer, events)
    assert len(live) >= 10, live  # a scenario with something to find
    assert {by for _, by in live.values()} >= {"system", "open"}
    candidate_rules, _ = stricter()
    same, candidate = await replayed(db, [RULES, candidate_rules])
    assert same == live
    extra = {key: value for key, value in candidate.items() if key not in live}
    # Exactly the venues slower than the candidate's 2 minutes and faster than the live
    # 3.5, each raised and resolved as its acceptance came; the rest as live.
    assert extra == {(o, "venue_acceptance_delayed"): ("medium", "system") for o in SLOW}
    assert {k: v for k, v in candidate.items() if k not in extra} == live

    before = await writes(db)
    report = await backtest.backtest(
        db, RULES, candidate_rules, backtest.Window(until=END), processes=2
    )
    assert await writes(db) == before  # nothing written (and no NATS client at all)
    assert report.orders == len({e.order_id for e in events})
    assert report.events == len({(e.order_id, e.event_id) for e in events})
    by_kind: dict[str, int] = {}
    for _order, kind in live:
        by_kind[kind] = by_kind.get(kind, 0) + 1
    assert report.live.by_kind == dict(sorted(by_kind.items()))
    assert report.live.still_open == sum(1 for _, by in live.values() if by == "open")
    assert report.candidate.issues == report.live.issues + len(extra)
    contacts = await pool.fetch("SELECT detected FROM support_contacts")
    assert report.live.contacts_detected == sum(1 for c in contacts if c["detected"])
    assert report.live.contacts_missed == sum(1 for c in contacts if not c["detected"])
    one = await backtest.backtest(
        db, RULES, candidate_rules, backtest.Window(until=END), processes=1
    )
    assert msgspec.structs.replace(one, seconds=0, events_per_second=0, peak_rss_mb=0) == (
        msgspec.structs.replace(report, seconds=0, events_per_second=0, peak_rss_mb=0)
    )


async def test_agents_judgements_are_matched_with_what_each_rule_set_raises(
    db: str, pool: asyncpg.Pool, writer: IssueService, recorded_clock: SetClock
) -> None:
    events = scenario(30, seed=3)
    await run_live(helpers.detector(pool, writer, recorded_clock), recorded_clock, pool, events)
    # The read model, as the projection would have it: agents judged two issues.
    live = live_outcome(writer, events)
    (fp_order, fp_kind), (real_order, real_kind) = sorted(live)[:2]
    await pool.execute(
        "INSERT INTO inbox_issues (issue_id, order_id, kind, status, severity, priority,"
        " vertical, country, city, detected_at, updated_at, due_at, resolved_by, resolution,"
        " evidence, version, position) VALUES"
        " (gen_random_uuid(), $1, $2, 'resolved', 'medium', 200, 'restaurant', 'FI', 'x',"
        "  $5, $5, $5, 'agent', 'false_positive', '{}', 3, 1),"
        " (gen_random_uuid(), $3, $4, 'resolved', 'medium', 200, 'restaurant', 'FI', 'x',"
        "  $5, $5, $5, 'agent', 'fixed', '{}', 3, 2)",
        fp_order,
        fp_kind,
        real_order,
        real_kind,
        T0,
    )
    nothing = parse(_NOTHING, "nothing")
    report = await backtest.backtest(db, RULES, nothing, backtest.Window(until=END), processes=1)
    assert report.agent_false_positives == 1
    assert report.real_problems >= 1
    assert report.live.agent_false_positives_raised == 1
    assert report.live.real_problems_not_raised == 0
    assert report.candidate.real_problems_not_raised == report.real_problems
    assert report.candidate.agent_false_positives_raised == 0
    window = backtest.Window(until=END, verticals=frozenset({"nowhere"}))
    assert (await backtest.backtest(db, RULES, nothing, window, processes=1)).orders == 0


# A candidate that raises nothing: the scenario's verticals, with no rule.
_NOTHING = "".join(
    f"[vertical.{v}]\nrules = []\n" for v in ("restaurant", "grocery", "retail", "parcel")
)


async def test_the_command_prints_a_table_or_json_and_refuses_a_bad_candidate(
    db: str, pool: asyncpg.Pool, writer: IssueService, recorded_clock: SetClock, tmp_path: Path
) -> None:
    events = scenario(20, seed=5)
    await run_live(helpers.detector(pool, writer, recorded_clock), recorded_clock, pool, events)
    _, text = stricter()
    candidate = tmp_path / "candidate.toml"
    candidate.write_text(text)
    until = END.isoformat()
    table = inbox_without_nats(db, "backtest", "--rules", str(candidate), "--until", until)
    assert table.returncode == 0, table.stderr
    assert "issues raised" in table.stdout
    assert "venue_acceptance_delayed" in table.stdout
    assert "delta" in table.stdout
    as_json = inbox_without_nats(
        db, "backtest", "--rules", str(candidate), "--until", until, "--json"
    )
    assert as_json.returncode == 0, as_json.stderr
    found = json.loads(as_json.stdout)
    assert found["orders"] == 20 + len(SLOW)
    venue = "venue_acceptance_delayed"
    live_venue = found["live"]["by_kind"].get(venue, 0)
    assert found["candidate"]["by_kind"][venue] == live_venue + len(SLOW)
    assert found["candidate"]["issues"] == found["live"]["issues"] + len(SLOW)
    assert found["live"]["rules_version"] == RULES.version
    bad = tmp_path / "bad.toml"
    bad.write_text(
        text.replace(
            'extra_rules = ["prescription_check_pending"]', 'extra_rules = ["no_such_rule"]'
        )
    )
    refused = inbox_without_nats(db, "backtest", "--rules", str(bad))
    assert refused.returncode == 2
    assert "vertical.pharmacy.rules" in refused.stderr
    assert "no_such_rule" in refused.stderr
