"""``/health`` (the process is alive) and ``/ready`` (it can do its work)."""

from __future__ import annotations

import asyncio
import logging

import msgspec
from litestar import Controller, Response, get
from litestar.openapi import ResponseSpec

from adapters.postgres import CONNECTION_ERRORS
from app.bootstrap import Container
from projections import PROJECTIONS

log = logging.getLogger(__name__)

_CHECK_TIMEOUT = 2.0


class RelayStatus(msgspec.Struct):
    stream: str
    status: str  # running | halted | not started
    position: int
    lag: int  # stored events not yet published
    halted_at: int | None = None
    error: str | None = None


class ProjectionStatus(msgspec.Struct):
    position: int
    lag: int  # stored events not yet applied


class Readiness(msgspec.Struct):
    ready: bool
    database: bool
    nats: bool
    event_store_position: int | None
    relay: RelayStatus | None
    projections: dict[str, ProjectionStatus] | None = None


class HealthController(Controller):
    tags = ["operations"]

    @get("/health", summary="Liveness")
    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    @get(
        "/ready",
        summary="Readiness: database and NATS reachable; relay progress",
        responses={
            503: ResponseSpec(
                Readiness,
                description="Not ready: the report says what is down",
                generate_examples=False,
            )
        },
    )
    async def ready(self, container: Container) -> Response[Readiness]:
        newest: int | None = None
        relay: RelayStatus | None = None
        stream = container.settings.inbox_stream
        try:
            async with asyncio.timeout(_CHECK_TIMEOUT):
                newest = await container.pool.fetchval(
                    "SELECT coalesce(max(notification_id), 0) FROM inbox_events"
                )
                row = await container.pool.fetchrow(
                    "SELECT position, status, halted_at, error FROM relay_state WHERE stream = $1",
                    stream,
                )
                applied = await container.pool.fetch(
                    "SELECT name, position FROM projection_positions"
                )
            database = True
        except CONNECTION_ERRORS as exc:
            log.warning("readiness: database check failed: %s", exc)
            database = False
        else:
            assert newest is not None
            if row is None:
                relay = RelayStatus(stream, "not started", 0, newest)
            else:
                relay = RelayStatus(
                    stream,
                    row["status"],
                    row["position"],
                    max(0, newest - row["position"]),
                    row["halted_at"],
                    row["error"],
                )
        projections = None
        if database:
            assert newest is not None
            known = {r["name"]: r["position"] for r in applied}
            projections = {
                name: ProjectionStatus(known.get(name, 0), max(0, newest - known.get(name, 0)))
                for name in PROJECTIONS
            }
        nats = container.nats.is_connected
        ready = database and nats
        return Response(
            Readiness(ready, database, nats, newest, relay, projections),
            status_code=200 if ready else 503,
        )
