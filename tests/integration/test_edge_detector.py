"""Hostile order events against the real detector: whatever a message holds, it is
parked (dead_letters) and terminated, the consumer goes on, and a list over HTTP is
judged event by event."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from app import bootstrap
from app.bootstrap import Endpoints
from app.detection import Detector
from app.http.app import create_app
from app.ingest import MAX_EVENT_BYTES
from app.service import IssueService
from app.settings import Settings
from tests.integration import helpers
from tests.integration.helpers import consuming, handled
from tests.integration.test_detection import T0, Clock, placed, state
from tests.tokens import headers_for


@pytest.fixture
def detector(pool: asyncpg.Pool, writer: IssueService) -> Detector:
    clock = Clock()
    clock.at = T0 + timedelta(minutes=20)
    return helpers.detector(pool, writer, clock)


def deep(levels: int) -> bytes:
    return b'{"a":' * levels + b"1" + b"}" * levels


async def test_messages_that_cannot_be_read_are_parked_and_the_consumer_goes_on(
    endpoints: Endpoints, pool: asyncpg.Pool, writer: IssueService, detector: Detector
) -> None:
    good = msgspec.json.encode(dataclasses.asdict(placed("edge-good")))
    nul = msgspec.json.encode({**dataclasses.asdict(placed("edge-nul")), "order_id": "a\x00b"})
    hostile = {
        "deep": deep(5_000),  # far past the decoder's recursion limit, within the size
        "deep data": good[:-1] + b',"extra":' + deep(5_000) + b"}",
        "large": deep(50_000),
        "nul": nul,
    }
    bodies = [*hostile.values(), good]
    async with consuming(endpoints.nats_url, detector, bodies, durable="edge-test") as task:

        async def done() -> bool:
            return state(
                writer, "edge-good", "venue_acceptance_delayed"
            ) is not None and await pool.fetchval("SELECT count(*) FROM dead_letters") == len(
                hostile
            )

        await handled(task, done)
        letters = await pool.fetch("SELECT source, reason, payload FROM dead_letters ORDER BY id")
        assert {letter["source"] for letter in letters} == {"nats"}
        assert [bytes(letter["payload"]) for letter in letters] == list(hostile.values())
        reasons = [letter["reason"] for letter in letters]
        assert "nested too deeply" in reasons[0]
        assert "nested too deeply" in reasons[1]
        assert f"over {MAX_EVENT_BYTES} bytes" in reasons[2]
        assert "NUL" in reasons[3]
        assert "order_id" in reasons[3]


async def test_parking_keeps_an_id_and_reason_postgresql_cannot_store_escaped(
    detector: Detector, pool: asyncpg.Pool
) -> None:
    await detector.park("http", [("id\x00one", "reason \x00 \ud800", {"event_id": "id\x00one"})])
    letter = await pool.fetchrow("SELECT event_id, reason, payload FROM dead_letters")
    assert letter is not None
    assert (letter["event_id"], letter["reason"]) == ("id\\u0000one", "reason \\u0000 \\ud800")
    assert msgspec.json.decode(letter["payload"]) == {"event_id": "id\x00one"}


async def test_replaying_a_letter_that_cannot_be_decoded_leaves_it_parked(
    detector: Detector, pool: asyncpg.Pool
) -> None:
    await detector.park("nats", [(None, "deep", deep(50_000)), (None, "big", b" " * 100_000)])
    assert await detector.replay_dead_letters() == (0, 2)
    assert await pool.fetchval("SELECT count(*) FROM dead_letters") == 2


async def test_a_list_over_http_is_judged_event_by_event_when_the_detector_fails_on_one(
    endpoints: Endpoints, settings: Settings
) -> None:
    """One order the detector fails on (a bug) parks that order's events and names them;
    the other events of the list are stored: 202, not 500."""

    class Failing(Detector):
        async def _visit(self, batch: Any, visits: Any, rules: Any) -> None:
            if any(visit.order_id == "http-poison" for visit in visits):
                raise RuntimeError("a bug in the rules")
            await super()._visit(batch, visits, rules)

    async with bootstrap.container(settings, endpoints) as built:
        built.detector = helpers.detector(built.pool, built.issues, built.clock, kind=Failing)
        ids = [f"http-{uuid.uuid4().hex[:8]}", "http-poison", f"http-{uuid.uuid4().hex[:8]}"]
        events = [msgspec.to_builtins(dataclasses.asdict(placed(order_id))) for order_id in ids]
        app = create_app(built)
        app.state.container = built  # what its lifespan does (httpx runs no lifespan)
        # Litestar types an ASGI scope as its TypedDicts, httpx as a plain MutableMapping:
        # the same protocol, two spellings mypy cannot unify.
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(
            transport=transport, base_url="http://inbox", headers=headers_for(role="service")
        ) as client:
            response = await client.post("/api/order-events", json=events)
            assert response.status_code == 202, response.text
            report = response.json()
            assert (report["accepted"], report["rejected"]) == (2, 1)
            assert report["rejections"][0]["index"] == 1
            assert report["rejections"][0]["event_id"] == events[1]["event_id"]
        letter = await built.pool.fetchrow(
            "SELECT source, reason FROM dead_letters WHERE event_id = $1", events[1]["event_id"]
        )
        assert letter is not None
        assert letter["source"] == "detector"
        assert "a bug in the rules" in letter["reason"]
