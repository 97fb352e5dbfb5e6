"""The simulator's pharmacy and florist orders, published to NATS as ``inbox simulate``
publishes them, are taken by the detector's consumer as they are: no dead letter, every
event stored, the pharmacy's own events among them and no courier event of the florist's."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter

import asyncpg
import nats

from adapters.clock import ScaledClock
from adapters.nats import ensure_stream
from app.bootstrap import Endpoints
from app.service import IssueService
from app.simulator import simulate
from app.workers.detector import ConsumerConfigValues, consume_orders
from tests.conftest import RUN_ID, async_wait_until
from tests.integration import helpers

COURIER_EVENTS = {
    "courier_assigned",
    "courier_unassigned",
    "courier_arrived_at_venue",
    "courier_location",
}


async def test_the_simulated_pharmacy_and_florist_orders_pass_the_detectors_consumer(
    endpoints: Endpoints, pool: asyncpg.Pool, writer: IssueService
) -> None:
    stream, prefix = f"ORDERS_{RUN_ID}_{uuid.uuid4().hex[:6]}", f"o_{uuid.uuid4().hex[:8]}"
    client = await nats.connect(endpoints.nats_url)
    js = client.jetstream()
    await ensure_stream(js, name=stream, subjects=[f"{prefix}.>"], duplicate_window=1200)
    # An hour of order time a real second: 30 orders' lives take a few seconds.
    clock = ScaledClock(3600.0)
    detector = helpers.detector(pool, writer, clock)
    config = ConsumerConfigValues(
        stream=stream, subject_prefix=prefix, durable="sim", create_stream=False
    )
    stop = asyncio.Event()
    consumer = asyncio.create_task(consume_orders(client, detector, config, stop))
    try:
        published = await asyncio.wait_for(
            simulate(
                client,
                subject_prefix=prefix,
                orders=30,
                rate=10.0,
                seed=4,
                clock=clock,
                stop=asyncio.Event(),
                verticals=(("pharmacy", 1.0), ("florist", 1.0)),
            ),
            60,
        )

        async def stored() -> bool:
            assert not consumer.done(), consumer
            return bool(await pool.fetchval("SELECT count(*) FROM order_events") == published)

        await async_wait_until(stored, timeout=30, what="every simulated event stored")
        assert await pool.fetchval("SELECT count(*) FROM dead_letters") == 0
        rows = await pool.fetch(
            "SELECT body ->> 'vertical' AS vertical, body ->> 'type' AS type FROM order_events"
        )
    finally:
        stop.set()
        await asyncio.wait_for(consumer, 20)
        with contextlib.suppress(Exception):
            await js.delete_stream(stream)
        await client.close()
    seen = Counter((r["vertical"], r["type"]) for r in rows)
    assert {v for v, _ in seen} == {"pharmacy", "florist"}
    assert seen["pharmacy", "prescription_submitted"] > 0
    assert seen["pharmacy", "prescription_approved"] > 0
    assert not {t for v, t in seen if v == "florist"} & COURIER_EVENTS
    assert seen["florist", "order_delivered"] > 0
