"""Reads of the event store for auditors: one issue's history, its state at a version, and
the global log in position order. asyncpg reads the rows; the library's mapper decodes them.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg
from eventsourcing.persistence import Mapper

from adapters.eventstore import EVENT_COLUMNS, decode
from adapters.postgres import raises_unavailable
from app.integration import EventItem, event_item
from domain.issue import OrderIssue


@raises_unavailable
class History:
    def __init__(self, pool: asyncpg.Pool, mapper: Mapper[UUID]) -> None:
        self._pool = pool
        self._mapper = mapper

    async def issue_events(self, issue_id: UUID, *, up_to_version: int | None = None) -> list[Any]:
        """(position, domain event) pairs of one issue, oldest first."""
        rows = await self._pool.fetch(
            f"SELECT {EVENT_COLUMNS} FROM inbox_events WHERE originator_id = $1"
            " AND ($2::bigint IS NULL OR originator_version <= $2)"
            " ORDER BY originator_version",
            issue_id,
            up_to_version,
        )
        return [(row["notification_id"], decode(self._mapper, row)) for row in rows]

    async def issue_history(self, issue_id: UUID) -> list[EventItem]:
        return [event_item(pos, event) for pos, event in await self.issue_events(issue_id)]

    async def issue_state(self, issue_id: UUID, version: int | None = None) -> OrderIssue | None:
        """The issue as it was at ``version`` (the current state when None)."""
        aggregate: OrderIssue | None = None
        for _, event in await self.issue_events(issue_id, up_to_version=version):
            aggregate = event.mutate(aggregate)
        return aggregate

    async def log(self, *, after: int, limit: int) -> list[EventItem]:
        rows = await self._pool.fetch(
            f"SELECT {EVENT_COLUMNS} FROM inbox_events WHERE notification_id > $1"
            " ORDER BY notification_id LIMIT $2",
            after,
            limit,
        )
        return [event_item(row["notification_id"], decode(self._mapper, row)) for row in rows]
