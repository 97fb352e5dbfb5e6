"""The two example verticals of the shipped rules file end to end through NATS (issue 15):
the pharmacy's declared prescription check raises, escalates and clears, recording the
rule, tier and rules version on each event, due by the pharmacy's SLA; the own-staff
florist raises no courier issue, and none at all on a healthy order, but does raise the
venue and delivery ones; events of an undeclared vertical, type or data are refused
naming what is wrong (a dead letter on NATS, 422 over HTTP).

Order times are set in the past, so thresholds are crossed when the events arrive; an
order's events are published latest first where an earlier one alone would raise an issue
the whole order would not (the detector folds by ``occurred_at`` whatever the arrival).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats

from app.bootstrap import Endpoints
from app.rules_config import version_of
from app.settings import Settings
from tests.conftest import wait_until
from tests.e2e.orders import event, placed

PENDING = "prescription_check_pending"
COURIER_KINDS = {
    "no_courier_assigned",
    "courier_waiting_at_venue",
    "courier_stationary",
    "courier_reassigned_repeatedly",
}
ALL_STATUSES = [("status", s) for s in ("open", "acknowledged", "snoozed", "resolved")]
# Seconds before a tier boundary the prescription is dated: raised at the lower tier, the
# detector's timer escalates it this long after the events are sent.
MARGIN = 6.0


def of(vertical: str, body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "vertical": vertical}


def promised(body: dict[str, Any], minutes_from_now: float) -> dict[str, Any]:
    at = datetime.now(UTC) + timedelta(minutes=minutes_from_now)
    return {**body, "data": {**body["data"], "promised_delivery_at": at.isoformat()}}


async def publish(settings: Settings, events: list[dict[str, Any]]) -> None:
    client = await nats.connect(settings.nats_url or "")
    try:
        js = client.jetstream()
        for body in events:
            await js.publish(
                f"{settings.orders_subject_prefix}.{body.get('type', 'unknown')}",
                json.dumps(body).encode(),
                headers={"Nats-Msg-Id": body["event_id"]},
            )
    finally:
        await client.close()


def issues_of(http: httpx.Client, order_id: str, min_position: int = 0) -> list[dict[str, Any]]:
    params: list[tuple[str, str | int | float | bool | None]] = [
        ("order_id", order_id),
        ("min_position", min_position),
        *ALL_STATUSES,
    ]
    response = http.get("/api/issues", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def one(http: httpx.Client, order_id: str, kind: str) -> dict[str, Any] | None:
    return next((i for i in issues_of(http, order_id) if i["kind"] == kind), None)


def settled(http: httpx.Client, order_id: str, stage: str) -> int:
    """Once the detector has folded every event of the order (its stage is ``stage``),
    the event store's newest position: any issue those events raised is at or below it."""
    wait_until(
        lambda: (
            (http.get(f"/api/orders/{order_id}").json().get("facts") or {}).get("stage") == stage
        ),
        timeout=20,
        what=f"{order_id} {stage}",
    )
    position: int = http.get("/ready").json()["event_store_position"]
    return position


def test_the_pharmacys_prescription_check_raises_escalates_and_clears(
    http: httpx.Client, settings: Settings, api_folder: Path
) -> None:
    rules_version = version_of((api_folder / "rules.toml").read_text())
    o = f"rx-{uuid.uuid4().hex[:10]}"
    rx = f"rx-{uuid.uuid4().hex[:6]}"
    ready_at = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    submitted = event(o, "prescription_submitted", 20 - MARGIN / 60, prescription_id=rx)
    asyncio.run(
        publish(
            settings,
            [
                # Latest first: the order alone, placed 20 minutes ago, would wait on its venue.
                of("pharmacy", event(o, "courier_assigned", 19, courier_id="k1")),
                of("pharmacy", event(o, "venue_accepted", 19.5, estimated_ready_at=ready_at)),
                of("pharmacy", submitted),
                of("pharmacy", promised(placed(o, 20.5), 40)),
            ],
        )
    )
    raised = wait_until(lambda: one(http, o, PENDING), timeout=20, what="the check raised")
    # Due by the pharmacy's SLA (medium 15, high 10 minutes), not the fixed 30 and 15.
    detected_at = datetime.fromisoformat(raised["detected_at"])
    sla = {"medium": 15, "high": 10}[raised["severity"]]
    assert datetime.fromisoformat(raised["due_at"]) == detected_at + timedelta(minutes=sla)
    high = wait_until(
        lambda: (i := one(http, o, PENDING)) and i["severity"] == "high" and i,
        timeout=30,
        what="the check escalated by its timer",
    )
    assert datetime.fromisoformat(high["due_at"]) == detected_at + timedelta(minutes=10)
    assert [i["kind"] for i in issues_of(http, o)] == [PENDING]

    order = http.get(f"/api/orders/{o}").json()
    declared = order["facts"]["declared"]
    assert list(declared) == ["prescription_submitted"]
    assert declared["prescription_submitted"]["data"] == {
        "prescription_id": rx,
        "controlled_substance": None,
    }
    assert datetime.fromisoformat(declared["prescription_submitted"]["at"]) == (
        datetime.fromisoformat(submitted["occurred_at"])
    )

    approved = event(o, "prescription_approved", 0, prescription_id=rx, pharmacist_id="ph-1")
    asyncio.run(publish(settings, [of("pharmacy", approved)]))
    resolved = wait_until(
        lambda: (i := one(http, o, PENDING)) and i["status"] == "resolved" and i,
        timeout=20,
        what="the check cleared",
    )
    assert resolved["resolved_by"] == "system"
    declared = http.get(f"/api/orders/{o}").json()["facts"]["declared"]
    assert sorted(declared) == ["prescription_approved", "prescription_submitted"]
    assert declared["prescription_approved"]["data"]["pharmacist_id"] == "ph-1"

    history = http.get(f"/api/issues/{raised['issue_id']}/events").json()["items"]
    rules = [(h["type"], h["data"]["rule"]) for h in history]
    assert rules == [
        (
            "detected",
            {
                "version": rules_version,
                "name": PENDING,
                "tier": {"threshold": 10.0, "severity": "medium"},
                "reason": "the condition reached the medium tier (threshold 10)",
            },
        ),
        (
            "escalated",
            {
                "version": rules_version,
                "name": PENDING,
                "tier": {"threshold": 20.0, "severity": "high"},
                "reason": "the condition worsened to the high tier (threshold 20)",
            },
        ),
        (
            "resolved",
            {
                "version": rules_version,
                "name": PENDING,
                "tier": None,
                "reason": "the condition cleared",
            },
        ),
    ]
    assert history[0]["data"]["sla_minutes"] == {
        "low": 30.0,
        "medium": 15.0,
        "high": 10.0,
        "critical": 5.0,
    }


def test_the_own_staff_florist_raises_no_courier_issue(
    http: httpx.Client, settings: Settings
) -> None:
    run = uuid.uuid4().hex[:8]
    healthy, unaccepted, overdue, control = (
        f"fl-{run}-{name}" for name in ("healthy", "unaccepted", "overdue", "control")
    )

    def late(order_id: str, vertical: str) -> list[dict[str, Any]]:
        """Accepted 51 minutes ago, promised 11 minutes ago, no courier event: overdue;
        on a marketplace vertical no courier came either (due at acceptance + preparation)."""
        return [
            of(vertical, event(order_id, "venue_accepted", 51)),
            of(vertical, promised(placed(order_id, 52), -11)),
        ]

    asyncio.run(
        publish(
            settings,
            [
                *(
                    of("florist", e)
                    for e in [
                        placed(healthy, 2),
                        event(healthy, "venue_accepted", 1.9),
                        event(healthy, "order_ready", 1),
                        event(healthy, "order_picked_up", 0.5, courier_id="van-1"),
                        event(healthy, "order_delivered", 0),
                    ]
                ),
                of("florist", placed(unaccepted, 11)),
                *late(overdue, "florist"),
                *late(control, "restaurant"),
            ],
        )
    )
    # The same events on the marketplace's couriers raise a courier issue: the florist's
    # silence below is its delivery model, not a quiet order.
    wait_until(lambda: one(http, control, "no_courier_assigned"), timeout=20, what="the control")
    wait_until(
        lambda: one(http, unaccepted, "venue_acceptance_delayed"),
        timeout=20,
        what="the florist's unaccepted order",
    )
    wait_until(lambda: one(http, overdue, "delivery_overdue"), timeout=20, what="the overdue order")
    head = settled(http, healthy, "delivered")
    assert issues_of(http, healthy, head) == []
    assert http.get(f"/api/orders/{healthy}", params={"min_position": head}).json()["issues"] == []
    kinds = {o: [i["kind"] for i in issues_of(http, o, head)] for o in (unaccepted, overdue)}
    assert kinds == {unaccepted: ["venue_acceptance_delayed"], overdue: ["delivery_overdue"]}
    assert not COURIER_KINDS & {k for found in kinds.values() for k in found}


def parked_reasons(endpoints: Endpoints, event_ids: list[str]) -> dict[str, str]:
    """The reasons the events ``event_ids`` were parked from NATS for (``dead_letters``,
    read directly: ``inbox dead-letters`` lists the oldest 1,000 of a session's many)."""

    async def read() -> dict[str, str]:
        conn = await asyncpg.connect(endpoints.database_url)
        try:
            rows = await conn.fetch(
                "SELECT event_id, reason FROM dead_letters"
                " WHERE source = 'nats' AND event_id = ANY($1::text[])",
                event_ids,
            )
        finally:
            await conn.close()
        return {row["event_id"]: row["reason"] for row in rows}

    return asyncio.run(read())


def test_an_undeclared_vertical_type_or_data_field_is_refused_naming_it(
    http: httpx.Client, settings: Settings, endpoints: Endpoints
) -> None:
    o = f"bad-{uuid.uuid4().hex[:10]}"
    spaceship = of("spaceship", placed(o, 1))
    alien_type = of("restaurant", event(o, "prescription_submitted", 1, prescription_id="r"))
    asyncio.run(publish(settings, [spaceship, alien_type]))

    def parked() -> dict[str, str] | None:
        found = parked_reasons(endpoints, [spaceship["event_id"], alien_type["event_id"]])
        return found if len(found) == 2 else None

    found = wait_until(parked, timeout=30, what="both parked as dead letters")
    assert "vertical 'spaceship' is not declared" in found[spaceship["event_id"]]
    assert "`$.vertical`" in found[spaceship["event_id"]]
    assert "event type 'prescription_submitted'" in found[alien_type["event_id"]]
    assert "`$.type`" in found[alien_type["event_id"]]

    refused = http.post("/api/order-events", json={**spaceship, "event_id": str(uuid.uuid4())})
    assert refused.status_code == 422
    assert refused.json()["detail"].startswith("vertical: vertical 'spaceship'")
    refused = http.post("/api/order-events", json={**alien_type, "event_id": str(uuid.uuid4())})
    assert refused.status_code == 422
    assert refused.json()["detail"].startswith("type: event type 'prescription_submitted'")
    for data, field in [
        ({"prescription_id": 7}, "data.prescription_id"),
        ({"prescription_id": "r", "colour": "red"}, "data.colour"),
        ({}, "data.prescription_id"),
        ({"prescription_id": "r", "controlled_substance": "yes"}, "data.controlled_substance"),
    ]:
        wrong = of("pharmacy", {**event(o, "prescription_submitted", 1), "data": data})
        refused = http.post("/api/order-events", json=wrong)
        assert refused.status_code == 422, (data, refused.text)
        assert refused.json()["detail"].startswith(f"{field}:"), (data, refused.text)
    assert http.get(f"/api/orders/{o}").status_code == 404  # none of it was taken
