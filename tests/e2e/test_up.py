"""``inbox up``: the API and the relay in one process, seen from outside (HTTP and NATS)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import nats

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
