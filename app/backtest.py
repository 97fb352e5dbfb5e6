"""``inbox backtest``: the recorded order events replayed through the live rules and a
candidate rules file, with no side effects, and what would change between the two.

The events are the detector's own record of each order (``order_events``, kept for
``INBOX_ORDER_RETENTION_DAYS`` after an order's last change: older orders are gone, so
that bounds how far back a backtest can look). They are read in one read-only
transaction (nothing is written, nothing published), streamed in order-id order with a
server-side cursor, and each order is replayed on its own (orders are independent) by
``domain/replay.py``, which shares every decision with the live detector. The orders are
split by a hash of their id between worker processes that read the same snapshot.

What agents made of the issues the live system raised comes from the inbox read model
(``inbox_issues``): the ones they resolved as ``false_positive``, and the real problems
(resolved by agents otherwise, or followed by a customer contact), matched by (order,
kind) with the issues each rule set raises in the replay.
"""

from __future__ import annotations

import asyncio
import copyreg
import multiprocessing
import queue
import re
import resource
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import asyncpg
import msgspec

from adapters import postgres
from adapters.rules_store import ACTIVE_RULES
from app import rules_config
from app.detection_queries import FLAP_MINUTES
from app.ingest import validate
from domain.order import OrderEvent
from domain.replay import OrderReplay, replay_order
from domain.ruleset import RuleSet
from domain.values import SEVERITIES

# Rows fetched from the server-side cursor at a time (the memory a worker holds).
FETCH_ROWS = 5000
# Worker processes (the machine's two cores; each reads its share of the orders).
PROCESSES = 2
# Lead times are counted in bins of this many minutes (the median and p90 to that).
_LEAD_BIN = 0.1
_SNAPSHOT_ID = re.compile(r"^[0-9A-F-]+$")


async def live_rules(database_url: str, orders_stream: str, rules_file: Path | None) -> RuleSet:
    """The rules the running system judges with: the one place a backtest asks for them.
    The version active in the database for the ``orders_stream`` deployment (what every
    detector follows, app/rules_source.py), or, before any process activated one, the
    rules file (``INBOX_RULES_FILE``, or the shipped file)."""
    conn = await postgres.connect(database_url, name="inbox-backtest")
    try:
        row = await conn.fetchrow(ACTIVE_RULES, orders_stream)
    finally:
        await conn.close()
    if row is None:
        return rules_config.load(rules_file)
    return rules_config.parse(row["text"], f"the active rules ({row['version']})")


@dataclass(frozen=True)
class Window:
    """Which orders to replay: those whose first event lies in ``[since, until)`` (and of
    the verticals and countries named, if any). Time stops at ``until``: no event after
    it is replayed and no timer fires after it."""

    until: datetime
    since: datetime | None = None
    verticals: frozenset[str] = frozenset()
    countries: frozenset[str] = frozenset()

    def takes(self, first: OrderEvent) -> bool:
        return (
            (self.since is None or first.occurred_at >= self.since)
            and first.occurred_at < self.until
            and (not self.verticals or first.vertical in self.verticals)
            and (not self.countries or first.country in self.countries)
        )


class Recorded(msgspec.Struct, frozen=True):
    """An issue the live system raised, as the inbox read model has it now."""

    kind: str
    detected_at: datetime
    resolved_by: str | None
    resolution: str | None


@dataclass
class Tally:
    """One rule set's figures over the orders replayed so far (mergeable)."""

    raised: Counter[tuple[str, str]] = field(default_factory=Counter)  # (kind, highest)
    resolved_by_system: int = 0
    still_open: int = 0
    flapped: int = 0
    detected: int = 0
    missed: int = 0
    lead: Counter[int] = field(default_factory=Counter)  # bins of _LEAD_BIN minutes
    false_positives_raised: int = 0
    real_problems_not_raised: int = 0

    def add(self, replay: OrderReplay, false_positives: set[str], real: set[str]) -> None:
        for kind, issue in replay.issues.items():
            self.raised[(kind, issue.severity)] += 1
            if issue.open:
                self.still_open += 1
            else:
                self.resolved_by_system += 1
            if any(
                end is not None and (end - start).total_seconds() <= FLAP_MINUTES * 60
                for start, end in issue.episodes
            ):
                self.flapped += 1
        for contact in replay.contacts:
            if contact.detected and contact.first_detected_at is not None:
                self.detected += 1
                minutes = (contact.at - contact.first_detected_at).total_seconds() / 60
                self.lead[round(max(0.0, minutes) / _LEAD_BIN)] += 1
            else:
                self.missed += 1
        self.false_positives_raised += len(false_positives & replay.issues.keys())
        self.real_problems_not_raised += len(real - replay.issues.keys())

    def merge(self, other: Tally) -> None:
        self.raised.update(other.raised)
        self.lead.update(other.lead)
        for name in (
            "resolved_by_system",
            "still_open",
            "flapped",
            "detected",
            "missed",
            "false_positives_raised",
            "real_problems_not_raised",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Totals:
    """What one worker (or all) replayed."""

    orders: int = 0
    events: int = 0
    agent_false_positives: int = 0
    real_problems: int = 0
    orders_changed: int = 0
    peak_rss_mb: float = 0.0  # the largest worker's peak resident memory
    live: Tally = field(default_factory=Tally)
    candidate: Tally = field(default_factory=Tally)

    def merge(self, other: Totals) -> None:
        self.orders += other.orders
        self.events += other.events
        self.agent_false_positives += other.agent_false_positives
        self.real_problems += other.real_problems
        self.orders_changed += other.orders_changed
        self.peak_rss_mb = max(self.peak_rss_mb, other.peak_rss_mb)
        self.live.merge(other.live)
        self.candidate.merge(other.candidate)


class Side(msgspec.Struct):
    """One rule set's outcome (``--json``)."""

    rules_version: str
    issues: int
    by_kind: dict[str, int]
    by_severity: dict[str, int]  # the highest severity each issue reached
    by_kind_severity: dict[str, dict[str, int]]
    resolved_by_system: int
    still_open: int
    flaps: int  # issues resolved by the system within FLAP_MINUTES of (re)opening
    contacts_detected: int  # customer contacts with an issue of the order open before
    contacts_missed: int
    lead_minutes_median: float | None
    lead_minutes_p90: float | None
    agent_false_positives_raised: int  # of the issues agents judged false positives
    real_problems_not_raised: int


class Report(msgspec.Struct):
    """What ``inbox backtest`` found (``--json``: this document)."""

    since: datetime | None
    until: datetime
    verticals: list[str]
    countries: list[str]
    flap_minutes: float
    orders: int
    events: int
    seconds: float
    events_per_second: float
    contacts: int
    agent_false_positives: int  # recorded issues agents resolved as false_positive
    real_problems: int  # recorded issues agents resolved otherwise, or followed by a contact
    orders_changed: int  # orders whose issues (kind, severity, outcome) differ
    peak_rss_mb: float  # the largest replaying process's peak resident memory
    live: Side
    candidate: Side


Progress = Callable[[int], None]


def _proxy(values: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    return MappingProxyType(values)


# A RuleSet holds read-only mappings; worker processes get it pickled.
copyreg.pickle(MappingProxyType, lambda proxy: (_proxy, (dict(proxy),)))


async def backtest(
    database_url: str,
    live: RuleSet,
    candidate: RuleSet,
    window: Window,
    *,
    processes: int = PROCESSES,
    progress: Progress | None = None,
) -> Report:
    """Replay the orders of ``window`` through ``live`` and ``candidate`` in ``processes``
    workers reading one snapshot of the database, without writing anything."""
    started = time.perf_counter()
    conn = await postgres.connect(database_url, name="inbox-backtest")
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            if processes == 1:
                totals = await _replay_part(conn, live, candidate, window, 0, 1, progress)
            else:
                snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
                totals = await asyncio.to_thread(
                    _in_processes,
                    database_url,
                    snapshot,
                    live,
                    candidate,
                    window,
                    processes,
                    progress,
                )
    finally:
        await conn.close()
    return _report(totals, live, candidate, window, time.perf_counter() - started)


def _in_processes(
    database_url: str,
    snapshot: str,
    live: RuleSet,
    candidate: RuleSet,
    window: Window,
    processes: int,
    progress: Progress | None,
) -> Totals:
    """Run the workers (spawned: nothing of this process's threads or loop goes with
    them), report their progress, merge their totals; a worker's failure is raised."""
    context = multiprocessing.get_context("spawn")
    done = [context.Value("q", 0) for _ in range(processes)]
    results = context.Queue()
    workers = [
        context.Process(
            target=_worker,
            args=(
                database_url,
                snapshot,
                live,
                candidate,
                window,
                part,
                processes,
                done[part],
                results,
            ),
            daemon=True,
        )
        for part in range(processes)
    ]
    for worker in workers:
        worker.start()
    totals, failures, reported = Totals(), [], 0

    def report_progress() -> None:
        nonlocal reported
        if progress is not None:
            now = sum(d.value for d in done)
            progress(now - reported)
            reported = now

    try:
        waiting = processes
        while waiting:
            report_progress()
            try:
                kind, value = results.get(timeout=0.2)
            except queue.Empty:
                if not any(w.is_alive() for w in workers) and results.empty():
                    raise RuntimeError("a backtest worker died without a word") from None
                continue
            waiting -= 1
            if kind == "ok":
                totals.merge(value)
            else:
                failures.append(value)
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
    report_progress()
    if failures:
        raise RuntimeError("backtest worker failed: " + "; ".join(failures))
    return totals


def _worker(
    database_url: str,
    snapshot: str,
    live: RuleSet,
    candidate: RuleSet,
    window: Window,
    part: int,
    parts: int,
    done: Any,
    results: Any,
) -> None:
    def counted(events: int) -> None:
        with done.get_lock():
            done.value += events

    async def run() -> Totals:
        conn = await postgres.connect(database_url, name=f"inbox-backtest-{part}")
        try:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                if not _SNAPSHOT_ID.match(snapshot):
                    raise ValueError(f"not a snapshot id: {snapshot!r}")
                await conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
                return await _replay_part(conn, live, candidate, window, part, parts, counted)
        finally:
            await conn.close()

    try:
        results.put(("ok", asyncio.run(run())))
    except BaseException as exc:
        results.put(("failed", f"part {part}: {type(exc).__name__}: {exc}"))
        raise


async def _replay_part(
    conn: asyncpg.Connection,
    live: RuleSet,
    candidate: RuleSet,
    window: Window,
    part: int,
    parts: int,
    progress: Progress | None,
) -> Totals:
    """Replay the orders whose id hashes to ``part`` of ``parts``, streamed by order id."""
    totals = Totals()
    cursor = await conn.cursor(
        "SELECT order_id, body::text FROM order_events"
        " WHERE $1::int = 1 OR (hashtext(order_id) & 2147483647) % $1::int = $2::int"
        " ORDER BY order_id",
        parts,
        part,
    )
    held: list[asyncpg.Record] = []  # the rows of an order the last fetch may have cut
    while True:
        fetched = await cursor.fetch(FETCH_ROWS)
        if not fetched:
            break
        rows = held + fetched
        last, cut = rows[-1]["order_id"], len(rows)
        while cut > 0 and rows[cut - 1]["order_id"] == last:
            cut -= 1
        complete, held = rows[:cut], rows[cut:]
        await _replay_rows(conn, complete, live, candidate, window, totals)
        if progress is not None:
            progress(len(complete))
    if held:
        await _replay_rows(conn, held, live, candidate, window, totals)
        if progress is not None:
            progress(len(held))
    totals.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return totals


async def _replay_rows(
    conn: asyncpg.Connection,
    rows: Sequence[asyncpg.Record],
    live: RuleSet,
    candidate: RuleSet,
    window: Window,
    totals: Totals,
) -> None:
    """Replay the orders of ``rows`` (each order's rows together, whole)."""
    orders: dict[str, list[OrderEvent]] = {}
    for order_id, body in rows:
        orders.setdefault(order_id, []).append(validate(msgspec.json.decode(body), None))
    recorded: dict[str, list[Recorded]] = {}
    if orders:
        for row in await conn.fetch(
            "SELECT order_id, kind, detected_at, resolved_by, resolution FROM inbox_issues"
            " WHERE order_id = ANY($1::text[])",
            list(orders),
        ):
            recorded.setdefault(row["order_id"], []).append(
                Recorded(row["kind"], row["detected_at"], row["resolved_by"], row["resolution"])
            )
    for order_id, events in orders.items():
        first = min(events, key=lambda e: (e.occurred_at, e.event_id))
        if not window.takes(first):
            continue
        replays = replay_order(events, (live, candidate), window.until)
        false_positives, real = _judged(recorded.get(order_id, ()), events)
        totals.orders += 1
        totals.events += replays[0].events
        totals.agent_false_positives += len(false_positives)
        totals.real_problems += len(real)
        totals.live.add(replays[0], false_positives, real)
        totals.candidate.add(replays[1], false_positives, real)
        if _outcome(replays[0]) != _outcome(replays[1]):
            totals.orders_changed += 1


def _judged(recorded: Iterable[Recorded], events: list[OrderEvent]) -> tuple[set[str], set[str]]:
    """The kinds of the order's recorded issues agents judged false positives, and those
    that were real problems (resolved by agents otherwise, or followed by a contact)."""
    contacts = [e.occurred_at for e in events if e.type == "customer_contacted_support"]
    false_positives, real = set(), set()
    for issue in recorded:
        if issue.resolved_by == "agent" and issue.resolution == "false_positive":
            false_positives.add(issue.kind)
        elif issue.resolved_by == "agent" or any(at >= issue.detected_at for at in contacts):
            real.add(issue.kind)
    return false_positives, real


def _outcome(replay: OrderReplay) -> set[tuple[str, str, bool]]:
    return {(kind, i.severity, i.open) for kind, i in replay.issues.items()}


def _percentile(bins: Counter[int], share: float) -> float | None:
    total = sum(bins.values())
    if not total:
        return None
    rank = share * (total - 1)
    seen = 0
    for value in sorted(bins):
        seen += bins[value]
        if seen > rank:
            return round(value * _LEAD_BIN, 1)
    return round(max(bins) * _LEAD_BIN, 1)


def _side(tally: Tally, rules: RuleSet) -> Side:
    by_kind: Counter[str] = Counter()
    by_severity: Counter[str] = Counter()
    by_kind_severity: dict[str, dict[str, int]] = {}
    for (kind, severity), n in sorted(tally.raised.items()):
        by_kind[kind] += n
        by_severity[severity] += n
        by_kind_severity.setdefault(kind, {})[severity] = n
    return Side(
        rules_version=rules.version,
        issues=sum(by_kind.values()),
        by_kind=dict(sorted(by_kind.items())),
        by_severity={s: by_severity[s] for s in SEVERITIES if by_severity[s]},
        by_kind_severity=by_kind_severity,
        resolved_by_system=tally.resolved_by_system,
        still_open=tally.still_open,
        flaps=tally.flapped,
        contacts_detected=tally.detected,
        contacts_missed=tally.missed,
        lead_minutes_median=_percentile(tally.lead, 0.5),
        lead_minutes_p90=_percentile(tally.lead, 0.9),
        agent_false_positives_raised=tally.false_positives_raised,
        real_problems_not_raised=tally.real_problems_not_raised,
    )


def _report(
    totals: Totals, live: RuleSet, candidate: RuleSet, window: Window, seconds: float
) -> Report:
    return Report(
        since=window.since,
        until=window.until,
        verticals=sorted(window.verticals),
        countries=sorted(window.countries),
        flap_minutes=FLAP_MINUTES,
        orders=totals.orders,
        events=totals.events,
        seconds=round(seconds, 3),
        events_per_second=round(totals.events / seconds) if seconds > 0 else 0,
        contacts=totals.live.detected + totals.live.missed,
        agent_false_positives=totals.agent_false_positives,
        real_problems=totals.real_problems,
        orders_changed=totals.orders_changed,
        peak_rss_mb=round(totals.peak_rss_mb, 1),
        live=_side(totals.live, live),
        candidate=_side(totals.candidate, candidate),
    )


def now() -> datetime:
    return datetime.now(UTC)


def table(report: Report) -> str:
    """The human output: one row per figure, live vs candidate vs delta."""
    live, cand = report.live, report.candidate
    rows: list[tuple[str, Any, Any]] = [
        ("rules version", live.rules_version, cand.rules_version),
        ("issues raised", live.issues, cand.issues),
    ]
    for severity in SEVERITIES:
        rows.append(
            (
                f"  highest {severity}",
                live.by_severity.get(severity, 0),
                cand.by_severity.get(severity, 0),
            )
        )
    for kind in sorted(live.by_kind.keys() | cand.by_kind.keys()):
        rows.append((f"  {kind}", live.by_kind.get(kind, 0), cand.by_kind.get(kind, 0)))
    rows += [
        ("resolved by the system", live.resolved_by_system, cand.resolved_by_system),
        ("still open at the end", live.still_open, cand.still_open),
        (f"flaps (closed within {FLAP_MINUTES:g} min)", live.flaps, cand.flaps),
        ("contacts preceded by an issue", live.contacts_detected, cand.contacts_detected),
        ("contacts missed", live.contacts_missed, cand.contacts_missed),
        ("lead time median (min)", live.lead_minutes_median, cand.lead_minutes_median),
        ("lead time p90 (min)", live.lead_minutes_p90, cand.lead_minutes_p90),
        (
            f"agents' false positives raised (of {report.agent_false_positives})",
            live.agent_false_positives_raised,
            cand.agent_false_positives_raised,
        ),
        (
            f"real problems not raised (of {report.real_problems})",
            live.real_problems_not_raised,
            cand.real_problems_not_raised,
        ),
    ]
    width = max(len(name) for name, _, _ in rows)
    lines = [
        f"backtest: {report.orders} orders, {report.events} events, {report.contacts} contacts"
        f" until {report.until.isoformat()} ({report.events_per_second:,.0f} events/s);"
        f" {report.orders_changed} orders change",
        f"{'':<{width}}  {'live':>16}  {'candidate':>16}  {'delta':>8}",
    ]
    for name, a, b in rows:
        lines.append(f"{name:<{width}}  {_cell(a):>16}  {_cell(b):>16}  {_delta(a, b):>8}")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _delta(a: Any, b: Any) -> str:
    if isinstance(a, str) or isinstance(b, str):
        return "" if a == b else "changed"
    if a is None or b is None:
        return ""
    difference = b - a
    if isinstance(difference, float):
        return f"{difference:+.1f}"
    return f"{difference:+d}"
