"""``GET /api/stats``: unresolved issue counts, with the inbox's filters (CONTRACT §5)."""

from __future__ import annotations

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency

from app.http import cache, openapi
from app.http.reads import MinPosition, caught_up
from app.queries import Filters, Positions, ReadModels
from app.settings import Settings


class Stats(msgspec.Struct, kw_only=True):
    total: int
    by_status: dict[str, int]
    by_severity: dict[str, int]
    by_kind: dict[str, int]
    by_vertical: dict[str, int]
    by_country: dict[str, int]
    by_city: dict[str, int]


class StatsController(Controller):
    path = "/api/stats"
    tags = ["inbox"]

    @get(
        "/",
        summary="Unresolved issue counts, with the inbox's filters",
        cache=True,
        cache_key_builder=cache.keyed_by("stats", "inbox"),
        responses=openapi.read(),
    )
    async def stats(
        self,
        filters: NamedDependency[Filters],
        read_models: NamedDependency[ReadModels],
        positions: NamedDependency[Positions],
        settings: NamedDependency[Settings],
        min_position: MinPosition = 0,
    ) -> Stats:
        model = "stats" if filters.dimensions_only else "inbox"
        await caught_up(positions, settings, model, min_position)
        counts = await read_models.counts(filters)
        return Stats(
            total=counts.total,
            by_status=counts.by["status"],
            by_severity=counts.by["severity"],
            by_kind=counts.by["kind"],
            by_vertical=counts.by["vertical"],
            by_country=counts.by["country"],
            by_city=counts.by["city"],
        )
