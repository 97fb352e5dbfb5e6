"""Detection throughput: order events from JetStream through the detector (watch rows,
rules, issue commands) next to a raw nats-py pull-consume of the same events.

    python -c "import asyncio, sys; from tests.bench import bench_detect; \
asyncio.run(bench_detect.main(sys.argv[1:]))" [--events 20000] [--batch 256]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import NotFoundError

from adapters import postgres
from adapters.clock import SystemClock
from adapters.nats import ensure_stream
from app.detection import ORDER_EVENTS
from app.simulator import order_events as lifecycle_events
from app.workers.detector import ConsumerConfigValues, consume_orders
from tests.bench.common import Figure, report, scratch_database, servers
from tests.integration import helpers

DEADLINE = 600.0  # seconds any one phase may take before the benchmark gives up


def order_events(count: int, seed: int = 7) -> tuple[list[dict[str, Any]], int]:
    """``count`` events of simulated orders placed in the last hour, only the steps that
    already happened (a mix of delivered and in-flight orders), in ``occurred_at`` order.
    Returns (events, orders)."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    events: list[tuple[datetime, dict[str, Any]]] = []
    orders = 0
    while len(events) < count:
        order_id = f"bench-{orders}-{uuid.UUID(int=rng.getrandbits(128)).hex[:8]}"
        placed = now - timedelta(minutes=rng.uniform(0, 60))
        orders += 1
        events += [(at, body) for at, body in lifecycle_events(rng, order_id, placed) if at <= now]
    events.sort(key=lambda pair: pair[0])
    return [body for _, body in events[:count]], orders


async def publish(js: JetStreamContext, prefix: str, events: list[dict[str, Any]]) -> str:
    """A fresh stream with ``events`` on it; its name."""
    stream = f"BENCH_DETECT_{uuid.uuid4().hex[:8]}"
    await ensure_stream(js, name=stream, subjects=[f"{prefix}.>"], duplicate_window=1200)
    futures = [
        await js.publish_async(
            f"{prefix}.{body['type']}",
            msgspec.json.encode(body),
            headers={"Nats-Msg-Id": body["event_id"]},
            wait_stall=60,
        )
        for body in events
    ]
    await asyncio.gather(*(asyncio.wait_for(f, 30) for f in futures))
    info = await js.stream_info(stream)
    assert info.state.messages == len(events), (info.state.messages, len(events))
    return stream


async def raw_consume(client: NATS, prefix: str, stream: str, count: int, batch: int) -> Figure:
    js = client.jetstream()
    subscription = await js.pull_subscribe(
        f"{prefix}.>",
        durable="bench-raw",
        stream=stream,
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_ack_pending=20_000),
    )
    received = 0
    started = time.perf_counter()
    deadline = started + DEADLINE
    while received < count:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"raw consume: {received} of {count} after {DEADLINE} s")
        try:
            messages = await subscription.fetch(batch, timeout=1)
        except TimeoutError:
            continue
        for message in messages:
            msgspec.json.decode(message.data)
            await message.ack()
        received += len(messages)
    # The last acks are only queued on the client until flushed.
    await client.flush()
    seconds = time.perf_counter() - started
    await subscription.unsubscribe()
    return Figure(f"raw nats-py pull + ack + JSON (batch {batch})", received, seconds)


def _applied() -> float:
    """Order events the detector in this process has stored (accepted or duplicate). Only
    this counter is collected: ``REGISTRY.get_sample_value`` collects every metric, the
    process collector's /proc reads included, which took ~12% of this process's time when
    polled every 5 ms during a run (cProfile)."""
    return sum(
        sample.value
        for metric in ORDER_EVENTS.collect()
        for sample in metric.samples
        if sample.name == "inbox_order_events_total"
        and sample.labels["outcome"] in ("accepted", "duplicate")
    )


async def wait_acknowledged(
    js: JetStreamContext, stream: str, durable: str, count: int, before: float
) -> None:
    """Until the detector has stored ``count`` events (watched in-process) and JetStream
    has their acks. Polling the consumer's info all along would distort the figure: each
    CONSUMER.INFO request slows the consumer's own fetches down (seen here: 20 ms polling
    made fetches of 500 messages take up to 1 s instead of 20 ms)."""
    deadline = time.perf_counter() + DEADLINE
    while _applied() - before < count:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"detector did not store {count} events within {DEADLINE} s")
        await asyncio.sleep(0.005)
    while time.perf_counter() < deadline:
        info = await js.consumer_info(stream, durable)
        if info.delivered.stream_seq == count and info.num_ack_pending == 0:
            return
        await asyncio.sleep(0.005)
    raise RuntimeError(f"detector did not acknowledge {count} events within {DEADLINE} s")


async def whole_path(
    url: str, client: NATS, prefix: str, stream: str, count: int, batch: int, in_flight: int
) -> tuple[Figure, dict[str, Any]]:
    js = client.jetstream()
    pool = await postgres.create_pool(url, max_size=4)
    issues = helpers.service(url)
    try:
        detector = helpers.detector(pool, issues, SystemClock())
        config = ConsumerConfigValues(
            stream=stream,
            subject_prefix=prefix,
            durable="bench-detector",
            batch_size=batch,
            create_stream=False,
            in_flight=in_flight,
        )
        stop = asyncio.Event()
        before = _applied()
        started = time.perf_counter()
        task = asyncio.create_task(consume_orders(client, detector, config, stop))
        try:
            await wait_acknowledged(js, stream, config.durable, count, before)
            seconds = time.perf_counter() - started
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
        created = await pool.fetchval("SELECT count(DISTINCT originator_id) FROM inbox_events")
        issue_events = await pool.fetchval("SELECT count(*) FROM inbox_events")
        watched = await pool.fetchval("SELECT count(*) FROM order_watch")
        contacts = await pool.fetchval("SELECT count(*) FROM support_contacts")
    finally:
        await pool.close()
        issues.app.close()
    notes = {
        "issues_created": created,
        "issue_events": issue_events,
        "orders_watched": watched,
        "support_contacts": contacts,
    }
    label = f"detector via consume_orders (batch {batch}, {in_flight} in flight)"
    return Figure(label, count, seconds), notes


async def replicas_path(
    endpoints_nats: str, url: str, prefix: str, stream: str, count: int, batch: int, replicas: int
) -> Figure:
    """``replicas`` separate ``inbox detect`` processes (timers and retention sweep
    included) on the stream. Timed from the first delivery (process start-up left out;
    the consumer's info polled until then, while nothing is fetched yet) to every event
    stored (counted in the database every 20 ms) and acknowledged (the consumer's info,
    asked only then)."""
    env = os.environ | {
        "INBOX_DATABASE_URL": url,
        "INBOX_NATS_URL": endpoints_nats,
        "INBOX_ORDERS_STREAM": stream,
        "INBOX_ORDERS_SUBJECT_PREFIX": prefix,
        "INBOX_ORDERS_BATCH_SIZE": str(batch),
        "INBOX_LOG_LEVEL": "WARNING",
    }
    processes = [
        subprocess.Popen([sys.executable, "-m", "app.cli", "detect"], env=env)
        for _ in range(replicas)
    ]
    client = await nats.connect(endpoints_nats)
    try:
        js = client.jetstream()
        deadline = time.perf_counter() + DEADLINE

        def check() -> None:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{replicas} detectors did not finish within {DEADLINE} s")
            if any(p.poll() is not None for p in processes):
                raise RuntimeError("a detector process exited")

        while True:  # until a detector has the first messages in hand
            check()
            try:
                info = await js.consumer_info(stream, "inbox-detector")
            except NotFoundError:
                info = None
            if info is not None and info.delivered.stream_seq > 0:
                break
            await asyncio.sleep(0.02)
        started = time.perf_counter()
        # Stored events counted in the database meanwhile (CONSUMER.INFO polled during the
        # run slows the fetches it watches), then the acks once.
        conn = await postgres.connect(url)
        try:
            while await conn.fetchval("SELECT count(*) FROM order_events") < count:
                check()
                await asyncio.sleep(0.02)
        finally:
            await conn.close()
        while True:
            check()
            info = await js.consumer_info(stream, "inbox-detector")
            if info.delivered.stream_seq == count and info.num_ack_pending == 0:
                break
            await asyncio.sleep(0.005)
        seconds = time.perf_counter() - started
    finally:
        await client.close()
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(30)
    return Figure(f"{replicas} inbox detect processes (batch {batch})", count, seconds)


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench detect")
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=2, help="batches handled at once")
    parser.add_argument(
        "--replicas", type=int, default=0, help="also measure this many `inbox detect` processes"
    )
    args = parser.parse_args(argv)
    events, orders = order_events(args.events)
    payload = sum(len(msgspec.json.encode(e)) for e in events) / len(events)
    with servers() as endpoints:
        client = await nats.connect(endpoints.nats_url)
        js = client.jetstream()
        streams: list[str] = []
        try:
            run = uuid.uuid4().hex[:8]
            raw_prefix, path_prefix = f"bench_raw_{run}.order", f"bench_det_{run}.order"
            streams.append(await publish(js, raw_prefix, events))
            raw = await raw_consume(client, raw_prefix, streams[-1], len(events), args.batch)
            streams.append(await publish(js, path_prefix, events))
            async with scratch_database(endpoints.database_url) as url:
                whole, notes = await whole_path(
                    url, client, path_prefix, streams[-1], len(events), args.batch, args.in_flight
                )
            figures = [whole]
            if args.replicas:
                replica_prefix = f"bench_rep_{run}.order"
                streams.append(await publish(js, replica_prefix, events))
                async with scratch_database(endpoints.database_url) as url:
                    figures.append(
                        await replicas_path(
                            endpoints.nats_url,
                            url,
                            replica_prefix,
                            streams[-1],
                            len(events),
                            args.batch,
                            args.replicas,
                        )
                    )
        finally:
            for stream in streams:
                await js.delete_stream(stream)
            await client.close()
    report(
        "detect",
        figures,
        raw,
        {
            "orders": orders,
            "events_per_order": round(len(events) / orders, 1),
            "payload_bytes": round(payload),
            "batch": args.batch,
            "in_flight": args.in_flight,
            "cpus": os.cpu_count(),
            **notes,
        },
    )
    print(
        f"{len(events)} events of {orders} orders; {notes['issues_created']} issues created"
        f" ({notes['issue_events']} issue events), {notes['support_contacts']} support contacts"
    )
