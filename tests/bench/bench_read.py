"""The read side: GET /api/issues over a million issues next to the trivial /health, commit →
read-model latency at a steady rate, and the rebuild rate next to a raw select + decode of the
same events.

    ./dev bench read [--issues 1000000] [--requests 5000] [--rate 500] [--seconds 10]
                     [--rebuild-events 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import functools
import json
import multiprocessing
import multiprocessing.synchronize
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp
import anyio.to_thread

from adapters import postgres
from adapters.clock import SystemClock
from adapters.eventlog import EventLog
from adapters.eventstore import EVENT_COLUMNS, decode, eventstore_env
from app import bootstrap
from app.bootstrap import Endpoints
from app.commands import Acknowledge, AddNote, Assign, Command, Escalate, Resolve
from app.service import IssueApplication, IssueService
from domain.issue import due_at, priority_of
from domain.values import KINDS, RESOLUTIONS, SEVERITIES
from projections import PROJECTIONS
from projections.follower import POSITIONS_CHANNEL
from projections.inbox import COLUMNS
from projections.rebuild import rebuild
from tests.api_process import running_api
from tests.bench.bench_commands import _run_clients
from tests.bench.common import Figure, figure, report, scratch_database, servers
from tests.integration.helpers import report as report_issue
from tests.tokens import headers_for

VERTICALS = ("restaurant", "grocery", "retail", "parcel")

CITIES = {
    "FI": ("Helsinki", "Espoo", "Tampere", "Turku", "Oulu"),
    "DE": ("Berlin", "Hamburg", "Munich", "Cologne", "Frankfurt"),
    "SE": ("Stockholm", "Gothenburg", "Malmo", "Uppsala", "Lund"),
    "NO": ("Oslo", "Bergen", "Trondheim", "Stavanger", "Tromso"),
    "DK": ("Copenhagen", "Aarhus", "Odense", "Aalborg", "Esbjerg"),
    "EE": ("Tallinn", "Tartu", "Narva", "Parnu", "Viljandi"),
    "PL": ("Warsaw", "Krakow", "Wroclaw", "Poznan", "Gdansk"),
    "CZ": ("Prague", "Brno", "Ostrava", "Plzen", "Olomouc"),
    "AT": ("Vienna", "Graz", "Linz", "Salzburg", "Innsbruck"),
    "HU": ("Budapest", "Debrecen", "Szeged", "Pecs", "Gyor"),
    "GR": ("Athens", "Thessaloniki", "Patras", "Heraklion", "Larissa"),
    "JP": ("Tokyo", "Osaka", "Kyoto", "Sapporo", "Fukuoka"),
}
AGENTS = [f"agent-{n:03d}" for n in range(200)]
STATUSES = (("resolved", 90.0), ("open", 6.0), ("acknowledged", 2.5), ("snoozed", 1.5))
SEVERITY_WEIGHTS = (40, 35, 18, 7)  # low, medium, high, critical
CHUNK = 50_000
WARMUP = 200  # requests per query before timing: connections open, statements prepared


def _issue_rows(first: int, count: int, now: datetime) -> list[tuple[Any, ...]]:
    """``count`` inbox_issues rows (COLUMNS order) with positions from ``first``."""
    kinds, verticals, countries = sorted(KINDS), sorted(VERTICALS), sorted(CITIES)
    resolutions = sorted(RESOLUTIONS)
    statuses = random.choices([s for s, _ in STATUSES], [w for _, w in STATUSES], k=count)
    severities = random.choices(SEVERITIES, SEVERITY_WEIGHTS, k=count)
    rows = []
    for n in range(count):
        status, severity, country = statuses[n], severities[n], random.choice(countries)
        detected = now - timedelta(seconds=random.random() * 30 * 86400)
        updated = detected + timedelta(seconds=random.random() * 7200)
        resolved = status == "resolved"
        rows.append(
            (
                uuid.uuid4(),
                f"order-{first + n}",
                random.choice(kinds),
                status,
                "open" if status == "snoozed" else None,
                severity,
                priority_of(severity),
                random.choice(verticals),
                country,
                random.choice(CITIES[country]),
                None if random.random() < 0.4 else random.choice(AGENTS),
                detected,
                updated,
                due_at(detected, severity),
                None,  # sla_minutes: the fixed table
                updated if resolved else None,
                random.choice(("agent", "system")) if resolved else None,
                random.choice(resolutions) if resolved else None,
                updated + timedelta(hours=1) if status == "snoozed" else None,
                "{}",
                0,
                0,
                0,
                random.randint(1, 5),
                first + n,
            )
        )
    return rows


async def load_issues(url: str, total: int) -> float:
    """Bulk-load ``total`` issues (secondary indexes built after the COPY); seconds taken."""
    started = time.perf_counter()
    conn = await postgres.connect(url, name="bench-read-load")
    try:
        indexes = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'inbox_issues'"
            " AND indexname <> 'inbox_issues_pkey'"
        )
        for index in indexes:
            await conn.execute(f"DROP INDEX {index['indexname']}")
        now = datetime.now(UTC)
        for first in range(1, total + 1, CHUNK):
            rows = _issue_rows(first, min(CHUNK, total + 1 - first), now)
            await conn.copy_records_to_table("inbox_issues", records=rows, columns=COLUMNS)
            done = first + len(rows) - 1
            print(f"  loaded {done:>9,} / {total:,} issues ({time.perf_counter() - started:.0f} s)")
        for index in indexes:
            await conn.execute(index["indexdef"])
        print(f"  {len(indexes)} indexes built ({time.perf_counter() - started:.0f} s)")
        await conn.execute("ANALYZE inbox_issues")
    finally:
        await conn.close()
    return time.perf_counter() - started


QUERIES = {
    "default (unresolved, priority)": "/api/issues?limit=50",
    "country=FI": "/api/issues?country=FI&limit=50",
    "open, high+critical": "/api/issues?status=open&severity=high&severity=critical&limit=50",
    "grocery DE, sort=updated_at": (
        "/api/issues?vertical=grocery&country=DE&sort=updated_at&limit=50"
    ),
    f"assignee={AGENTS[7]}": f"/api/issues?assignee={AGENTS[7]}&limit=50",
}
DEFAULT_PAGE = QUERIES["default (unresolved, priority)"]
# (environment of `inbox api`, label): the read cache as shipped, and turned off.
_MODES: tuple[tuple[dict[str, str], str], ...] = (
    ({}, ""),
    ({"INBOX_READ_CACHE_SECONDS": "0"}, ", uncached"),
)


async def inbox_queries(
    endpoints: Endpoints, url: str, clients: int, total: int, write_rate: int, seconds: float
) -> tuple[Figure, list[Figure]]:
    """/health, then each query with the read cache as shipped and with it off (its label
    says "uncached"), then the default page while issues are written at ``write_rate``/s
    (every projection commit moves the inbox position, so cached pages keep expiring)."""
    raw, figures = await _queries(endpoints, url, clients, total, *_MODES[0])
    figures += (await _queries(endpoints, url, clients, total, *_MODES[1]))[1]
    for env, label in _MODES:
        log = Path(tempfile.mkstemp(prefix="bench-read-api-", suffix=".log")[1])
        with running_api(
            Endpoints(url, endpoints.nats_url), log, log_level="WARNING", env=env
        ) as base:
            async with _client(base, clients) as get, _writing(endpoints, url, write_rate):
                await _run_clients(clients, WARMUP, lambda _: get(DEFAULT_PAGE))
                latencies, took = await _run_for(clients, seconds, lambda: get(DEFAULT_PAGE))
        figures.append(
            figure(f"GET default page, {write_rate} events/s written{label}", latencies, took)
        )
    return raw, figures


async def _queries(
    endpoints: Endpoints, url: str, clients: int, total: int, env: dict[str, str], label: str
) -> tuple[Figure, list[Figure]]:
    log = Path(tempfile.mkstemp(prefix="bench-read-api-", suffix=".log")[1])
    figures = []
    with running_api(Endpoints(url, endpoints.nats_url), log, log_level="WARNING", env=env) as base:
        async with _client(base, clients) as get:

            async def measure(name: str, path: str) -> Figure:
                await _run_clients(clients, WARMUP, lambda _: get(path))
                latencies, seconds = await _run_clients(clients, total, lambda _: get(path))
                return figure(f"GET {name}", latencies, seconds)

            raw = await measure(f"/health ({clients} clients)", "/health")
            for name, path in QUERIES.items():
                figures.append(await measure(name + label, path))
            first = json.loads(await get(DEFAULT_PAGE))
            assert len(first["items"]) == 50, first
            assert first["next_cursor"], first
            figures.append(
                await measure(
                    "second page (cursor)" + label,
                    f"/api/issues?limit=50&cursor={first['next_cursor']}",
                )
            )
    return raw, figures


@contextlib.asynccontextmanager
async def _client(base: str, clients: int) -> AsyncIterator[Callable[[str], Awaitable[bytes]]]:
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(
        base, connector=connector, headers=headers_for("bench")
    ) as http:

        async def get(path: str) -> bytes:
            async with http.get(path) as response:
                body = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"GET {path}: {response.status} {body!r}")
                return body

        yield get


async def _run_for(
    clients: int, seconds: float, one: Callable[[], Awaitable[object]]
) -> tuple[list[float], float]:
    """``clients`` concurrent loops calling ``one`` for ``seconds``: latencies, wall time."""
    latencies: list[float] = []
    started = time.perf_counter()
    end = started + seconds

    async def client() -> None:
        while (now := time.perf_counter()) < end:
            await one()
            latencies.append(time.perf_counter() - now)

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, time.perf_counter() - started


async def _wait_for(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30) -> None:
    deadline = time.perf_counter() + timeout
    while not await check():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def _write_paced(
    url: str,
    rate: int,
    done: threading.Event | multiprocessing.synchronize.Event,
    on_commit: Callable[[int, float], None] | None = None,
) -> None:
    """Report new issues at ``rate`` events/s (10 per save) until ``done``;
    ``on_commit(position, when)`` for each event written."""
    app = IssueApplication(env=eventstore_env(url, pool_size=2))
    service = IssueService(app=app, clock=SystemClock())
    per_tick, tick = 10, 10 / rate
    next_at = time.perf_counter()
    try:
        while not done.is_set():
            outcomes = service.execute_batch(
                [report_issue(f"w-{uuid.uuid4().hex}") for _ in range(per_tick)]
            )
            now = time.perf_counter()
            for outcome in outcomes if on_commit else ():
                on_commit(outcome.position, now)  # type: ignore[union-attr,misc]
            next_at += tick
            time.sleep(max(0.0, next_at - time.perf_counter()))  # pacing the writer
    finally:
        app.close()


@contextlib.asynccontextmanager
async def _writing(endpoints: Endpoints, url: str, rate: int) -> AsyncIterator[None]:
    """While the block runs: ``inbox project`` and a writer process reporting new issues at
    ``rate`` events/s, both out of this process (its clients measure undisturbed)."""
    log = Path(tempfile.mkstemp(prefix="bench-read-project-", suffix=".log")[1])
    env = os.environ | {
        "INBOX_DATABASE_URL": url,
        "INBOX_NATS_URL": endpoints.nats_url,
        "INBOX_LOG_LEVEL": "WARNING",
    }
    with log.open("wb") as out:
        project = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "project"], env=env, stdout=out, stderr=out
        )
    context = multiprocessing.get_context("spawn")
    done = context.Event()
    writer = context.Process(target=_write_paced, args=(url, rate, done))
    conn = await postgres.connect(url, name="bench-read-writing")

    async def followers_started() -> bool:
        return bool(await conn.fetchval("SELECT count(*) = 3 FROM projection_positions"))

    try:
        await _wait_for(followers_started, "inbox project to start")
        writer.start()
        yield
    finally:
        done.set()
        if writer.pid is not None:
            await anyio.to_thread.run_sync(writer.join)
        project.send_signal(signal.SIGTERM)
        await anyio.to_thread.run_sync(project.wait)
        await conn.close()
    assert writer.exitcode == 0, f"the writer process exited {writer.exitcode}"
    assert project.returncode == 0, log.read_text()


async def read_model_latency(url: str, rate: int, seconds: float) -> Figure:
    """Write ``rate`` events/s for ``seconds`` with the three followers running in-process;
    time from each commit until the inbox projection's position reaches it."""
    app = IssueApplication(env=eventstore_env(url, pool_size=2))
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(
            bootstrap.follower(
                url, app.mapper, PROJECTIONS[name], batch_size=1000, poll_interval=1.0
            ).run(stop)
        )
        for name in PROJECTIONS
    ]
    committed: dict[int, float] = {}
    seen_at: list[float] = []
    seen: list[int] = []

    def on_position(_conn: Any, _pid: int, _channel: str, payload: object) -> None:
        name, _, position = str(payload).rpartition(":")
        if name == "inbox":
            seen_at.append(time.perf_counter())
            seen.append(int(position))

    listener = await postgres.connect(url, name="bench-read-listener")
    await listener.add_listener(POSITIONS_CHANNEL, on_position)

    async def followers_started() -> bool:
        return bool(await listener.fetchval("SELECT count(*) = 3 FROM projection_positions"))

    async def caught_up() -> bool:
        return bool(seen) and seen[-1] >= max(committed)

    done = threading.Event()
    try:
        await _wait_for(followers_started, "the followers to start")
        async with anyio.create_task_group() as group:
            group.start_soon(
                functools.partial(
                    anyio.to_thread.run_sync, _write_paced, url, rate, done, committed.__setitem__
                )
            )
            await asyncio.sleep(seconds)  # the load's duration, not a wait for a condition
            done.set()
        await _wait_for(caught_up, "the inbox projection to catch up")
    finally:
        done.set()
        stop.set()
        await asyncio.gather(*tasks)
        await listener.close()
        await anyio.to_thread.run_sync(app.close)
    latencies = [seen_at[bisect.bisect_left(seen, p)] - at for p, at in committed.items()]
    return figure(
        f"commit -> inbox read model at {rate}/s ({len(latencies)} events)",
        latencies,
        seconds,
        compare=False,
    )


def _write_creates(url: str, events: int) -> None:
    app = IssueApplication(env=eventstore_env(url, pool_size=2))
    service = IssueService(app=app, clock=SystemClock())
    try:
        for written in range(0, events, 100):
            service.execute_batch([report_issue(f"r-{uuid.uuid4().hex}") for _ in range(100)])
            if (written + 100) % 20_000 == 0:
                print(f"  wrote {written + 100:>7,} / {events:,} events")
    finally:
        app.close()


# A lifecycle step: (chance an issue takes it, command). Reported issues are "medium";
# with these chances an issue has ~4.3 events on average.
_STEPS: tuple[tuple[float, Callable[[UUID], Command]], ...] = (
    (
        0.5,
        lambda i: Escalate(issue_id=i, actor="system", severity="high", evidence={"minutes": 12}),
    ),
    (0.6, lambda i: Assign(issue_id=i, actor="lead", assignee=random.choice(AGENTS))),
    (0.5, lambda i: Acknowledge(issue_id=i, actor="agent")),
    (0.7, lambda i: AddNote(issue_id=i, actor="agent", text="called the venue, food is late")),
    (0.3, lambda i: AddNote(issue_id=i, actor="agent", text="customer informed")),
    (0.7, lambda i: Resolve(issue_id=i, actor="agent", resolution="fixed", note="")),
)


def _write_lifecycles(url: str, events: int) -> None:
    """About ``events`` events: issues raised 100 at a time, then each taken through the
    steps of :data:`_STEPS` it draws, one batch per step (so one issue's events lie apart
    in the log, as they do when agents work on many issues). Batches stay at 100 commands:
    ``write_mixed`` of the integration tests sends a step of every issue in one batch,
    which at this size makes one huge save."""
    app = IssueApplication(env=eventstore_env(url, pool_size=2))
    service = IssueService(app=app, clock=SystemClock())
    written, report_at = 0, 20_000
    try:
        while written < events:
            outcomes = service.execute_batch(
                [report_issue(f"l-{uuid.uuid4().hex}") for _ in range(100)]
            )
            ids = [o.issue_id for o in outcomes]  # type: ignore[union-attr]
            written += len(ids)
            for chance, step in _STEPS:
                commands = [step(i) for i in ids if random.random() < chance]
                landed = service.execute_batch(commands)
                written += sum(not isinstance(o, Exception) for o in landed)
            if written >= report_at:
                print(f"  wrote {written:>7,} / {events:,} events")
                report_at += 20_000
    finally:
        app.close()


async def select_and_decode(url: str, mapper: Any) -> Figure:
    conn = await postgres.connect(url, name="bench-read-raw")
    try:
        started, after, count = time.perf_counter(), 0, 0
        while rows := await conn.fetch(
            f"SELECT {EVENT_COLUMNS} FROM inbox_events WHERE notification_id > $1"
            " ORDER BY notification_id LIMIT 2000",
            after,
        ):
            for row in rows:
                decode(mapper, row)
            after, count = rows[-1]["notification_id"], count + len(rows)
        return Figure("raw select + decode (2000/batch)", count, time.perf_counter() - started)
    finally:
        await conn.close()


def _rss_kb() -> dict[str, int]:
    current = 0
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                current = int(line.split()[1])
    return {"peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "current": current}


async def rebuild_rate(
    url: str, events: int, write: Callable[[str, int], None]
) -> tuple[Figure, Figure, dict[str, object]]:
    conn = await postgres.connect(url)
    try:
        stored = int(await conn.fetchval("SELECT count(*) FROM inbox_events"))
    finally:
        await conn.close()
    await anyio.to_thread.run_sync(write, url, max(0, events - stored))
    conn = await postgres.connect(url)
    try:
        issues = int(await conn.fetchval("SELECT count(DISTINCT originator_id) FROM inbox_events"))
    finally:
        await conn.close()
    app = IssueApplication(env=eventstore_env(url, pool_size=1))
    try:
        raw = await select_and_decode(url, app.mapper)
        before = _rss_kb()
        result = await rebuild(
            EventLog(url, app.mapper), PROJECTIONS["inbox"], batch_size=2000, swap=False
        )
        after = _rss_kb()
    finally:
        await anyio.to_thread.run_sync(app.close)
    label = f"rebuild inbox, swap=False ({result.events} events, {issues} issues)"
    built = Figure(label, result.events, result.seconds)
    return raw, built, {"rss_kb_before_rebuild": before, "rss_kb_after_rebuild": after}


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench read")
    parser.add_argument("--issues", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rebuild-events", type=int, default=100_000)
    args = parser.parse_args(argv)
    with servers() as endpoints:
        async with scratch_database(endpoints.database_url) as url:
            print(f"loading {args.issues:,} issues into inbox_issues ...")
            load_seconds = await load_issues(url, args.issues)
            raw, figures = await inbox_queries(
                endpoints, url, args.clients, args.requests, args.rate, args.seconds
            )
        async with scratch_database(endpoints.database_url) as url:
            figures.append(await read_model_latency(url, args.rate, args.seconds))
            print(f"writing up to {args.rebuild_events:,} events (one per issue) to rebuild ...")
            select_raw, rebuilt, memory = await rebuild_rate(
                url, args.rebuild_events, _write_creates
            )
        async with scratch_database(endpoints.database_url) as url:
            print(f"writing ~{args.rebuild_events:,} events (issue lifecycles) to rebuild ...")
            lived_raw, lived, lived_memory = await rebuild_rate(
                url, args.rebuild_events, _write_lifecycles
            )
    notes: dict[str, object] = {
        "issues": args.issues,
        "requests": args.requests,
        "clients": args.clients,
        "load_seconds": round(load_seconds, 1),
        "cpus": os.cpu_count(),
    }
    report("read", figures, raw, notes)
    report("rebuild", [rebuilt], select_raw, notes | memory)
    report("rebuild lifecycles", [lived], lived_raw, notes | lived_memory)
    print(f"RSS (KiB) before/after the rebuilds: {memory}, {lived_memory}")
    print("targets: queries p99 <= 25 ms and >= 0.5x /health; commit -> read model p99 <= 50 ms;")
    print("         rebuild >= 0.5x raw select + decode")
    for one, limit in (
        *((one, raw) for one in figures),
        (rebuilt, select_raw),
        (lived, lived_raw),
    ):
        print(f"  {_verdict(one, limit):<20} {one.name}")


def _verdict(one: Figure, raw: Figure) -> str:
    missed = []
    if one.p99_ms > (25 if one.compare else 50):
        missed.append("p99")
    if one.compare and one.rate < 0.5 * raw.rate:
        missed.append("ratio")
    return "MISSED " + "+".join(missed) if missed else "met"
