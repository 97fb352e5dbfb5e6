"""``inbox up``: the API and the relay in one process, seen from outside (HTTP and NATS)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import nats
import nats.js.errors

from app.bootstrap import Endpoints
from tests.api_process import running_api
from tests.conftest import RUN_ID, wait_until
from tests.tokens import headers_for


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
        httpx.Client(base_url=base, timeout=10, headers=headers_for("ann", "lead")) as http,
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
            status: str = relay["status"]
            position: int = relay["position"]
            return status == "running" and position >= created["position"]

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
        httpx.Client(base_url=base, timeout=10, headers=headers_for()) as http,
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


def test_up_without_the_simulator_runs_every_part_on_the_demo_order_time(
    endpoints: Endpoints, tmp_path: Path
) -> None:
    """With INBOX_DEMO_SPEED and INBOX_DEMO_ANCHOR, `inbox up --no-simulate` judges order
    time like a separate simulator: an order placed "now" in order time raises its issue
    with `detected_at`, `due_at` and the KPI's window in that time, not the wall clock's."""
    anchor = datetime.now(UTC) - timedelta(hours=1)
    speed = 2.0
    env = {
        "INBOX_INBOX_STREAM": f"INBOX_{RUN_ID}_DEMO",
        "INBOX_INBOX_SUBJECT_PREFIX": f"inbox_{RUN_ID}_demo.issue",
        "INBOX_ORDERS_STREAM": f"ORDERS_{RUN_ID}_DEMO",
        "INBOX_ORDERS_SUBJECT_PREFIX": f"orders_{RUN_ID}_demo",
        "INBOX_DEMO_SPEED": str(speed),
        "INBOX_DEMO_ANCHOR": anchor.isoformat(),
    }

    def order_now() -> datetime:
        return anchor + (datetime.now(UTC) - anchor) * speed

    with (
        running_api(
            endpoints, tmp_path / "demo.log", command="up", args=("--no-simulate",), env=env
        ) as base,
        httpx.Client(base_url=base, timeout=10, headers=headers_for()) as http,
    ):
        order_id = f"ord-{uuid.uuid4().hex[:10]}"
        placed_at = order_now() - timedelta(minutes=20)
        event = {
            "event_id": f"{order_id}-placed",
            "type": "order_placed",
            "order_id": order_id,
            "occurred_at": placed_at.isoformat(),
            "vertical": "restaurant",
            "country": "FI",
            "city": "Helsinki",
            "data": {
                "venue_id": "v1",
                "customer_id": "c1",
                "promised_delivery_at": (placed_at + timedelta(minutes=40)).isoformat(),
                "amount": 1200,
                "currency": "EUR",
            },
        }
        assert http.post("/api/order-events", json=event).status_code == 202

        def raised() -> list[dict[str, object]]:
            items: list[dict[str, object]] = http.get(
                "/api/issues", params={"order_id": order_id}
            ).json()["items"]
            return items

        issue = wait_until(raised, timeout=20, what="the issue")[0]
        detected = datetime.fromisoformat(str(issue["detected_at"]))
        # Order time runs an hour ahead of the wall clock here.
        assert abs((detected - order_now()).total_seconds()) < 60, (detected, order_now())
        assert issue["evidence"]["minutes"] >= 20  # type: ignore[index]
        kpi = http.get("/api/detection/kpi").json()
        assert abs((datetime.fromisoformat(kpi["until"]) - order_now()).total_seconds()) < 60
