"""``/health`` (the process is alive) and ``/ready`` (it can do its work).

``/ready`` is 503 when the database or NATS cannot be reached, and also while a worker it
reports on has stopped making progress: the relay is halted, or a projection is
*failing* (its last batch failed and is being tried again: ``last_error``) or *stalled*
(it has events to apply and its follower has not read the log for
``INBOX_READY_STALL_SECONDS``: none runs, or it hangs). An idle follower reads the log
every poll, so a projection with nothing to do, or one that was idle until a moment ago,
is never stalled; nor is one that no follower ever ran while nothing was written.

The rules (``rules``): the version this process judges with, and why the last reload
was refused. A refused reload leaves the running rules, which are valid, so it does not
make the process unready (every replica would leave service for one bad file): it is
shown here, in the log and in ``inbox_rules_last_reload_failed``.

Events a projection skipped (projections/quarantine.py) do not make it unready: the
model goes on with every other event, and taking every API replica out of service for
one issue's row would be worse. ``/ready`` shows how many there are and the latest few.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from nats.aio.client import Client as NATS

from adapters.postgres import DatabaseUnavailable
from app.queries import Progress, ReadModels
from app.rules_source import RulesSource
from app.settings import Settings
from projections import PROJECTIONS

log = logging.getLogger(__name__)

_CHECK_TIMEOUT = 2.0
_LATEST_SKIPPED = 5


class RelayStatus(msgspec.Struct):
    stream: str
    status: str  # running | halted | not started
    position: int
    lag: int  # stored events not yet published
    halted_at: int | None = None
    error: str | None = None


class SkippedEvent(msgspec.Struct):
    position: int
    issue_id: UUID
    version: int
    error: str
    failed_at: datetime


class ProjectionStatus(msgspec.Struct):
    position: int
    lag: int  # stored events not yet applied
    # running | failing (last_error, tried again) | stalled (lag, no read for too long)
    # | not started (no follower ever ran, nothing to apply)
    status: str = "running"
    checked_at: datetime | None = None  # when its follower last read the log
    last_error: str | None = None
    failed_at: datetime | None = None
    skipped: int = 0  # events it could not apply (projection_failures)
    latest_skipped: list[SkippedEvent] = msgspec.field(default_factory=list)


class RulesReadiness(msgspec.Struct):
    version: str  # the rules version this process judges with
    source: str
    last_error: str | None = None  # why the last reload was refused (the rules stayed)
    failed_at: datetime | None = None


class Readiness(msgspec.Struct):
    ready: bool
    database: bool
    nats: bool
    event_store_position: int | None
    relay: RelayStatus | None
    projections: dict[str, ProjectionStatus] | None = None
    # Why it is not ready, one line each.
    problems: list[str] = msgspec.field(default_factory=list)
    rules: RulesReadiness | None = None


def rules_readiness(rules: RulesSource) -> RulesReadiness:
    error = rules.last_error
    return RulesReadiness(
        rules.current.version,
        rules.source,
        error.message if error else None,
        error.at if error else None,
    )


def projection_status(
    position: int, lag: int, checked_ago: float | None, last_error: str | None, stall: float
) -> str:
    """How a projection stands: ``checked_ago`` is how many seconds ago its follower last
    read the log (None: never), ``stall`` the bound (INBOX_READY_STALL_SECONDS)."""
    if last_error is not None:
        return "failing"
    if lag > 0 and (checked_ago is None or checked_ago > stall):
        return "stalled"
    if checked_ago is None and position == 0:
        return "not started"
    return "running"


class HealthController(Controller):
    tags = ["operations"]

    @get("/health", summary="Liveness")
    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    @get(
        "/ready",
        summary="Readiness: database and NATS reachable; relay and projections making progress",
        responses={
            503: ResponseSpec(
                Readiness,
                description="Not ready: the report says what is down",
                generate_examples=False,
            )
        },
    )
    async def ready(
        self,
        read_models: NamedDependency[ReadModels],
        nats: NamedDependency[NATS],
        settings: NamedDependency[Settings],
        rules_source: NamedDependency[RulesSource],
    ) -> Response[Readiness]:
        newest: int | None = None
        relay: RelayStatus | None = None
        projections: dict[str, ProjectionStatus] | None = None
        stream = settings.inbox_stream
        problems: list[str] = []
        try:
            async with asyncio.timeout(_CHECK_TIMEOUT):
                progress = await read_models.progress(stream, _LATEST_SKIPPED)
            database = True
        except (DatabaseUnavailable, TimeoutError) as exc:
            log.warning("readiness: database check failed: %s", exc)
            database = False
            problems.append(f"database: {exc}")
        else:
            newest = progress.newest
            relay = _relay(stream, progress.relay, newest)
            if relay.status == "halted":
                problems.append(f"relay halted at position {relay.halted_at}: {relay.error}")
            projections = _projections(progress, settings.ready_stall_seconds)
            for name, status in projections.items():
                if status.status == "failing":
                    problems.append(f"projection {name} failing: {status.last_error}")
                elif status.status == "stalled":
                    problems.append(
                        f"projection {name} stalled at position {status.position},"
                        f" {status.lag} events behind"
                    )
        connected = nats.is_connected
        if not connected:
            problems.append("nats: not connected")
        return Response(
            Readiness(
                not problems,
                database,
                connected,
                newest,
                relay,
                projections,
                problems,
                rules_readiness(rules_source),
            ),
            status_code=200 if not problems else 503,
        )


def _relay(stream: str, row: Any, newest: int) -> RelayStatus:
    if row is None:
        return RelayStatus(stream, "not started", 0, newest)
    return RelayStatus(
        stream,
        row["status"],
        row["position"],
        max(0, newest - row["position"]),
        row["halted_at"],
        row["error"],
    )


def _projections(progress: Progress, stall: float) -> dict[str, ProjectionStatus]:
    newest = progress.newest
    rows = {r["name"]: r for r in progress.projections}
    counts = {r["projection"]: r["n"] for r in progress.skipped}
    events: dict[str, list[SkippedEvent]] = {}
    for r in progress.latest_skipped:
        events.setdefault(r["projection"], []).append(
            SkippedEvent(r["position"], r["issue_id"], r["version"], r["error"], r["failed_at"])
        )
    statuses = {}
    for name in PROJECTIONS:
        row = rows.get(name)
        position = row["position"] if row else 0
        lag = max(0, newest - position)
        checked_ago = row["checked_ago"] if row else None
        last_error = row["last_error"] if row else None
        statuses[name] = ProjectionStatus(
            position,
            lag,
            projection_status(position, lag, checked_ago, last_error, stall),
            row["checked_at"] if row else None,
            last_error,
            row["failed_at"] if row else None,
            counts.get(name, 0),
            events.get(name, []),
        )
    return statuses
