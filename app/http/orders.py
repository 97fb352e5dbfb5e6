"""Orders: ``GET /api/orders/{order_id}``, what is known of one order and its issues, and
``POST /api/order-events``, order events over HTTP, one object or a list (CONTRACT §2).

Order events take the same validation and detector path as NATS. 202 with the counts; a
rejected event is named with its index and reason (and parked in ``dead_letters``); a
single invalid event is 422 naming the field; a body holding no event object at all is
400. A list is judged event by event: the valid ones are stored even when others are
invalid, or when the detector fails on another one's order (that order's events are
parked, and named).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import PathParameter

from adapters.postgres import DatabaseUnavailable
from app.detection import Detector, Ingested
from app.edge import DOCUMENTED_TEXT_PATTERN, MAX_QUERY_TEXT_LENGTH
from app.http import openapi
from app.http.errors import BadRequest, NotFound, Unprocessable
from app.http.reads import MinPosition, caught_up
from app.ingest import InvalidEvent, order_event_types, validate
from app.principal import Principal
from app.queries import Positions, ReadModels
from app.scope import Scope
from app.settings import Settings
from domain.order import OrderEvent, OrderState
from domain.ruleset import RuleSet
from domain.values import STORABLE_TEXT_PATTERN

log = logging.getLogger(__name__)

MAX_EVENTS_PER_REQUEST = 1000
# The most bytes a body of order events may take (1,000 events of about 4 KB; a real one
# takes a few hundred bytes). A larger one is refused (413) before it is read.
MAX_ORDER_EVENTS_BODY = 4 * 2**20
_DETECTOR_FAILED = "the detector failed on this event's order; it is parked for replay"
_COMPONENTS = "#/components/schemas/orders.{name}"


class OrderIssue(msgspec.Struct, kw_only=True):
    issue_id: UUID
    kind: str
    status: str
    severity: str
    detected_at: datetime
    updated_at: datetime
    version: int


class DeclaredFact(msgspec.Struct, kw_only=True):
    """The latest event of a type the order's vertical declared (the rules file's
    ``[vertical.V.events]``): when it happened and its data, as validated."""

    at: datetime
    data: dict[str, Any]


class OrderFacts(msgspec.Struct, kw_only=True):
    """What the detector has folded from the order's events (times are ``occurred_at``)."""

    stage: str  # placed | accepted | rejected | ready | picked_up | delivered | cancelled
    placed_at: datetime | None
    promised_delivery_at: datetime | None
    accepted_at: datetime | None
    rejected_at: datetime | None
    ready_at: datetime | None
    courier_id: str | None
    courier_assigned_at: datetime | None
    courier_arrived_at: datetime | None
    picked_up_at: datetime | None
    estimated_delivery_at: datetime | None
    delivered_at: datetime | None
    cancelled_at: datetime | None
    payment_failed_at: datetime | None
    courier_unassignments: int
    customer_contacts: int
    last_event_at: datetime | None
    next_check_at: datetime | None  # the detector's timer for the order
    # By event type: the latest of each type the vertical declared ({} when none came).
    declared: dict[str, DeclaredFact] = msgspec.field(default_factory=dict)


class OrderView(msgspec.Struct, kw_only=True):
    order_id: str
    vertical: str
    country: str
    city: str
    open_issues: int
    issues: list[OrderIssue]
    facts: OrderFacts | None  # None: the detector has not seen the order's events


def _facts(state: OrderState, next_check_at: datetime | None) -> OrderFacts:
    stages = (
        ("cancelled", state.cancelled_at),
        ("delivered", state.delivered_at),
        ("picked_up", state.picked_up_at),
        ("ready", state.ready_at),
        ("rejected", state.rejected_at),
        ("accepted", state.accepted_at),
    )
    return OrderFacts(
        stage=next((name for name, at in stages if at is not None), "placed"),
        placed_at=state.placed_at,
        promised_delivery_at=state.promised_delivery_at,
        accepted_at=state.accepted_at,
        rejected_at=state.rejected_at,
        ready_at=state.ready_at,
        courier_id=state.courier_id,
        courier_assigned_at=state.courier_assigned_at,
        courier_arrived_at=state.courier_arrived_at,
        picked_up_at=state.picked_up_at,
        estimated_delivery_at=state.estimated_delivery_at,
        delivered_at=state.delivered_at,
        cancelled_at=state.cancelled_at,
        payment_failed_at=state.payment_failed_at,
        courier_unassignments=state.unassignments,
        customer_contacts=len(state.contacts),
        last_event_at=state.last_event_at,
        next_check_at=next_check_at,
        declared={
            kind: DeclaredFact(at=state.seen[kind], data=data)
            for kind, data in sorted(state.facts.items())
            if kind in state.seen
        },
    )


class OrderController(Controller):
    path = "/api/orders"
    tags = ["orders"]

    @get(
        "/{order_id:str}",
        summary="What is known of an order, and its issues",
        responses=openapi.read(by_id=True),
    )
    async def get_order(
        self,
        order_id: Annotated[
            str,
            PathParameter(
                max_length=MAX_QUERY_TEXT_LENGTH,
                pattern=STORABLE_TEXT_PATTERN,
                schema_extra={"pattern": DOCUMENTED_TEXT_PATTERN},
            ),
        ],
        caller: NamedDependency[Principal],
        read_models: NamedDependency[ReadModels],
        positions: NamedDependency[Positions],
        settings: NamedDependency[Settings],
        min_position: MinPosition = 0,
    ) -> OrderView:
        """An order outside the caller's scope reads as unknown (404)."""
        await caught_up(positions, settings, "orders", min_position)
        scope = Scope.of(caller)
        rows = await read_models.order(order_id, scope)
        state, next_check_at = await read_models.watched_order(order_id, scope)
        if rows:
            vertical, country, city = rows[0]["vertical"], rows[0]["country"], rows[0]["city"]
        elif state is not None:
            vertical, country, city = state.vertical, state.country, state.city
        else:
            raise NotFound(f"order {order_id} not found: no events of it, no issues")
        return OrderView(
            order_id=order_id,
            vertical=vertical,
            country=country,
            city=city,
            open_issues=sum(1 for row in rows if row["status"] != "resolved"),
            issues=[msgspec.convert(row, OrderIssue) for row in rows],
            facts=None if state is None else _facts(state, next_check_at),
        )


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

    request_max_body_size = MAX_ORDER_EVENTS_BODY

    @post(
        "/",
        status_code=202,
        summary="Ingest order events (one object or a list)",
        responses=openapi.ingest(),
    )
    async def ingest(
        self, request: Request[Any, Any, Any], detector: NamedDependency[Detector]
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
        rules = detector.rules
        for index, item in enumerate(items):
            try:
                valid.append((index, validate(item, rules)))
            except InvalidEvent as exc:
                if single:
                    await detector.park("http", [(exc.event_id, exc.reason, item)])
                    raise Unprocessable(exc.field or "event", exc.reason) from None
                rejected.append(Rejected(index, exc.event_id, exc.reason))
        if rejected:
            await detector.park("http", [(r.event_id, r.reason, items[r.index]) for r in rejected])
        done, failed = await _ingest(detector, valid, items, rules)
        rejected = sorted([*rejected, *failed], key=lambda r: r.index)
        return Response(
            IngestReport(done.accepted, done.duplicates, len(rejected), rejected), status_code=202
        )


async def _ingest(
    detector: Detector, valid: list[tuple[int, OrderEvent]], items: list[Any], rules: RuleSet
) -> tuple[Ingested, list[Rejected]]:
    """Store the valid events; when that fails with anything but the database gone (a
    bug), order by order, parking (and naming) the events of the orders that fail."""
    events = [event for _, event in valid]
    try:
        return await detector.ingest(events, rules), []
    except DatabaseUnavailable:
        raise
    except Exception:
        log.exception("order events: a batch of %d failed; order by order", len(events))
    done, failed = await detector.ingest_each_order(events, rules)
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
