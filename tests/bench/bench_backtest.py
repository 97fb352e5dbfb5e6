"""Backtest throughput: recorded order events (``order_events``, COPYed in bulk from
simulated orders) replayed by ``inbox backtest`` through the live rules and a stricter
candidate, next to a raw read of the same rows (the same server-side cursor, each body
decoded); the replaying processes' peak memory at two sizes shows it flat.

    ./dev bench backtest [--orders 10000 40000] [--processes 2]
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from datetime import UTC, datetime, timedelta

import msgspec

from adapters import postgres
from adapters.watch import event_body
from app import backtest, rules_config
from app.ingest import validate
from app.simulator import order_events
from domain.ruleset import RuleSet
from tests.bench.common import Figure, report, scratch_database, servers

# A candidate every order is judged differently by (its clear-for and the venue's first
# tier change), so no order's live replay can stand in for its candidate's.
STRICTER = {
    "clear_for_seconds = 60": "clear_for_seconds = 45",
    'venue_acceptance_delayed = [[3.5, "medium"]': 'venue_acceptance_delayed = [[3, "medium"]',
}


def candidate() -> RuleSet:
    text, _ = rules_config.read(None)
    for old, new in STRICTER.items():
        assert old in text, old
        text = text.replace(old, new)
    return rules_config.parse(text, "candidate")


async def record(url: str, orders: int, seed: int = 15) -> int:
    """``orders`` simulated orders placed over the last day, every step that happened
    by now, COPYed into ``order_events`` as the detector stores them; how many events."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    conn = await postgres.connect(url)
    count = 0
    try:
        rows: list[tuple[str, str, str]] = []
        for n in range(orders):
            order_id = f"bt-{n}-{uuid.UUID(int=rng.getrandbits(128)).hex[:8]}"
            placed = now - timedelta(hours=24) + timedelta(seconds=rng.uniform(0, 23 * 3600))
            for at, body in order_events(rng, order_id, placed):
                if at <= now:
                    rows.append((order_id, body["event_id"], event_body(validate(body, None))))
            if len(rows) >= 50_000 or n == orders - 1:
                await conn.copy_records_to_table(
                    "order_events", records=rows, columns=("order_id", "event_id", "body")
                )
                count += len(rows)
                rows = []
        await conn.execute("ANALYZE order_events")
    finally:
        await conn.close()
    return count


async def raw_read(url: str) -> Figure:
    """The same rows through the same cursor, each body decoded (and nothing else)."""
    conn = await postgres.connect(url)
    rows = 0
    try:
        started = time.perf_counter()
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            cursor = await conn.cursor(
                "SELECT order_id, body::text FROM order_events ORDER BY order_id"
            )
            while fetched := await cursor.fetch(backtest.FETCH_ROWS):
                for _order_id, body in fetched:
                    msgspec.json.decode(body)
                rows += len(fetched)
        seconds = time.perf_counter() - started
    finally:
        await conn.close()
    return Figure("raw read: cursor + JSON decode (1 process)", rows, seconds)


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench backtest")
    parser.add_argument("--orders", type=int, nargs="+", default=[10_000, 40_000])
    parser.add_argument("--processes", type=int, default=backtest.PROCESSES)
    args = parser.parse_args(argv)
    live, stricter = rules_config.load(None), candidate()
    figures: list[Figure] = []
    notes: dict[str, object] = {"sizes": []}
    raw: Figure | None = None
    with servers() as endpoints:
        for orders in args.orders:
            async with scratch_database(endpoints.database_url) as url:
                events = await record(url, orders)
                raw = await raw_read(url)
                window = backtest.Window(until=datetime.now(UTC))
                started = time.perf_counter()
                found = await backtest.backtest(
                    url, live, stricter, window, processes=args.processes
                )
                seconds = time.perf_counter() - started
                assert found.events == events, (found.events, events)
                figures.append(
                    Figure(f"backtest {events:,} events ({args.processes} proc)", events, seconds)
                )
                print(raw.line())
                print(figures[-1].line(raw), f" peak RSS {found.peak_rss_mb:.0f} MB")
                notes["sizes"].append(  # type: ignore[attr-defined]
                    {
                        "orders": orders,
                        "events": events,
                        "raw_rate": raw.rate,
                        "rate": events / seconds,
                        "ratio": events / seconds / raw.rate,
                        "peak_rss_mb": found.peak_rss_mb,
                        "issues_live": found.live.issues,
                        "issues_candidate": found.candidate.issues,
                    }
                )
    assert raw is not None
    report("backtest", figures, raw, notes)
