"""Relay throughput next to raw nats-py publish_async of same-sized messages, and commit →
stream latency at a steady rate (issue 3, "Numbers").

    ./dev bench relay [--events 20000] [--rate 1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

import anyio.to_thread
import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from adapters import postgres
from adapters.clock import SystemClock
from adapters.eventstore import eventstore_env
from app.service import IssueApplication, IssueService
from app.workers.relay import Relay, RelayConfig
from tests.bench.common import Figure, figure, report, scratch_database, servers
from tests.integration.helpers import note
from tests.integration.helpers import report as report_issue


def _config(run: str) -> RelayConfig:
    return RelayConfig(
        stream=f"BENCH_{run}",
        subject_prefix=f"bench_{run}.issue",
        source="/bench",
        duplicate_window=1200,
        batch_size=1000,
    )


def _write_events(service: IssueService, events: int) -> None:
    """Issues with two notes each: 3 events per issue, 60 per save()."""
    written = 0
    while written < events:
        created = service.execute_batch([report_issue(f"b-{uuid.uuid4().hex}") for _ in range(20)])
        ids = [c.issue_id for c in created]  # type: ignore[union-attr]
        for n in range(2):
            service.execute_batch([note(i, f"note {n} " + "x" * 80) for i in ids])
        written += 60


async def _wait_caught_up(url: str, stream: str) -> None:
    conn = await postgres.connect(url)
    try:
        while True:
            newest = await conn.fetchval("SELECT max(notification_id) FROM inbox_events")
            position = await conn.fetchval(
                "SELECT position FROM relay_state WHERE stream=$1", stream
            )
            if position == newest:
                return
            await asyncio.sleep(0.01)
    finally:
        await conn.close()


async def raw_publish(
    nats_url: str, sample: tuple[str, bytes, dict[str, str]], count: int
) -> Figure:
    client = await nats.connect(nats_url)
    js = client.jetstream()
    run = uuid.uuid4().hex[:8]
    await js.add_stream(name=f"RAW_{run}", subjects=[f"raw_{run}.>"])
    _, payload, headers = sample
    # Only the headers a plain publisher would send: no expected-stream check.
    headers = {k: v for k, v in headers.items() if not k.startswith("Nats-")}
    try:
        started = time.perf_counter()
        futures = []
        for n in range(count):
            futures.append(
                await js.publish_async(
                    f"raw_{run}.issue.note_added",
                    payload,
                    headers=headers | {"Nats-Msg-Id": f"raw-{n}"},
                    wait_stall=60,
                )
            )
        await asyncio.gather(*(asyncio.wait_for(f, 30) for f in futures))
        seconds = time.perf_counter() - started
    finally:
        await js.delete_stream(f"RAW_{run}")
        await client.close()
    return Figure("raw nats-py publish_async (same size)", count, seconds)


async def relay_throughput(
    url: str, nats_url: str, events: int
) -> tuple[Figure, tuple[str, bytes, dict[str, str]]]:
    app = IssueApplication(env=eventstore_env(url, pool_size=2))
    service = IssueService(app=app, clock=SystemClock())
    await anyio.to_thread.run_sync(_write_events, service, events)
    client = await nats.connect(nats_url)
    config = _config(uuid.uuid4().hex[:8])
    relay = Relay(database_url=url, nats=client, mapper=app.mapper, config=config)
    stop = asyncio.Event()
    try:
        started = time.perf_counter()
        task = asyncio.create_task(relay.run(stop))
        await _wait_caught_up(url, config.stream)
        seconds = time.perf_counter() - started
        stop.set()
        await task
        info = await client.jetstream().stream_info(config.stream)
        count = info.state.messages
        sub = await client.jetstream().pull_subscribe(
            f"{config.subject_prefix}.note_added", stream=config.stream
        )
        message = (await sub.fetch(1, timeout=5))[0]
        sample = (message.subject, message.data, dict(message.headers or {}))
        await client.jetstream().delete_stream(config.stream)
    finally:
        await client.close()
        app.close()
    return Figure(f"relay, {count} events from position 0", count, seconds), sample


async def relay_latency(url: str, nats_url: str, rate: int, seconds: float) -> Figure:
    """Write ``rate`` events/s for ``seconds``; time from commit to arrival on the stream."""
    app = IssueApplication(env=eventstore_env(url, pool_size=2))
    service = IssueService(app=app, clock=SystemClock())
    client = await nats.connect(nats_url)
    config = _config(uuid.uuid4().hex[:8])
    relay = Relay(database_url=url, nats=client, mapper=app.mapper, config=config)
    stop = asyncio.Event()
    committed: dict[int, float] = {}
    arrived: dict[int, float] = {}
    task = asyncio.create_task(relay.run(stop))

    async def on_message(message: Msg) -> None:
        arrived[int((message.headers or {})["Inbox-Position"])] = time.perf_counter()

    # Delivered after storage: an ordered push consumer on the relay's stream.
    await _stream_ready(client, config.stream)
    subscription = await client.jetstream().subscribe(
        f"{config.subject_prefix}.>", stream=config.stream, ordered_consumer=True, cb=on_message
    )
    per_tick, tick = 10, 10 / rate

    def write() -> None:
        next_at = time.perf_counter()
        end = next_at + seconds
        while next_at < end:
            outcomes = service.execute_batch(
                [report_issue(f"l-{uuid.uuid4().hex}") for _ in range(per_tick)]
            )
            now = time.perf_counter()
            for outcome in outcomes:
                committed[outcome.position] = now  # type: ignore[union-attr]
            next_at += tick
            time.sleep(max(0.0, next_at - time.perf_counter()))  # pacing the writer

    try:
        await anyio.to_thread.run_sync(write)
        deadline = time.perf_counter() + 30
        while (
            len(arrived.keys() & committed.keys()) < len(committed)
            and time.perf_counter() < deadline
        ):
            await asyncio.sleep(0.01)
        stop.set()
        await task
        await subscription.unsubscribe()
        await client.jetstream().delete_stream(config.stream)
    finally:
        await client.close()
        app.close()
    latencies = [arrived[p] - committed[p] for p in committed if p in arrived]
    lost = len(committed) - len(latencies)
    assert lost == 0, f"{lost} events did not arrive"
    return figure(
        f"commit -> stream at {rate}/s ({len(latencies)} events)",
        latencies,
        seconds,
        compare=False,
    )


async def _stream_ready(client: NATS, stream: str) -> None:
    deadline = time.perf_counter() + 10
    while time.perf_counter() < deadline:
        try:
            await client.jetstream().stream_info(stream)
        except NotFoundError:
            await asyncio.sleep(0.05)
        else:
            return
    raise RuntimeError(f"stream {stream} was never created")


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench relay")
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args(argv)
    with servers() as endpoints:
        async with scratch_database(endpoints.database_url) as url:
            relayed, sample = await relay_throughput(url, endpoints.nats_url, args.events)
        raw = await raw_publish(endpoints.nats_url, sample, relayed.operations)
        # A database of its own: no backlog from the throughput run in front of it.
        async with scratch_database(endpoints.database_url) as url:
            latency = await relay_latency(url, endpoints.nats_url, args.rate, args.seconds)
            report(
                "relay",
                [relayed, latency],
                raw,
                {"payload_bytes": len(sample[1]), "cpus": os.cpu_count()},
            )
