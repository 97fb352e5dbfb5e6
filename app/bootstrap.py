"""The one composition root: builds pools, clients, applications and workers from Settings.

Entrypoints (``app/cli.py``) and tests call it; nothing else reads the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import anyio.to_thread
import asyncpg
from eventsourcing.persistence import Mapper
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from prometheus_client import Histogram

from adapters import nats as nats_adapter
from adapters import postgres
from adapters.clock import Clock, ScaledClock, SystemClock
from adapters.dead_letters import PostgresDeadLetters
from adapters.embedded import embedded_nats, embedded_postgres
from adapters.eventlog import EventLog
from adapters.eventstore import eventstore_env
from adapters.follow import LogFollower
from adapters.login_tickets import PostgresLoginTickets
from adapters.rules_store import PostgresRulesStore
from adapters.tokens import mint, mint_ticket
from adapters.watch import PostgresWatchStore
from app.bus import CommandBus
from app.detection import Detector, Retention
from app.history import History
from app.ports import LoginTickets
from app.principal import Role
from app.queries import Positions, ReadModels
from app.rules_source import RulesSource
from app.service import IssueApplication, IssueService
from app.settings import Settings
from app.simulated_verticals import DEMO_VERTICALS, Mix
from app.simulator import simulate
from app.workers.detector import ConsumerConfigValues, consume_orders, fire_timers, sweep_forever
from app.workers.relay import Relay, RelayConfig
from app.workers.waker import Waker
from projections import PROJECTIONS
from projections import rebuild as rebuilding
from projections.follower import Follower, Projection
from projections.rebuild import Progress, RebuildResult

log = logging.getLogger(__name__)

COMMAND_BATCH_SIZE = Histogram(
    "inbox_command_batch_size",
    "Commands stored by one save()",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)
COMMAND_BATCH_SECONDS = Histogram("inbox_command_batch_seconds", "Time to execute one batch")
# A bounded wait on every query of a projection's follower.
PROJECTION_COMMAND_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Endpoints:
    database_url: str
    nats_url: str


# ---- tokens: the demo's own secret, development tokens -----------------------------------

_DEMO_KEY_FILE = "jwt-secret"


def _demo_secret_path(settings: Settings) -> Path:
    return settings.data_dir / _DEMO_KEY_FILE


def with_demo_secret(settings: Settings) -> Settings:
    """``inbox up`` with no way to check tokens configured: the settings with a secret of
    its data directory's own (made once, readable by its owner only), so that the demo
    works and ``inbox token`` mints tokens it accepts."""
    if settings.jwt_secret is not None or settings.jwt_jwks is not None:
        return settings
    path = _demo_secret_path(settings)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(48))
    return settings.model_copy(update={"jwt_secret": path.read_text().strip()})


def development_secret(settings: Settings) -> str | None:
    """The secret development tokens are signed with: INBOX_JWT_SECRET, else the one
    ``inbox up`` made under the data directory; None when there is neither."""
    if settings.jwt_secret is not None:
        return settings.jwt_secret
    path = _demo_secret_path(settings)
    return path.read_text().strip() if path.exists() else None


def development_token(
    secret: str,
    *,
    role: Role,
    sub: str,
    name: str | None = None,
    verticals: list[str] | None = None,
    countries: list[str] | None = None,
    ttl: timedelta = timedelta(hours=8),
    settings: Settings | None = None,
) -> str:
    """A development token (HS256) for ``sub`` in ``role``; scopes left out mean all; the
    configured issuer and audience, if any, so the API accepts it."""
    claims = _development_claims(role, sub, name, verticals, countries, settings)
    return mint(secret, claims, now=datetime.now(UTC), ttl=ttl)


def development_ticket(
    secret: str,
    *,
    role: Role,
    sub: str,
    name: str | None = None,
    verticals: list[str] | None = None,
    countries: list[str] | None = None,
    settings: Settings | None = None,
) -> str:
    """A one-time login ticket (10 minutes) with the claims of :func:`development_token`:
    ``POST /api/session {"ticket"}`` exchanges it once for a browser session."""
    claims = _development_claims(role, sub, name, verticals, countries, settings)
    return mint_ticket(secret, claims, now=datetime.now(UTC))


def _development_claims(
    role: Role,
    sub: str,
    name: str | None,
    verticals: list[str] | None,
    countries: list[str] | None,
    settings: Settings | None,
) -> dict[str, object]:
    claims: dict[str, object] = {"sub": sub, "role": role}
    if name:
        claims["name"] = name
    if verticals:
        claims["verticals"] = verticals
    if countries:
        claims["countries"] = countries
    if settings is not None and settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings is not None and settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return claims


@contextlib.contextmanager
def servers(settings: Settings, *, nats: bool = True) -> Iterator[Endpoints]:
    """The configured servers, or embedded ones under ``INBOX_DATA_DIR`` for what is unset.

    ``nats=False`` skips starting an embedded nats-server for commands that need none.
    """
    with contextlib.ExitStack() as stack:
        database_url = settings.database_url or stack.enter_context(
            embedded_postgres(settings.data_dir)
        )
        nats_url = settings.nats_url or ""
        if nats and not nats_url:
            nats_url = stack.enter_context(
                embedded_nats(settings.data_dir, avoid={settings.http_port, settings.metrics_port})
            )
        yield Endpoints(database_url, nats_url)


@dataclass
class Container:
    """Everything a process needs, built once."""

    settings: Settings
    endpoints: Endpoints
    clock: Clock
    pool: asyncpg.Pool
    nats: NATS
    js: JetStreamContext
    issues: IssueService
    bus: CommandBus
    history: History
    read_models: ReadModels
    positions: Positions
    detector: Detector
    login_tickets: LoginTickets
    rules: RulesSource


def _record_batch(size: int, seconds: float) -> None:
    COMMAND_BATCH_SIZE.observe(size)
    COMMAND_BATCH_SECONDS.observe(seconds)


@contextlib.asynccontextmanager
async def _event_store(
    settings: Settings, endpoints: Endpoints, clock: Clock
) -> AsyncIterator[IssueService]:
    """The issue service on the event store (the library's psycopg pool)."""
    env = eventstore_env(endpoints.database_url, pool_size=settings.command_writers + 1)
    # The library opens its psycopg pool synchronously: keep that off the event loop.
    app = await anyio.to_thread.run_sync(lambda: IssueApplication(env=env))
    try:
        yield IssueService(
            app=app, clock=clock, request_window=timedelta(hours=settings.idempotency_window_hours)
        )
    finally:
        app.close()


def _detector(
    settings: Settings, pool: asyncpg.Pool, issues: IssueService, clock: Clock, rules: RulesSource
) -> Detector:
    return Detector(
        store=PostgresWatchStore(pool),
        dead_letters=PostgresDeadLetters(pool),
        issues=issues,
        rules=rules,
        clock=clock,
        command_batch_size=settings.command_batch_size,
    )


def who(what: str) -> str:
    """Who activates a rules version: ``what`` (start, SIGHUP, ...) in this process."""
    return f"{what} (pid {os.getpid()} on {socket.gethostname()})"


@contextlib.asynccontextmanager
async def _following(rules: RulesSource, database_url: str, poll: float) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(rules.follow(database_url, stop, poll_interval=poll))
    try:
        yield
    finally:
        stop.set()
        await task


@contextlib.asynccontextmanager
async def container(
    settings: Settings,
    endpoints: Endpoints,
    *,
    clock: Clock | None = None,
    follow_rules: bool = False,
) -> AsyncIterator[Container]:
    """Build the container; close everything it opened on exit, in reverse order.

    ``follow_rules``: what a process that judges order events does (``inbox api``,
    ``detect``, ``up``): make its rules file the active version if it is not, and follow
    the active version until the container closes (app/rules_source.py).

    ``clock`` is every part's clock: the demo's compressed order time (``inbox up
    --speed``, ``INBOX_DEMO_SPEED``) runs detection, commands (``detected_at``,
    ``resolved_at``, ``due_at``), snoozes and the KPI's window on the same time."""
    clock = clock or SystemClock()
    async with contextlib.AsyncExitStack() as stack:
        pool = await postgres.create_pool(endpoints.database_url, max_size=settings.db_pool_size)
        stack.push_async_callback(pool.close)
        nc = await nats_adapter.connect(endpoints.nats_url, name="support-inbox")
        stack.push_async_callback(nc.close)
        issues = await stack.enter_async_context(_event_store(settings, endpoints, clock))
        bus = CommandBus(
            issues,
            batch_size=settings.command_batch_size,
            writers=settings.command_writers,
            timeout=settings.command_timeout_seconds,
            queue_limit=settings.command_queue_limit,
            on_batch=_record_batch,
        )
        bus.start()
        stack.push_async_callback(bus.stop)
        read_models = ReadModels(pool)
        positions = Positions(endpoints.database_url, read_models)
        await positions.start()
        stack.push_async_callback(positions.close)
        rules = RulesSource.from_file(
            settings.rules_file, PostgresRulesStore(pool, settings.orders_stream)
        )
        if follow_rules:
            await rules.start(by=who("start"))
            await stack.enter_async_context(
                _following(rules, endpoints.database_url, settings.rules_poll_seconds)
            )
        yield Container(
            settings=settings,
            endpoints=endpoints,
            clock=clock,
            pool=pool,
            nats=nc,
            js=nc.jetstream(),
            issues=issues,
            bus=bus,
            history=History(pool, issues.app.mapper),
            read_models=read_models,
            positions=positions,
            detector=_detector(settings, pool, issues, clock, rules),
            login_tickets=PostgresLoginTickets(pool),
            rules=rules,
        )


@contextlib.asynccontextmanager
async def dead_letters(settings: Settings, endpoints: Endpoints) -> AsyncIterator[Detector]:
    """What ``inbox dead-letters`` uses: the detector on a pool and the issue
    service (no NATS, no command bus, no LISTEN)."""
    clock = SystemClock()
    pool = await postgres.create_pool(endpoints.database_url, max_size=settings.db_pool_size)
    try:
        async with _event_store(settings, endpoints, clock) as issues:
            rules = RulesSource.from_file(
                settings.rules_file, PostgresRulesStore(pool, settings.orders_stream)
            )
            await rules.refresh()  # replayed with the version the detectors run
            yield _detector(settings, pool, issues, clock, rules)
    finally:
        await pool.close()


async def rebuild(
    settings: Settings,
    endpoints: Endpoints,
    name: str,
    *,
    swap: bool,
    progress: Progress | None = None,
) -> RebuildResult:
    """``inbox rebuild NAME``: the event store's mapper and connections of its own (no
    NATS, no command bus, no LISTEN, no pool)."""
    async with _event_store(settings, endpoints, SystemClock()) as issues:
        return await rebuilding.rebuild(
            EventLog(endpoints.database_url, issues.app.mapper),
            PROJECTIONS[name],
            batch_size=settings.projection_batch_size,
            progress=progress,
            swap=swap,
        )


# ---- workers: what `inbox up`, `relay`, `project`, `detect` and `simulate` run ----------

Worker = Callable[[Container, asyncio.Event], Awaitable[None]]


def relay(built: Container) -> Relay:
    """The outbox relay of the configured INBOX stream."""
    settings = built.settings
    return Relay(
        database_url=built.endpoints.database_url,
        nats=built.nats,
        mapper=built.issues.app.mapper,
        config=RelayConfig(
            stream=settings.inbox_stream,
            subject_prefix=settings.inbox_subject_prefix,
            source=settings.event_source,
            duplicate_window=settings.inbox_duplicate_window_seconds,
            max_bytes=settings.inbox_stream_max_bytes,
            max_msgs=settings.inbox_stream_max_msgs,
            replicas=settings.inbox_stream_replicas,
            create_stream=settings.create_streams,
            batch_size=settings.relay_batch_size,
            ack_timeout=settings.relay_ack_timeout_seconds,
            poll_interval=settings.relay_poll_seconds,
            max_backoff=settings.relay_max_backoff_seconds,
        ),
    )


def follower(
    database_url: str,
    mapper: Mapper[UUID],
    projection: Projection,
    *,
    batch_size: int,
    poll_interval: float,
) -> Follower:
    """The follower of one read model, on the shared log-following loop."""
    following = LogFollower(
        database_url,
        poll_interval=poll_interval,
        command_timeout=PROJECTION_COMMAND_TIMEOUT_SECONDS,
    )
    source = EventLog(database_url, mapper)
    return Follower(projection, source=source, following=following, batch_size=batch_size)


def followers(built: Container, names: list[str] | None = None) -> list[Follower]:
    """A follower for each named read model (all when None)."""
    settings = built.settings
    return [
        follower(
            built.endpoints.database_url,
            built.issues.app.mapper,
            PROJECTIONS[name],
            batch_size=settings.projection_batch_size,
            poll_interval=settings.projection_poll_seconds,
        )
        for name in (names or list(PROJECTIONS))
    ]


async def run_relay(built: Container, stop: asyncio.Event) -> None:
    await relay(built).run(stop)


async def run_projections(built: Container, stop: asyncio.Event) -> None:
    async with asyncio.TaskGroup() as group:
        for one in followers(built):
            group.create_task(one.run(stop))


async def run_detector(built: Container, stop: asyncio.Event) -> None:
    """The order consumer, the durable timers, the retention sweep and the snooze waker."""
    settings = built.settings
    config = ConsumerConfigValues(
        stream=settings.orders_stream,
        subject_prefix=settings.orders_subject_prefix,
        create_stream=settings.create_streams,
        ack_wait=settings.orders_ack_wait_seconds,
        batch_size=settings.orders_batch_size,
    )
    # A TaskGroup: when one part fails the other is cancelled, not left running beside
    # the restarted worker.
    async with asyncio.TaskGroup() as group:
        group.create_task(consume_orders(built.nats, built.detector, config, stop))
        group.create_task(fire_timers(built.detector, stop))
        retention = Retention(
            orders=timedelta(days=settings.order_retention_days),
            contacts=timedelta(days=settings.contact_retention_days),
            dead_letters=timedelta(days=settings.dead_letter_retention_days),
        )
        group.create_task(
            sweep_forever(built.detector, retention, stop, every=settings.sweep_interval_seconds)
        )
        # Snoozes end on the system's clock: the demo's order time under a demo speed, as
        # the `until` an agent gives is judged by the same clock.
        waker = Waker(bus=built.bus, clock=built.clock)
        group.create_task(waker.run(built.endpoints.database_url, stop))


def simulator(
    orders: int | None,
    rate: float,
    seed: int,
    clock: ScaledClock,
    verticals: Mix = DEMO_VERTICALS,
) -> Worker:
    """Publish simulated orders on ``clock`` (``--orders``, ``--rate``, ``--seed``,
    ``--verticals``)."""

    async def run(built: Container, stop: asyncio.Event) -> None:
        settings = built.settings
        if settings.create_streams:
            await nats_adapter.ensure_stream(
                built.nats.jetstream(),
                name=settings.orders_stream,
                subjects=[f"{settings.orders_subject_prefix}.>"],
                duplicate_window=settings.inbox_duplicate_window_seconds,
            )
        await simulate(
            built.nats,
            subject_prefix=settings.orders_subject_prefix,
            orders=orders,
            rate=rate,
            seed=seed,
            clock=clock,
            stop=stop,
            verticals=verticals,
        )

    run.__name__ = "simulator"
    return run
