"""``/health`` (the process is alive) and ``/ready`` (it can do its work)."""

from __future__ import annotations

import asyncio
import logging

import msgspec
from litestar import Controller, Response, get

from app.bootstrap import Container

log = logging.getLogger(__name__)

_CHECK_TIMEOUT = 2.0


class Readiness(msgspec.Struct):
    ready: bool
    database: bool
    nats: bool
    event_store_position: int | None


class HealthController(Controller):
    include_in_schema = True
    tags = ["operations"]

    @get("/health", summary="Liveness")
    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/ready", summary="Readiness: database and NATS reachable")
    async def ready(self, container: Container) -> Response[Readiness]:
        position: int | None = None
        try:
            position = await asyncio.wait_for(
                container.pool.fetchval(
                    "SELECT coalesce(max(notification_id), 0) FROM inbox_events"
                ),
                _CHECK_TIMEOUT,
            )
            database = True
        except (TimeoutError, OSError, Exception) as exc:  # any failure means "not ready"
            log.warning("readiness: database check failed: %s", exc)
            database = False
        nats = container.nats.is_connected
        ready = database and nats
        return Response(
            Readiness(ready, database, nats, position), status_code=200 if ready else 503
        )
