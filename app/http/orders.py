"""``POST /api/order-events``: order events over HTTP, one object or a list (CONTRACT §2).

The same validation and detector path as NATS. 202 with the counts; a rejected event is
named with its reason (and parked in ``dead_letters``); a single invalid event is 422.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, post

from app.detection import Detector
from app.http import openapi
from app.http.errors import BadRequest, Unprocessable
from app.ingest import InvalidEvent, validate
from app.queries import ReadModels
from domain.order import OrderEvent

MAX_EVENTS_PER_REQUEST = 1000


class Rejected(msgspec.Struct):
    index: int
    event_id: str | None
    reason: str


class IngestReport(msgspec.Struct):
    accepted: int
    duplicate: int
    rejected: int
    rejections: list[Rejected]


class DetectionKpi(msgspec.Struct):
    since: datetime
    until: datetime
    contacts: int  # customers who contacted support about an order in the window
    detected: int  # ... whose order already had an open issue then
    missed: int
    detected_share: float | None
    median_lead_minutes: float | None  # how much earlier the inbox knew, for detected ones


class DetectionController(Controller):
    path = "/api/detection"
    tags = ["order events"]

    @get(
        "/kpi",
        summary="Share of support contacts the inbox had already detected",
        responses=openapi.read(),
    )
    async def kpi(
        self,
        read_models: ReadModels,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> DetectionKpi:
        until = until or datetime.now(UTC)
        since = since or until - timedelta(days=1)
        if since.tzinfo is None or until.tzinfo is None:
            raise BadRequest("since", "give times with an offset, e.g. 2026-11-25T12:00:00Z")
        row = await read_models.pool.fetchrow(
            "SELECT count(*) AS contacts, count(*) FILTER (WHERE detected) AS detected,"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM"
            " contacted_at - first_detected_at) / 60) FILTER (WHERE detected) AS lead"
            " FROM support_contacts WHERE contacted_at >= $1 AND contacted_at < $2",
            since,
            until,
        )
        assert row is not None
        contacts, detected = row["contacts"], row["detected"]
        return DetectionKpi(
            since=since,
            until=until,
            contacts=contacts,
            detected=detected,
            missed=contacts - detected,
            detected_share=detected / contacts if contacts else None,
            median_lead_minutes=round(row["lead"], 2) if row["lead"] is not None else None,
        )


class OrderEventsController(Controller):
    path = "/api/order-events"
    tags = ["order events"]

    @post(
        "/",
        status_code=202,
        summary="Ingest order events (one object or a list)",
        responses=openapi.ingest(),
    )
    async def ingest(
        self, request: Request[Any, Any, Any], detector: Detector
    ) -> Response[IngestReport]:
        try:
            body = msgspec.json.decode(await request.body())
        except msgspec.DecodeError as exc:
            raise BadRequest("body", f"malformed JSON: {exc}") from None
        items = body if isinstance(body, list) else [body]
        if len(items) > MAX_EVENTS_PER_REQUEST:
            raise Unprocessable("body", f"at most {MAX_EVENTS_PER_REQUEST} events per request")
        valid: list[OrderEvent] = []
        rejected: list[Rejected] = []
        for index, item in enumerate(items):
            try:
                valid.append(validate(item))
            except InvalidEvent as exc:
                rejected.append(Rejected(index, exc.event_id, exc.reason))
        if rejected:
            await detector.park("http", [(r.event_id, r.reason, items[r.index]) for r in rejected])
        if not isinstance(body, list) and rejected:
            raise Unprocessable("event", rejected[0].reason)
        done = await detector.ingest(valid)
        return Response(
            IngestReport(done.accepted, done.duplicates, len(rejected), rejected), status_code=202
        )
