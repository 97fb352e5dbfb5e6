"""``GET /api/stream``: Server-Sent Events, one for each change to the inbox read model,
with the inbox's filters (CONTRACT §5)."""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from typing import Annotated
from uuid import UUID

import asyncpg
import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import HeaderParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from app.http import openapi
from app.http.errors import BadRequest
from app.http.reads import inbox_item
from app.queries import Filters, Positions, ReadModels
from domain.values import INT64_MAX

_FEED_PAGE = 200
_KEEP_ALIVE_SECONDS = 15.0
_LAST_EVENT_ID = re.compile(r"[0-9]{1,19}")


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


class StreamController(Controller):
    path = "/api/stream"
    tags = ["inbox"]

    @get(
        "/",
        summary="Server-Sent Events: each change to the inbox",
        media_type="text/event-stream",
        responses=openapi.read(),
    )
    async def stream(
        self,
        filters: NamedDependency[Filters],
        read_models: NamedDependency[ReadModels],
        positions: NamedDependency[Positions],
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
                        kind, data = "issue", msgspec.json.encode(inbox_item(row))
                    else:
                        kind, data = "left", msgspec.json.encode(_left(row))
                    yield ServerSentEventMessage(event=kind, data=data.decode(), id=str(position))
                if len(rows) == _FEED_PAGE:
                    continue
                position = max(position, head)
                if not await positions.wait_for("inbox", position + 1, _KEEP_ALIVE_SECONDS):
                    yield ServerSentEventMessage(comment="keep-alive")

        return ServerSentEvent(feed(start))
