"""``POST /api/order-events``: order events over HTTP, one object or a list (CONTRACT §2).

The same validation and detector path as NATS. 202 with the counts; a rejected event is
named with its index and reason (and parked in ``dead_letters``); a single invalid event
is 422 naming the field; a body holding no event object at all is 400. A list is judged
event by event: the valid ones are stored even when others are invalid, or when the
detector fails on another one's order (that order's events are parked, and named).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter

from adapters.postgres import DatabaseUnavailable
from app.bootstrap import Container
from app.detection import Detector, Ingested
from app.edge import TIME_PATTERN, Aware
from app.http import openapi
from app.http.errors import BadRequest, Unprocessable
from app.ingest import InvalidEvent, order_event_types, validate
from app.queries import ReadModels
from domain.errors import InvalidValue
from domain.order import OrderEvent
from domain.values import check_time

log = logging.getLogger(__name__)

MAX_EVENTS_PER_REQUEST = 1000
# The most bytes a body of order events may take (1,000 events of about 4 KB; a real one
# takes a few hundred bytes). A larger one is refused (413) before it is read.
MAX_ORDER_EVENTS_BODY = 4 * 2**20
_DETECTOR_FAILED = "the detector failed on this event's order; it is parked for replay"
_COMPONENTS = "#/components/schemas/orders.{name}"


def order_events_body() -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The JSON Schema of the body (one order event, or a list of them), and the components
    it refers to, for ``openapi.document_body``: what :func:`validate` checks, event by event.
    A list is judged item by item (an invalid one is named in the 202 report), so its items
    are documented as the events they should be, and anything else."""
    refs, components = msgspec.json.schema_components(
        order_event_types().values(), ref_template=_COMPONENTS
    )
    event = {"oneOf": list(refs)}
    anything = {"description": "Anything else: named in the report (rejected), not refused"}
    schema = {
        "oneOf": [
            event,
            {
                "type": "array",
                "maxItems": MAX_EVENTS_PER_REQUEST,
                "contains": {"type": "object"},
                "items": {"anyOf": [*refs, anything]},
            },
        ]
    }
    return schema, {f"orders.{name}": component for name, component in components.items()}


# A time in a query: taken as text and converted strictly, as RFC 3339 (Litestar converts
# query values leniently, and took a number for seconds since 1970).
_QueryTime = Annotated[
    str | None, Parameter(schema_extra={"format": "date-time", "pattern": TIME_PATTERN})
]


def _time(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        at = msgspec.convert(value, Aware, strict=True)
        check_time(name, at)
    except msgspec.ValidationError as exc:
        raise BadRequest(name, f"must be an RFC 3339 time with an offset ({exc})") from None
    except InvalidValue as exc:
        raise BadRequest(exc.field, exc.reason) from None
    return at


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
    detected: int  # ... whose order had a problem and an open issue then
    # ... whose order had none open then, but has a problem: an issue raised before or
    # after the contact that agents did not resolve as a false positive
    missed: int
    # ... about an order the inbox knows no problem of (a question on a healthy order):
    # neither detected nor missed
    no_problem: int
    detected_share: float | None  # detected / (detected + missed): contacts about problems
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
        container: Container,
        since: _QueryTime = None,
        until: _QueryTime = None,
    ) -> DetectionKpi:
        # The system's clock: in a demo, order time, like the contacts it counts.
        until_at = _time("until", until) or container.clock.now()
        since_at = _time("since", since) or until_at - timedelta(days=1)
        if since_at > until_at:
            raise BadRequest("since", "must not be after until")
        # An order has a problem when it has an issue agents did not resolve as a false
        # positive: a contact on it was detected (an issue was open then) or missed; on
        # any other order it is about nothing the inbox knows of.
        row = await read_models.pool.fetchrow(
            "WITH c AS (SELECT c.detected, c.contacted_at - c.first_detected_at AS lead,"
            "  EXISTS (SELECT 1 FROM inbox_issues AS i WHERE i.order_id = c.order_id"
            "   AND i.resolution IS DISTINCT FROM 'false_positive') AS problem"
            "  FROM support_contacts AS c WHERE c.contacted_at >= $1 AND c.contacted_at < $2)"
            " SELECT count(*) AS contacts,"
            " count(*) FILTER (WHERE problem AND detected) AS detected,"
            " count(*) FILTER (WHERE problem AND NOT detected) AS missed,"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM lead) / 60)"
            "  FILTER (WHERE problem AND detected) AS lead FROM c",
            since_at,
            until_at,
        )
        assert row is not None
        contacts, detected, missed = row["contacts"], row["detected"], row["missed"]
        about_problems = detected + missed
        return DetectionKpi(
            since=since_at,
            until=until_at,
            contacts=contacts,
            detected=detected,
            missed=missed,
            no_problem=contacts - about_problems,
            detected_share=detected / about_problems if about_problems else None,
            median_lead_minutes=round(row["lead"], 2) if row["lead"] is not None else None,
        )


class OrderEventsController(Controller):
    path = "/api/order-events"
    tags = ["order events"]

    request_max_body_size = MAX_ORDER_EVENTS_BODY

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
        except RecursionError:
            raise BadRequest("body", "the JSON is nested too deeply") from None
        single = isinstance(body, dict)
        items: list[Any] = [body] if single else body if isinstance(body, list) else []
        if not any(isinstance(item, dict) for item in items):
            raise BadRequest("body", "holds no event: send an event object or a list of them")
        if len(items) > MAX_EVENTS_PER_REQUEST:
            raise Unprocessable("body", f"at most {MAX_EVENTS_PER_REQUEST} events per request")
        valid: list[tuple[int, OrderEvent]] = []
        rejected: list[Rejected] = []
        for index, item in enumerate(items):
            try:
                valid.append((index, validate(item)))
            except InvalidEvent as exc:
                if single:
                    await detector.park("http", [(exc.event_id, exc.reason, item)])
                    raise Unprocessable(exc.field or "event", exc.reason) from None
                rejected.append(Rejected(index, exc.event_id, exc.reason))
        if rejected:
            await detector.park("http", [(r.event_id, r.reason, items[r.index]) for r in rejected])
        done, failed = await _ingest(detector, valid, items)
        rejected = sorted([*rejected, *failed], key=lambda r: r.index)
        return Response(
            IngestReport(done.accepted, done.duplicates, len(rejected), rejected), status_code=202
        )


async def _ingest(
    detector: Detector, valid: list[tuple[int, OrderEvent]], items: list[Any]
) -> tuple[Ingested, list[Rejected]]:
    """Store the valid events; when that fails with anything but the database gone (a
    bug), order by order, parking (and naming) the events of the orders that fail."""
    events = [event for _, event in valid]
    try:
        return await detector.ingest(events), []
    except DatabaseUnavailable:
        raise
    except Exception:
        log.exception("order events: a batch of %d failed; order by order", len(events))
    done, failed = await detector.ingest_each_order(events)
    for error in failed.values():
        if isinstance(error, DatabaseUnavailable):
            raise error
    rejected: list[Rejected] = []
    for order_id, error in failed.items():
        log.error("order events: order %s fails; its events are parked", order_id, exc_info=error)
        reason = f"the detector failed on this order: {error!r}"[:1000]
        mine = [(index, event) for index, event in valid if event.order_id == order_id]
        await detector.park("detector", [(e.event_id, reason, items[i]) for i, e in mine])
        rejected.extend(Rejected(index, event.event_id, _DETECTOR_FAILED) for index, event in mine)
    return done, rejected
