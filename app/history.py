"""Reads of the event store for auditors: one issue's history, its state at a version, and
the global log in position order. asyncpg reads the rows; the library's mapper decodes them.

Each read takes the caller's scope and answers as if the issues outside it did not exist.
An issue's vertical and country are in ``issue_scope``, written in the transaction of its
first event (``adapters/eventstore.py``): every stored event's issue has its row there, so
the log is filtered where it is read, never waiting on a read model that may lag.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg
from eventsourcing.persistence import Mapper

from adapters.eventstore import EVENT_COLUMNS, decode
from adapters.postgres import raises_unavailable
from app.integration import EventItem, event_item
from app.queries import in_scope
from app.scope import Scope
from domain.issue import OrderIssue


@raises_unavailable
class History:
    def __init__(self, pool: asyncpg.Pool, mapper: Mapper[UUID]) -> None:
        self._pool = pool
        self._mapper = mapper

    async def issue_events(
        self, issue_id: UUID, scope: Scope, *, up_to_version: int | None = None
    ) -> list[Any]:
        """(position, domain event) pairs of one issue, oldest first; none when the issue
        is outside ``scope``."""
        params: list[Any] = [issue_id, up_to_version]
        seen = (
            "TRUE"
            if scope.everywhere
            else "EXISTS (SELECT 1 FROM issue_scope AS s WHERE s.issue_id = $1"
            f" AND {in_scope(scope, params, vertical='s.vertical', country='s.country')})"
        )
        rows = await self._pool.fetch(
            f"SELECT {EVENT_COLUMNS} FROM inbox_events WHERE originator_id = $1"
            f" AND ($2::bigint IS NULL OR originator_version <= $2) AND {seen}"
            " ORDER BY originator_version",
            *params,
        )
        return [(row["notification_id"], decode(self._mapper, row)) for row in rows]

    async def issue_history(self, issue_id: UUID, scope: Scope) -> list[EventItem]:
        return [event_item(pos, event) for pos, event in await self.issue_events(issue_id, scope)]

    async def issue_state(
        self, issue_id: UUID, scope: Scope, version: int | None = None
    ) -> OrderIssue | None:
        """The issue as it was at ``version`` (the current state when None); None when
        there is none, or it is outside ``scope``."""
        aggregate: OrderIssue | None = None
        for _, event in await self.issue_events(issue_id, scope, up_to_version=version):
            aggregate = event.mutate(aggregate)
        return aggregate

    async def log(self, scope: Scope, *, after: int, limit: int) -> list[EventItem]:
        """The first ``limit`` events after position ``after`` of the issues in ``scope``,
        in position order. Positions are committed in order (the event store's table
        lock), so a page that ends at P never skips an event before P that commits later,
        and each issue's scope row commits with its first event, before any other of its
        events: asking again after the last position seen neither skips nor repeats."""
        params: list[Any] = [after, limit]
        if scope.everywhere:
            source = "inbox_events AS e"
        else:
            where = in_scope(scope, params, vertical="s.vertical", country="s.country")
            on = f"s.issue_id = e.originator_id AND {where}"
            source = f"inbox_events AS e JOIN issue_scope AS s ON {on}"
        rows = await self._pool.fetch(
            f"SELECT {', '.join('e.' + c for c in EVENT_COLUMNS.split(', '))} FROM {source}"
            " WHERE e.notification_id > $1 ORDER BY e.notification_id LIMIT $2",
            *params,
        )
        return [event_item(row["notification_id"], decode(self._mapper, row)) for row in rows]
