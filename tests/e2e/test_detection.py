"""Order events in over HTTP and NATS, issues out in the inbox (CONTRACT §2-§3)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import nats

from app.settings import Settings
from tests.conftest import wait_until


def event(order_id: str, kind: str, ago_minutes: float, **data: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "type": kind,
        "order_id": order_id,
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=ago_minutes)).isoformat(),
        "vertical": "restaurant",
        "country": "FI",
        "city": "Helsinki",
        "data": data,
    }


def placed(order_id: str, ago_minutes: float) -> dict[str, Any]:
    promise = (datetime.now(UTC) + timedelta(minutes=30)).isoformat()
    return event(
        order_id,
        "order_placed",
        ago_minutes,
        venue_id="v",
        customer_id="c",
        promised_delivery_at=promise,
        amount=2500,
        currency="EUR",
    )


def issues_of(http: httpx.Client, order_id: str, status: str | None = None) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"order_id": order_id}
    if status:
        params["status"] = status
    items: list[dict[str, Any]] = http.get("/api/issues", params=params).json()["items"]
    return items


def test_an_order_placed_20_minutes_ago_is_late_at_once_and_clears_when_accepted(
    http: httpx.Client,
) -> None:
    order_id = f"ord-{uuid.uuid4().hex[:10]}"
    response = http.post("/api/order-events", json=placed(order_id, 20))
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 1
    found = wait_until(lambda: issues_of(http, order_id), timeout=15, what="the issue")
    assert [(i["kind"], i["severity"]) for i in found] == [("venue_acceptance_delayed", "critical")]
    http.post("/api/order-events", json=event(order_id, "venue_accepted", 0))
    resolved = wait_until(
        lambda: issues_of(http, order_id, "resolved"), timeout=20, what="the auto-resolve"
    )
    assert resolved[0]["resolved_by"] == "system"


def test_http_ingestion_counts_duplicates_and_names_rejections(http: httpx.Client) -> None:
    order_id = f"ord-{uuid.uuid4().hex[:10]}"
    first = placed(order_id, 1)
    bad = {**event(order_id, "eta_updated", 0), "data": {"estimated_delivery_at": "soon"}}
    response = http.post("/api/order-events", json=[first, first, bad])
    assert response.status_code == 202
    report = response.json()
    assert (report["accepted"], report["duplicate"], report["rejected"]) == (1, 1, 1)
    assert "estimated_delivery_at" in report["rejections"][0]["reason"]
    single = http.post("/api/order-events", json={**first, "vertical": "spaceship"})
    assert single.status_code == 422
    assert "vertical" in single.json()["detail"]
    malformed = http.post(
        "/api/order-events", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 400


def test_events_over_nats_with_malformed_ones_in_between(
    http: httpx.Client, settings: Settings
) -> None:
    good = [f"ord-{uuid.uuid4().hex[:10]}" for _ in range(2)]

    async def publish() -> None:
        client = await nats.connect(settings.nats_url or "")
        try:
            js = client.jetstream()
            prefix = settings.orders_subject_prefix
            first = placed(good[0], 30)
            await js.publish(
                f"{prefix}.order_placed",
                json.dumps(first).encode(),
                headers={"Nats-Msg-Id": first["event_id"]},
            )
            await js.publish(f"{prefix}.order_placed", b"not json at all")
            await js.publish(f"{prefix}.order_placed", json.dumps({"type": "alien"}).encode())
            second = placed(good[1], 30)
            await js.publish(
                f"{prefix}.order_placed",
                json.dumps(second).encode(),
                headers={"Nats-Msg-Id": second["event_id"]},
            )
        finally:
            await client.close()

    asyncio.run(publish())
    for order_id in good:
        found = wait_until(lambda o=order_id: issues_of(http, o), timeout=20, what=order_id)
        assert found[0]["kind"] == "venue_acceptance_delayed"


def test_the_detection_kpi_counts_detected_and_missed_contacts(http: httpx.Client) -> None:
    before = http.get("/api/detection/kpi").json()
    late, quiet = f"ord-{uuid.uuid4().hex[:10]}", f"ord-{uuid.uuid4().hex[:10]}"
    http.post("/api/order-events", json=placed(late, 20))
    wait_until(lambda: issues_of(http, late), timeout=15, what="the issue")
    http.post(
        "/api/order-events",
        json=[
            event(late, "customer_contacted_support", 0, channel="chat"),
            placed(quiet, 1),
            event(quiet, "customer_contacted_support", 0, channel="phone"),
        ],
    )
    after = http.get("/api/detection/kpi").json()
    assert after["contacts"] - before["contacts"] == 2
    assert after["detected"] - before["detected"] == 1
    assert after["missed"] - before["missed"] == 1
    assert after["median_lead_minutes"] is not None
    escalated = issues_of(http, late)[0]
    assert escalated["severity"] == "critical"
    assert http.get("/api/detection/kpi", params={"since": "yesterday"}).status_code == 400
