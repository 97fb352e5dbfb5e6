"""The read side: the inbox list, one issue, one order, counts, and the live feed, all from
the read models (CONTRACT §5). Every read takes ``min_position``: it answers only once the
model it reads has applied that position (read-your-writes), else 503 with Retry-After."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Annotated, cast
from uuid import UUID

import asyncpg
import msgspec
from async_lru import alru_cache
from litestar import Controller, MediaType, Response, get
from litestar.params import HeaderParameter, Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from app.edge import DOCUMENTED_TEXT_PATTERN, MAX_QUERY_TEXT_LENGTH, QueryText
from app.errors import Unavailable
from app.http import cache, openapi
from app.http.errors import BadRequest, NotFound
from app.integration import IssueFields
from app.queries import Filters, Positions, ReadModels
from app.settings import Settings
from domain.order import OrderState
from domain.values import INT64_MAX, STORABLE_TEXT_PATTERN, Kind, Severity, Status, Vertical

_FEED_PAGE = 200
_KEEP_ALIVE_SECONDS = 15.0

# 0 (the default): answer from the read model as it is.
MinPosition = Annotated[
    int,
    openapi.bounded(
        0, INT64_MAX, description="Answer only once the read model has applied this position"
    ),
]
# Each value a text PostgreSQL can store (400 naming the parameter otherwise).
_Texts = Annotated[
    tuple[QueryText, ...],
    openapi.texts(max_length=MAX_QUERY_TEXT_LENGTH, pattern=DOCUMENTED_TEXT_PATTERN),
]
_LAST_EVENT_ID = re.compile(r"[0-9]{1,19}")


class InboxItem(IssueFields, kw_only=True):
    """An issue as the inbox read model holds it."""

    # The row's JSON as stored, passed through undecoded (a JSON object).
    evidence: msgspec.Raw
    due_at: datetime
    note_count: int
    action_count: int
    position: int


class InboxPage(msgspec.Struct):
    items: list[InboxItem]
    next_cursor: str | None


class OrderIssue(msgspec.Struct, kw_only=True):
    issue_id: UUID
    kind: str
    status: str
    severity: str
    detected_at: datetime
    updated_at: datetime
    version: int


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
    )


class Left(msgspec.Struct, kw_only=True):
    """An issue that changed and is outside a feed's filters (on status, severity or
    assignee) now."""

    issue_id: UUID
    status: str
    severity: str
    assignee: str | None
    position: int


def _left(row: asyncpg.Record) -> Left:
    return Left(
        issue_id=row["issue_id"],
        status=row["status"],
        severity=row["severity"],
        assignee=row["assignee"],
        position=row["position"],
    )


class Stats(msgspec.Struct, kw_only=True):
    total: int
    by_status: dict[str, int]
    by_severity: dict[str, int]
    by_kind: dict[str, int]
    by_vertical: dict[str, int]
    by_country: dict[str, int]


def filters(
    status: tuple[Status, ...] = (),
    severity: tuple[Severity, ...] = (),
    kind: tuple[Kind, ...] = (),
    vertical: tuple[Vertical, ...] = (),
    country: _Texts = (),
    city: _Texts = (),
    assignee: _Texts = (),
    order_id: _Texts = (),
) -> Filters:
    """The repeatable filters of CONTRACT §5: Litestar checks each value against its type (one
    of an enum, or a text PostgreSQL can store) and answers 400 naming the parameter."""
    return Filters(status, severity, kind, vertical, country, city, assignee, order_id)


def _item(row: asyncpg.Record) -> InboxItem:
    """A read-model row (its columns are the item's fields) as the item; the evidence
    goes out as stored, not decoded and encoded again."""
    fields = dict(row)
    fields["evidence"] = msgspec.Raw(fields["evidence"].encode())
    return InboxItem(**fields)


async def _caught_up(
    positions: Positions, settings: Settings, name: str, min_position: int
) -> None:
    if min_position == 0:  # every read model has reached 0
        return
    if not await positions.wait_for(name, min_position, settings.min_position_wait_seconds):
        raise Unavailable(
            f"the {name} read model has not reached position {min_position} yet; retry"
        )


class InboxPages:
    """Inbox pages as JSON. Identical reads at one read-model position (as this process
    knows it when the request arrives; see app/http/cache.py for why that is exact) share
    one query and one encoding, and the page is kept ``seconds`` (0: every read queries)."""

    def __init__(self, read_models: ReadModels, seconds: float) -> None:
        self._read_models = read_models
        self._shared = alru_cache(maxsize=256, ttl=seconds)(self._read) if seconds > 0 else None

    async def page(
        self, filters: Filters, sort: str, limit: int, cursor: str | None, at: int | None
    ) -> bytes:
        """``at``: the newest inbox position known (None: not following, read alone)."""
        if at is None or self._shared is None:
            return await self._read(filters, sort, limit, cursor, at)
        return await self._shared(filters, sort, limit, cursor, at)

    async def _read(
        self, filters: Filters, sort: str, limit: int, cursor: str | None, _at: int | None
    ) -> bytes:
        rows, next_cursor = await self._read_models.issues(filters, sort, limit, cursor)
        return msgspec.json.encode(InboxPage([_item(row) for row in rows], next_cursor))


async def inbox_page(
    filters: Filters,
    pages: InboxPages,
    positions: Positions,
    settings: Settings,
    sort: str,
    limit: int,
    cursor: str | None,
    min_position: int,
) -> Response[InboxPage]:
    """GET /api/issues (routed by the issues controller, which owns that path)."""
    await _caught_up(positions, settings, "inbox", min_position)
    at = positions.known("inbox") if positions.live else None
    body = await pages.page(filters, sort, limit, cursor, at)
    # The page's JSON, encoded once for every request that shares it.
    return cast(Response[InboxPage], Response(body, media_type=MediaType.JSON))


class InboxController(Controller):
    tags = ["inbox"]

    @get(
        "/api/issues/{issue_id:uuid}",
        summary="One issue's current state",
        responses=openapi.read(by_id=True),
    )
    async def get_issue(
        self,
        issue_id: UUID,
        read_models: ReadModels,
        positions: Positions,
        settings: Settings,
        min_position: MinPosition = 0,
    ) -> Response[InboxItem]:
        await _caught_up(positions, settings, "inbox", min_position)
        row = await read_models.issue(issue_id)
        if row is None:
            raise NotFound(f"issue {issue_id} not found")
        return Response(_item(row), headers={"ETag": f'"{row["version"]}"'})

    @get(
        "/api/orders/{order_id:str}",
        summary="What is known of an order, and its issues",
        responses=openapi.read(by_id=True),
    )
    async def get_order(
        self,
        order_id: Annotated[
            str,
            Parameter(
                max_length=MAX_QUERY_TEXT_LENGTH,
                pattern=STORABLE_TEXT_PATTERN,
                schema_extra={"pattern": DOCUMENTED_TEXT_PATTERN},
            ),
        ],
        read_models: ReadModels,
        positions: Positions,
        settings: Settings,
        min_position: MinPosition = 0,
    ) -> OrderView:
        await _caught_up(positions, settings, "orders", min_position)
        rows = await read_models.order(order_id)
        state, next_check_at = await read_models.watched_order(order_id)
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

    @get(
        "/api/stats",
        summary="Unresolved issue counts, with the inbox's filters",
        cache=True,
        cache_key_builder=cache.keyed_by("stats", "inbox"),
        responses=openapi.read(),
    )
    async def stats(
        self,
        filters: Filters,
        read_models: ReadModels,
        positions: Positions,
        settings: Settings,
        min_position: MinPosition = 0,
    ) -> Stats:
        model = "stats" if filters.dimensions_only else "inbox"
        await _caught_up(positions, settings, model, min_position)
        rows = await read_models.counts(filters)
        by: dict[str, Counter[str]] = {
            d: Counter() for d in ("status", "severity", "kind", "vertical", "country")
        }
        total = 0
        for row in rows:
            total += row["n"]
            for dimension, counter in by.items():
                counter[row[dimension]] += row["n"]
        return Stats(
            total=total,
            by_status=dict(by["status"]),
            by_severity=dict(by["severity"]),
            by_kind=dict(by["kind"]),
            by_vertical=dict(by["vertical"]),
            by_country=dict(by["country"]),
        )

    @get(
        "/api/stream",
        summary="Server-Sent Events: each change to the inbox",
        media_type="text/event-stream",
        responses=openapi.read(),
    )
    async def stream(
        self,
        filters: Filters,
        read_models: ReadModels,
        positions: Positions,
        last_event_id: Annotated[
            str | None, HeaderParameter(name="Last-Event-ID", required=False)
        ] = None,
        after: Annotated[int | None, openapi.bounded(0, INT64_MAX)] = None,
    ) -> ServerSentEvent:
        """``event: issue`` with the issue as ``GET /api/issues/{id}`` shows it (its
        ``position`` is the SSE id); ``event: left`` (``issue_id``, ``status``,
        ``severity``, ``assignee``, ``position``) when a changed issue does not match the
        filters on status, severity or assignee (any more): a client showing it drops it.
        Resumes after ``Last-Event-ID`` or ``after``, else starts from now. A comment every
        15 s keeps idle connections open."""
        start = after
        if last_event_id is not None:
            if not _LAST_EVENT_ID.fullmatch(last_event_id) or int(last_event_id) > INT64_MAX:
                raise BadRequest("Last-Event-ID", "must be a position this feed sent")
            start = int(last_event_id)
        if start is None:
            start = await read_models.position("inbox")

        async def feed(position: int) -> AsyncGenerator[ServerSentEventMessage, None]:
            while True:
                # Every row of an event at or before `head` is committed (the projection
                # writes rows and position in one transaction), so after reading past it
                # with nothing left we may move on to it even if nothing matched.
                head = await read_models.position("inbox")
                rows = await read_models.changed_since(filters, position, _FEED_PAGE)
                for row in rows:
                    position = max(position, row["position"])
                    if filters.matches_changing(row):
                        kind, data = "issue", msgspec.json.encode(_item(row))
                    else:
                        kind, data = "left", msgspec.json.encode(_left(row))
                    yield ServerSentEventMessage(event=kind, data=data.decode(), id=str(position))
                if len(rows) == _FEED_PAGE:
                    continue
                position = max(position, head)
                if not await positions.wait_for("inbox", position + 1, _KEEP_ALIVE_SECONDS):
                    yield ServerSentEventMessage(comment="keep-alive")

        return ServerSentEvent(feed(start))
