"""Commands per second through the application layer and through HTTP, next to raw asyncpg
single-row INSERT transactions measured in the same run (issue 2, "Numbers").

    ./dev bench commands [--clients 50] [--commands 6000] [--issues 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from uuid import UUID

import aiohttp
import anyio.to_thread

from adapters import postgres
from adapters.clock import SystemClock
from adapters.eventstore import eventstore_env
from app.bootstrap import Endpoints
from app.bus import CommandBus
from app.service import IssueApplication, IssueService
from tests.api_process import running_api
from tests.bench.common import Figure, figure, report, scratch_database, servers
from tests.integration.helpers import note
from tests.integration.helpers import report as report_issue
from tests.tokens import headers_for

PAYLOAD = b"x" * 400  # about the size of one stored note event


async def _run_clients(
    clients: int, total: int, one: Callable[[int], Awaitable[object]]
) -> tuple[list[float], float]:
    """``clients`` concurrent loops share ``total`` calls; returns latencies and wall time."""
    latencies: list[float] = []
    counter = iter(range(total))

    async def client() -> None:
        for n in counter:
            started = time.perf_counter()
            await one(n)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, time.perf_counter() - started


async def raw_inserts(url: str, clients: int, total: int) -> Figure:
    pool = await postgres.create_pool(url, max_size=clients, min_size=clients)
    try:
        await pool.execute(
            "CREATE TABLE IF NOT EXISTS bench_raw (id bigserial PRIMARY KEY, payload bytea)"
        )

        async def insert(_: int) -> None:
            await pool.execute("INSERT INTO bench_raw (payload) VALUES ($1)", PAYLOAD)

        latencies, seconds = await _run_clients(clients, total, insert)
    finally:
        await pool.close()
    return figure(f"raw asyncpg INSERT tx ({clients} conns)", latencies, seconds)


def _create_issues(service: IssueService, count: int) -> list[UUID]:
    ids = []
    for start in range(0, count, 100):
        commands = [report_issue(f"bench-{start + n}-{random.random()}") for n in range(100)]
        outcomes = service.execute_batch(commands[: count - start])
        ids += [o.issue_id for o in outcomes]  # type: ignore[union-attr]
    return ids


async def through_application(
    url: str,
    clients: int,
    total: int,
    issue_ids: list[UUID],
    batch_size: int,
    writers: int,
) -> Figure:
    app = IssueApplication(env=eventstore_env(url, pool_size=writers + 1))
    service = IssueService(app=app, clock=SystemClock())
    bus = CommandBus(service, batch_size=batch_size, writers=writers, timeout=60)
    bus.start()
    sizes: list[int] = []
    bus._on_batch = lambda size, _: sizes.append(size)
    try:

        async def one(n: int) -> None:
            await bus.submit(note(issue_ids[n % len(issue_ids)], f"note {n}"))

        latencies, seconds = await _run_clients(clients, total, one)
    finally:
        await bus.stop()
        await anyio.to_thread.run_sync(app.close)
    mean = sum(sizes) / len(sizes)
    return figure(
        f"application, batch<={batch_size} (mean {mean:.0f}), {writers} writers", latencies, seconds
    )


async def through_http(
    endpoints: Endpoints,
    url: str,
    clients: int,
    total: int,
    issue_ids: list[UUID],
) -> list[Figure]:
    log = Path(tempfile.mkstemp(prefix="bench-api-", suffix=".log")[1])
    figures = []
    # No projection worker runs here: /ready would call the read models stalled.
    with running_api(
        Endpoints(url, endpoints.nats_url), log, log_level="WARNING", ready_path="/health"
    ) as base:
        # aiohttp, not httpx: with 50 connections httpx's pool itself tops out near
        # 400 requests/s here, far below the server.
        connector = aiohttp.TCPConnector(limit=clients)
        async with aiohttp.ClientSession(
            base, connector=connector, headers=headers_for("bench")
        ) as http:

            async def health(_: int) -> None:
                async with http.get("/health") as response:
                    await response.read()

            latencies, seconds = await _run_clients(clients, total, health)
            figures.append(figure(f"HTTP GET /health ({clients} clients)", latencies, seconds))

            async def one(n: int) -> None:
                async with http.post(
                    f"/api/issues/{issue_ids[n % len(issue_ids)]}/notes",
                    json={"agent_id": "bench", "text": f"note {n}"},
                ) as response:
                    if response.status != 200:
                        raise RuntimeError(await response.text())

            latencies, seconds = await _run_clients(clients, total, one)
            figures.append(
                figure(f"HTTP POST /notes ({clients} clients, 1 API process)", latencies, seconds)
            )
    return figures


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench commands")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--commands", type=int, default=6000)
    parser.add_argument("--issues", type=int, default=2000)
    args = parser.parse_args(argv)
    with servers() as endpoints:
        async with scratch_database(endpoints.database_url) as url:
            app = IssueApplication(env=eventstore_env(url, pool_size=2))
            issue_ids = await anyio.to_thread.run_sync(
                _create_issues, IssueService(app=app, clock=SystemClock()), args.issues
            )
            await anyio.to_thread.run_sync(app.close)
            raw = await raw_inserts(url, args.clients, args.commands)
            figures = [
                await through_application(url, args.clients, args.commands // 4, issue_ids, 1, 1),
                await through_application(url, args.clients, args.commands, issue_ids, 100, 2),
                *await through_http(endpoints, url, args.clients, args.commands, issue_ids),
            ]
            report(
                "commands",
                figures,
                raw,
                {"clients": args.clients, "issues": args.issues, "cpus": os.cpu_count()},
            )
