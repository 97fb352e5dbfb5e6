"""``inbox up``: the API and the relay in one process, seen from outside (HTTP and NATS)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path

import httpx
import nats
import nats.js.errors

from app.bootstrap import Endpoints
from tests.api_process import running_api
from tests.conftest import RUN_ID, wait_until


def test_up_publishes_issue_events_and_reports_relay_progress(
    endpoints: Endpoints, tmp_path: Path
) -> None:
    stream = f"INBOX_{RUN_ID}_UP"
    prefix = f"inbox_{RUN_ID}_up.issue"
    env = {
        "INBOX_INBOX_STREAM": stream,
        "INBOX_INBOX_SUBJECT_PREFIX": prefix,
        "INBOX_ORDERS_STREAM": f"ORDERS_{RUN_ID}_UP",
        "INBOX_ORDERS_SUBJECT_PREFIX": f"orders_{RUN_ID}_up",
    }
    with (
        running_api(endpoints, tmp_path / "up.log", command="up", env=env) as base,
        httpx.Client(base_url=base, timeout=10) as http,
    ):
        order_id = f"ord-{uuid.uuid4().hex[:10]}"
        created = http.post(
            "/api/issues",
            json={
                "agent_id": "ann",
                "order_id": order_id,
                "kind": "no_courier_assigned",
                "severity": "high",
                "vertical": "parcel",
                "country": "DE",
                "city": "Berlin",
            },
        ).json()

        def relayed() -> bool:
            relay = http.get("/ready").json()["relay"]
            return relay["status"] == "running" and relay["position"] >= created["position"]

        wait_until(relayed, timeout=20, what="the relay to publish the new issue")
        metrics = http.get("/metrics").text
        for name in (
            "inbox_relay_published_total",
            "inbox_relay_lag_events",
            "inbox_relay_retries_total",
        ):
            assert name in metrics, name

    async def published(msg_id: str) -> bool:
        """Whether the stream holds msg_id (this run's database has other issues too)."""
        client = await nats.connect(endpoints.nats_url)
        try:
            js = client.jetstream()
            subscription = await js.pull_subscribe(f"{prefix}.detected", stream=stream)
            try:
                while True:
                    messages = await subscription.fetch(1000, timeout=2)
                    for message in messages:
                        await message.ack()  # else delivery stops at max_ack_pending
                    if any(m.headers and m.headers["Nats-Msg-Id"] == msg_id for m in messages):
                        return True
            except nats.errors.TimeoutError:
                return False
        finally:
            await client.jetstream().delete_stream(stream)
            await client.close()

    assert asyncio.run(published(f"{created['issue_id']}:1"))


def test_up_with_the_simulator_fills_the_inbox_within_a_minute(
    endpoints: Endpoints, tmp_path: Path
) -> None:
    """`./dev run`'s promise: issues of several kinds within 60 s, some resolved."""
    env = {
        "INBOX_INBOX_STREAM": f"INBOX_{RUN_ID}_DEMO",
        "INBOX_INBOX_SUBJECT_PREFIX": f"inbox_{RUN_ID}_demo.issue",
        "INBOX_ORDERS_STREAM": f"ORDERS_{RUN_ID}_DEMO",
        "INBOX_ORDERS_SUBJECT_PREFIX": f"orders_{RUN_ID}_demo",
    }
    started = time.monotonic()
    with (
        running_api(endpoints, tmp_path / "demo.log", command="up", env=env) as base,
        httpx.Client(base_url=base, timeout=10) as http,
    ):
        kinds: set[str] = set()
        resolved_by_system = 0

        def lively() -> bool:
            nonlocal kinds, resolved_by_system
            kinds = set(http.get("/api/stats").json()["by_kind"])
            done = http.get("/api/issues", params={"status": "resolved", "limit": 200})
            resolved_by_system = sum(
                1 for i in done.json()["items"] if i["resolved_by"] == "system"
            )
            return len(kinds) >= 3 and resolved_by_system >= 1

        wait_until(lively, timeout=60 - (time.monotonic() - started), what="a lively inbox")
    asyncio.run(_delete_streams(endpoints.nats_url, env))


async def _delete_streams(url: str, env: dict[str, str]) -> None:
    client = await nats.connect(url)
    try:
        for key in ("INBOX_INBOX_STREAM", "INBOX_ORDERS_STREAM"):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await client.jetstream().delete_stream(env[key])
    finally:
        await client.close()
