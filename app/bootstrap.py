"""The one composition root: builds pools, clients, applications and workers from Settings.

Entrypoints (``app/cli.py``) and tests call it; nothing else reads the environment.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta

import anyio.to_thread
import asyncpg
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from prometheus_client import Histogram

from adapters import nats as nats_adapter
from adapters import postgres
from adapters.clock import Clock, SystemClock
from adapters.embedded import embedded_nats, embedded_postgres
from adapters.eventstore import eventstore_env
from app import rules_config
from app.detection import Detector
from app.history import History
from app.queries import Positions, ReadModels
from app.service import CommandBus, IssueApplication, IssueService
from app.settings import Settings
from app.workers.relay import Relay, RelayConfig
from projections import PROJECTIONS
from projections.follower import Follower, FollowerConfig

log = logging.getLogger(__name__)

COMMAND_BATCH_SIZE = Histogram(
    "inbox_command_batch_size",
    "Commands stored by one save()",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)
COMMAND_BATCH_SECONDS = Histogram("inbox_command_batch_seconds", "Time to execute one batch")


@dataclass(frozen=True)
class Endpoints:
    database_url: str
    nats_url: str


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
            nats_url = stack.enter_context(embedded_nats(settings.data_dir))
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


def _record_batch(size: int, seconds: float) -> None:
    COMMAND_BATCH_SIZE.observe(size)
    COMMAND_BATCH_SECONDS.observe(seconds)


@contextlib.asynccontextmanager
async def container(
    settings: Settings,
    endpoints: Endpoints,
    *,
    clock: Clock | None = None,
) -> AsyncIterator[Container]:
    """Build the container; close everything it opened on exit, in reverse order.

    ``clock`` is every part's clock: the demo's compressed order time (``inbox up
    --speed``, ``INBOX_DEMO_SPEED``) runs detection, commands (``detected_at``,
    ``resolved_at``, ``due_at``), snoozes and the KPI's window on the same time."""
    clock = clock or SystemClock()
    env = eventstore_env(endpoints.database_url, pool_size=settings.command_writers + 1)
    async with contextlib.AsyncExitStack() as stack:
        pool = await postgres.create_pool(endpoints.database_url, max_size=settings.db_pool_size)
        stack.push_async_callback(pool.close)
        nc = await nats_adapter.connect(endpoints.nats_url, name="support-inbox")
        stack.push_async_callback(nc.close)
        # The library opens its psycopg pool synchronously: keep that off the event loop.
        app = await anyio.to_thread.run_sync(lambda: IssueApplication(env=env))
        stack.callback(app.close)
        issues = IssueService(
            app=app, clock=clock, request_window=timedelta(hours=settings.idempotency_window_hours)
        )
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
        detector = Detector(
            pool=pool,
            issues=issues,
            thresholds=rules_config.load(settings.rules_file),
            clock=clock,
            command_batch_size=settings.command_batch_size,
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
            history=History(pool, app.mapper),
            read_models=read_models,
            positions=positions,
            detector=detector,
        )


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


def followers(built: Container, names: list[str] | None = None) -> list[Follower]:
    """A follower for each named read model (all when None)."""
    settings = built.settings
    config = FollowerConfig(
        batch_size=settings.projection_batch_size,
        poll_interval=settings.projection_poll_seconds,
    )
    return [
        Follower(
            PROJECTIONS[name],
            database_url=built.endpoints.database_url,
            mapper=built.issues.app.mapper,
            config=config,
        )
        for name in (names or list(PROJECTIONS))
    ]
