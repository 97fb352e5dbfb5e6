"""Order events in over HTTP and NATS, issues out in the inbox (CONTRACT §2-§3)."""

from __future__ import annotations

import asyncio
import functools
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import nats
import pytest

from app.settings import Settings
from tests.conftest import wait_until
from tests.e2e.orders import event, placed


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


def test_an_order_without_issues_shows_what_the_detector_knows(http: httpx.Client) -> None:
    quiet, late = f"ord-{uuid.uuid4().hex[:10]}", f"ord-{uuid.uuid4().hex[:10]}"
    ingested = http.post("/api/order-events", json=[placed(quiet, 1), placed(late, 20)])
    assert ingested.json()["accepted"] == 2  # stored before the answer
    order = http.get(f"/api/orders/{quiet}").json()
    assert (order["issues"], order["open_issues"], order["city"]) == ([], 0, "Helsinki")
    facts = order["facts"]
    assert (facts["stage"], facts["courier_id"], facts["customer_contacts"]) == ("placed", None, 0)
    assert facts["next_check_at"] is not None  # the acceptance timer
    http.post("/api/order-events", json=event(late, "venue_accepted", 0))
    wait_until(lambda: issues_of(http, late, "resolved"), timeout=20, what="the auto-resolve")
    order = http.get(f"/api/orders/{late}").json()
    assert order["facts"]["stage"] == "accepted"
    assert [i["kind"] for i in order["issues"]] == ["venue_acceptance_delayed"]
    assert http.get(f"/api/orders/never-{uuid.uuid4().hex}").status_code == 404


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
        found = wait_until(functools.partial(issues_of, http, order_id), timeout=20, what=order_id)
        assert found[0]["kind"] == "venue_acceptance_delayed"


def test_the_detection_kpi_counts_detected_missed_and_healthy_contacts(
    http: httpx.Client,
) -> None:
    """A contact on an order with an open issue is detected; on an order whose problem the
    inbox raised only with or after the contact, missed; a question on an order with no
    problem is neither, and stays out of the share."""
    before = http.get("/api/detection/kpi").json()
    late, unseen, quiet = (f"ord-{uuid.uuid4().hex[:10]}" for _ in range(3))
    http.post("/api/order-events", json=placed(late, 20))
    wait_until(lambda: issues_of(http, late), timeout=15, what="the issue")
    http.post(
        "/api/order-events",
        json=[
            event(late, "customer_contacted_support", 0, channel="chat"),
            # The problem and the customer's contact arrive together: the inbox was late.
            placed(unseen, 20),
            event(unseen, "customer_contacted_support", 0, channel="email"),
            placed(quiet, 1),
            event(quiet, "customer_contacted_support", 0, channel="phone"),
        ],
    )
    wait_until(lambda: issues_of(http, unseen), timeout=15, what="the late issue")
    after = http.get("/api/detection/kpi").json()
    assert after["contacts"] - before["contacts"] == 3
    assert after["detected"] - before["detected"] == 1
    assert after["missed"] - before["missed"] == 1
    assert after["no_problem"] - before["no_problem"] == 1
    problems = after["detected"] + after["missed"]
    assert after["detected_share"] == pytest.approx(after["detected"] / problems)
    assert after["median_lead_minutes"] is not None
    escalated = issues_of(http, late)[0]
    assert escalated["severity"] == "critical"
    # An agent finds the detected issue was nothing: its contact is about no problem.
    resolved = http.post(
        f"/api/issues/{escalated['issue_id']}/resolve",
        json={"resolution": "false_positive", "note": ""},
    ).json()
    http.get(f"/api/issues/{escalated['issue_id']}", params={"min_position": resolved["position"]})
    judged = http.get("/api/detection/kpi").json()
    assert judged["detected"] == after["detected"] - 1
    assert judged["no_problem"] == after["no_problem"] + 1
    assert http.get("/api/detection/kpi", params={"since": "yesterday"}).status_code == 400


# Seconds before a tier boundary the events are dated: the issue is raised at the lower
# tier, and the detector's timer escalates it this long after the events are sent.
MARGIN = 6.0


def at(minutes_ago: float, seconds_later: float = 0.0) -> float:
    """An ``ago_minutes`` for :func:`event`."""
    return minutes_ago - seconds_later / 60


Events = list[dict[str, Any]]


def scenarios(o: str) -> dict[str, tuple[Events, str, Events, str, Events]]:
    """Per kind: the events that raise it, the severity it is raised at, the events that
    make it worse (none: time does, the detector's timer fires), the severity it escalates
    to, and the events that clear it (shipped restaurant thresholds; ``o`` prefixes each
    order id)."""
    now = 0.0
    edge = MARGIN

    def order(kind: str) -> str:
        return f"{o}-{kind}"

    def promise_in(order_id: str, minutes: float, ago: float) -> dict[str, Any]:
        placed_event = placed(order_id, ago)
        placed_event["data"]["promised_delivery_at"] = (
            datetime.now(UTC) + timedelta(minutes=minutes)
        ).isoformat()
        return placed_event

    def courier(order_id: str, kind: str, ago: float, **data: Any) -> dict[str, Any]:
        return event(order_id, kind, ago, courier_id="k1", **data)

    def eta(order_id: str, late_by: float, ago: float) -> dict[str, Any]:
        # the promise is 30 minutes from placement, placed 2 minutes ago: now + 28
        when = datetime.now(UTC) + timedelta(minutes=28 + late_by)
        return event(order_id, "eta_updated", ago, estimated_delivery_at=when.isoformat())

    v, r, n, w, p, e, d, s, c, f, t = (
        order(k)
        for k in (
            "venue",
            "rejected",
            "nocourier",
            "waiting",
            "ready",
            "eta",
            "overdue",
            "stationary",
            "reassigned",
            "payment",
            "stale",
        )
    )
    return {
        "venue_acceptance_delayed": (
            [placed(v, at(5, edge))],
            "medium",
            [],
            "high",
            [event(v, "venue_accepted", now)],
        ),
        "venue_rejected": (
            [placed(r, 11), event(r, "venue_rejected", at(10, edge), reason="closed")],
            "high",
            [],
            "critical",
            [event(r, "order_cancelled", now, reason="venue", by="venue")],
        ),
        "no_courier_assigned": (
            # No ready estimate: due 15 minutes after acceptance, medium 5 past it.
            [placed(n, 31), event(n, "venue_accepted", at(30, edge))],
            "medium",
            [],
            "high",
            [courier(n, "courier_assigned", now)],
        ),
        "courier_waiting_at_venue": (
            [
                placed(w, 17),
                event(w, "venue_accepted", 16.5),
                courier(w, "courier_assigned", 16),
                courier(w, "courier_arrived_at_venue", at(15, edge)),
            ],
            "medium",
            [],
            "high",
            [courier(w, "order_picked_up", now)],
        ),
        "ready_not_picked_up": (
            [
                placed(p, 22),
                event(p, "venue_accepted", 21.5),
                courier(p, "courier_assigned", 21),
                event(p, "order_ready", at(20, edge)),
            ],
            "medium",
            [],
            "high",
            [courier(p, "order_picked_up", now)],
        ),
        "eta_slipped": (
            # 7 minutes past the promise (now + 30): low from 5, medium from 11.
            [placed(e, 2), event(e, "venue_accepted", 1.5), eta(e, 9, 1)],
            "low",
            [eta(e, 15, 0.5)],
            "medium",
            [eta(e, 0, now)],
        ),
        "delivery_overdue": (
            [
                promise_in(d, -at(11, edge), 40),
                event(d, "venue_accepted", 39),
                courier(d, "courier_assigned", 38),
                courier(d, "order_picked_up", 1),
                courier(d, "courier_location", 0.5, lat=60.17, lon=24.94),
            ],
            "low",
            [],
            "medium",
            [event(d, "order_delivered", now)],
        ),
        "courier_stationary": (
            [
                placed(s, 25),
                event(s, "venue_accepted", 24),
                courier(s, "courier_assigned", 23),
                courier(s, "order_picked_up", at(15, edge)),
            ],
            "medium",
            [],
            "high",
            [courier(s, "courier_location", now, lat=60.17, lon=24.94)],
        ),
        "courier_reassigned_repeatedly": (
            [
                placed(c, 10),
                event(c, "venue_accepted", 9.5),
                *(
                    courier(c, kind, 9 - step / 2)
                    for step, kind in enumerate(["courier_assigned", "courier_unassigned"] * 2)
                ),
            ],
            "medium",
            [courier(c, "courier_assigned", 6), courier(c, "courier_unassigned", 5.5)],
            "high",
            [event(c, "order_delivered", now)],
        ),
        "payment_failed": (
            [placed(f, 16), event(f, "payment_failed", at(15, edge), reason="declined")],
            "high",
            [],
            "critical",
            [event(f, "order_cancelled", now, reason="payment", by="system")],
        ),
        "order_stale": (
            [placed(t, at(90, edge))],
            "medium",
            [],
            "high",
            [event(t, "venue_accepted", now)],
        ),
    }


def test_every_kind_is_raised_escalated_and_resolved_through_nats(
    http: httpx.Client, settings: Settings
) -> None:
    """CONTRACT §3, end to end: order events published on the ORDERS stream raise an issue
    of each kind at its first tier, the detector's durable timer (or the next event)
    escalates it, and the event that clears the condition resolves it (``system``)."""
    plans = scenarios(f"k{uuid.uuid4().hex[:8]}")
    asyncio.run(_publish(settings, [e for steps, *_ in plans.values() for e in steps]))

    def issues_at(severity_of: Callable[[str], str | None]) -> dict[str, Any] | None:
        """Each kind's issue once every one is at ``severity_of(kind)`` (None: any)."""
        seen: dict[str, dict[str, Any]] = {}
        for kind, (steps, *_) in plans.items():
            found = [i for i in issues_of(http, steps[0]["order_id"]) if i["kind"] == kind]
            if not found or severity_of(kind) not in (None, found[0]["severity"]):
                return None
            seen[kind] = found[0]
        return seen

    wait_until(lambda: issues_at(lambda kind: None), timeout=30, what="every kind raised")
    asyncio.run(_publish(settings, [e for _, _, worse, *_ in plans.values() for e in worse]))
    issues = wait_until(
        lambda: issues_at(lambda kind: plans[kind][3]), timeout=30, what="every kind escalated"
    )
    for kind, (_, first, _, higher, _) in plans.items():
        history = http.get(f"/api/issues/{issues[kind]['issue_id']}/events").json()["items"]
        detected = history[0]
        assert (detected["type"], detected["data"]["severity"]) == ("detected", first), kind
        escalations = [h["data"]["severity"] for h in history if h["type"] == "escalated"]
        assert escalations == [higher], (kind, escalations)

    asyncio.run(_publish(settings, [e for *_, clear in plans.values() for e in clear]))

    def resolved() -> bool:
        return all(
            http.get(f"/api/issues/{issue['issue_id']}").json()["status"] == "resolved"
            for issue in issues.values()
        )

    wait_until(resolved, timeout=30, what="every kind resolved")
    for kind, issue in issues.items():
        shown = http.get(f"/api/issues/{issue['issue_id']}").json()
        assert shown["resolved_by"] == "system", kind


async def _publish(settings: Settings, events: list[dict[str, Any]]) -> None:
    client = await nats.connect(settings.nats_url or "")
    try:
        js = client.jetstream()
        for body in events:
            await js.publish(
                f"{settings.orders_subject_prefix}.{body['type']}",
                json.dumps(body).encode(),
                headers={"Nats-Msg-Id": body["event_id"]},
            )
    finally:
        await client.close()
