"""``POST /api/order-events``: order events over HTTP, one object or a list (CONTRACT §2).

The same validation and detector path as NATS. 202 with the counts; a rejected event is
named with its reason (and parked in ``dead_letters``); a single invalid event is 422.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, Response, post

from app.detection import Detector
from app.http.errors import BadRequest, Unprocessable
from app.ingest import InvalidEvent, validate
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


class OrderEventsController(Controller):
    path = "/api/order-events"
    tags = ["order events"]

    @post("/", status_code=202, summary="Ingest order events (one object or a list)")
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
