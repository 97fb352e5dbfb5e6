"""``/api/events``: the global issue event log in position order (auditors, replays)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency

from app.history import History
from app.http import openapi
from app.integration import EventItem
from app.principal import Principal
from app.scope import Scope
from domain.values import INT64_MAX


class LogPage(msgspec.Struct):
    items: list[EventItem]
    # The position to ask after for the next page; null once the page reached the end
    # (poll again later with after = the last item's position).
    next_after: int | None


class EventLogController(Controller):
    path = "/api/events"
    tags = ["events"]

    @get("/", summary="The global issue event log, after a position", responses=openapi.read())
    async def log(
        self,
        caller: NamedDependency[Principal],
        history: NamedDependency[History],
        after: Annotated[int, openapi.bounded(0, INT64_MAX)] = 0,
        limit: Annotated[int, openapi.bounded(1, 1000)] = 100,
    ) -> LogPage:
        """Only the events of issues in the caller's scope; ``next_after`` pages through
        them exactly (none skipped or repeated, events written meanwhile included)."""
        items = await history.log(Scope.of(caller), after=after, limit=limit)
        next_after = items[-1].position if len(items) == limit else None
        return LogPage(items, next_after)
