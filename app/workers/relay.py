"""The outbox relay: every issue event from the event store to NATS JetStream (CONTRACT §4).

The event store is the outbox. The relay follows its global positions: it reads a batch
after its stored position, publishes each event with ``Nats-Msg-Id = <issue_id>:<version>``,
and advances the position only past events JetStream acknowledged. A crash between the
acks and the position update re-publishes at most that batch, which JetStream's duplicate
window drops; so every event is in the stream once, in effect.

Order per issue: an event is published only after the previous event of the same issue
was acknowledged (``adapters.nats.Publisher``, in waves; a failed publish is retried with
the same ``Nats-Msg-Id``). Nothing is ever skipped. The message of each event, subject and
CloudEvents headers, is ``app.integration.cloud_event``.

It follows the log with the loop the projections share (``adapters.follow.LogFollower``:
wake on NOTIFY, poll as a fallback, stop). One relay is active per stream: it holds a
PostgreSQL advisory lock on its own connection; others stand by and take over within
about a second of its connection ending.
An event the allow-list cannot map halts the relay after everything before it was
published: the reason and position go into ``relay_state`` (shown by ``GET /ready``).

Why it halts where the read models skip (projections/quarantine.py): a read model is
ours, derived, and rebuilt from the log once the code is fixed; a published stream is a
promise to other services that every event of an issue arrives, in version order. A
skipped event would be a gap no subscriber can see or repair, and an issue's later
events would go out on top of it. What halts the relay is a code matter (an event type
or version the allow-list does not know, a state the mapper cannot decode), fixed by a
deploy, after which it resumes from its position. Content that the read models' database
refuses (text holding NUL) is a JSON string like any other here and is published.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
from eventsourcing.persistence import Mapper
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from prometheus_client import Gauge

from adapters.eventlog import EventLog
from adapters.follow import LogFollower
from adapters.loops import backoff, wait_or_stop
from adapters.nats import Outgoing, Publisher, ensure_stream
from app.integration import IssueFacts, UnmappedEvent, cloud_event
from domain.issue import OrderIssue

log = logging.getLogger(__name__)

LAG = Gauge("inbox_relay_lag_events", "Stored events not yet published")
POSITION = Gauge("inbox_relay_position", "The relay's stored position")
HALTED = Gauge("inbox_relay_halted", "1 while the relay is halted on an unmappable event")

_DETECTED: type[Any] = OrderIssue.Detected  # type: ignore[attr-defined]
_FACTS_CACHE_SIZE = 100_000
_COMMAND_TIMEOUT_SECONDS = 15.0


class RelayError(Exception):
    """The relay cannot go on without an operator."""


class RelayHalted(RelayError):
    def __init__(self, position: int, reason: str) -> None:
        self.position = position
        self.reason = reason
        super().__init__(f"relay halted at position {position}: {reason}")


class RelayPositionAhead(RelayError):
    def __init__(self, stream: str, position: int, newest: int) -> None:
        super().__init__(
            f"the relay position of stream {stream} is {position} but the newest stored "
            f"event is {newest}: was the database restored from a backup? Refusing to "
            "start; if that is so, set relay_state.position to the last position that "
            "reached NATS (or to the newest event) and start again"
        )


@dataclass(frozen=True)
class RelayConfig:
    stream: str
    subject_prefix: str
    source: str
    duplicate_window: float
    max_bytes: int = -1
    max_msgs: int = -1
    replicas: int = 1
    create_stream: bool = True
    batch_size: int = 1000
    ack_timeout: float = 5.0
    poll_interval: float = 1.0
    max_backoff: float = 5.0


class Relay:
    def __init__(
        self,
        *,
        database_url: str,
        nats: NATS,
        mapper: Mapper[UUID],
        config: RelayConfig,
        max_pending: int = 4000,
    ) -> None:
        self._publisher = Publisher(
            nats,
            stream=config.stream,
            ack_timeout=config.ack_timeout,
            max_backoff=config.max_backoff,
            max_pending=max_pending,
        )
        self._following = LogFollower(
            database_url,
            poll_interval=config.poll_interval,
            max_backoff=config.max_backoff,
            command_timeout=_COMMAND_TIMEOUT_SECONDS,
        )
        self._log = EventLog(database_url, mapper)
        self._config = config
        self._facts: dict[UUID, IssueFacts] = {}
        self._position = 0
        self._stop = asyncio.Event()

    @property
    def role(self) -> str:
        return f"inbox-relay:{self._config.stream}"

    async def run(self, stop: asyncio.Event) -> None:
        """Stand by, relay while active, reconnect after losing the database; return when
        ``stop`` is set. Raises :class:`RelayError` when an operator must act."""
        self._stop = stop
        config = self._config
        attempt = 0
        while config.create_stream and not stop.is_set():
            try:
                await ensure_stream(
                    self._publisher.jetstream,
                    name=config.stream,
                    subjects=[f"{config.subject_prefix}.>"],
                    duplicate_window=config.duplicate_window,
                    max_bytes=config.max_bytes,
                    max_msgs=config.max_msgs,
                    replicas=config.replicas,
                )
                break
            except (NatsError, TimeoutError) as exc:
                attempt += 1
                delay = backoff(attempt, cap=config.max_backoff)
                log.warning(
                    "relay: cannot ensure stream %s (%s: %s); retrying in %.1fs",
                    config.stream,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await wait_or_stop(stop, delay)
        await self._following.run(self, stop)

    async def start(self, conn: asyncpg.Connection) -> None:
        """Read the stored position of a connection that won the lock."""
        stream = self._config.stream
        await conn.execute(
            "INSERT INTO relay_state (stream) VALUES ($1) ON CONFLICT DO NOTHING", stream
        )
        position: int = await conn.fetchval(
            "SELECT position FROM relay_state WHERE stream = $1", stream
        )
        newest = await self._log.newest(conn)
        if position > newest:
            raise RelayPositionAhead(stream, position, newest)
        self._position = position
        POSITION.set(position)
        LAG.set(newest - position)

    async def step(self, conn: asyncpg.Connection) -> bool:
        """Publish one batch after the position; True when it read events."""
        stream = self._config.stream
        rows = await self._log.after(conn, self._position, self._config.batch_size)
        if not rows:
            LAG.set(0)
            return False
        outgoing, halt = await self._prepare(conn, rows)
        if outgoing:

            async def commit(acked_to: int, count: int) -> None:
                await conn.execute(
                    "UPDATE relay_state SET position = $2, status = 'running',"
                    " halted_at = NULL, error = NULL, published = published + $3,"
                    " updated_at = now() WHERE stream = $1",
                    stream,
                    acked_to,
                    count,
                )
                POSITION.set(acked_to)
                HALTED.set(0)

            if not await self._publisher.publish(outgoing, self._stop, commit):
                log.info("relay: stopping; unacknowledged events will be re-sent")
                return False
            self._position = outgoing[-1].position
            LAG.set(max(0, await self._log.newest(conn) - self._position))
        if halt is not None:
            await self._record_halt(conn, halt)
            raise halt
        return True

    async def _record_halt(self, conn: asyncpg.Connection, halt: RelayHalted) -> None:
        HALTED.set(1)
        log.error("relay: %s", halt)
        await conn.execute(
            "UPDATE relay_state SET status = 'halted', halted_at = $2, error = $3,"
            " updated_at = now() WHERE stream = $1",
            self._config.stream,
            halt.position,
            halt.reason,
        )

    # ---- mapping ----------------------------------------------------------------------

    async def _prepare(
        self, conn: asyncpg.Connection, rows: Sequence[asyncpg.Record]
    ) -> tuple[list[Outgoing], RelayHalted | None]:
        """The messages of ``rows`` up to the first one that cannot be mapped."""
        decoded: list[tuple[int, Any]] = []
        halt: RelayHalted | None = None
        for row in rows:
            try:
                decoded.append((row["notification_id"], self._log.decode(row)))
            except Exception as exc:  # any failure to decode is a reason to halt
                log.exception("relay: cannot decode the event at %s", row["notification_id"])
                halt = RelayHalted(row["notification_id"], f"cannot decode: {exc}")
                break
        await self._learn_facts(conn, [event for _, event in decoded])
        outgoing = []
        for position, event in decoded:
            try:
                outgoing.append(self._message(position, event))
            except UnmappedEvent as exc:
                halt = RelayHalted(position, str(exc))
                break
        return outgoing, halt

    async def _learn_facts(self, conn: asyncpg.Connection, events: list[Any]) -> None:
        """Every event repeats its issue's order facts, which only Detected carries."""
        if len(self._facts) > _FACTS_CACHE_SIZE:
            self._facts.clear()
        missing = set()
        for event in events:
            if isinstance(event, _DETECTED):
                self._facts[event.originator_id] = IssueFacts.of(event)
            elif event.originator_id not in self._facts:
                missing.add(event.originator_id)
        if not missing:
            return
        for row in await self._log.first_events(conn, missing):
            first = self._log.decode(row)
            if isinstance(first, _DETECTED):
                self._facts[row["originator_id"]] = IssueFacts.of(first)

    def _message(self, position: int, event: Any) -> Outgoing:
        facts = self._facts.get(event.originator_id)
        if facts is None:
            raise UnmappedEvent(f"issue {event.originator_id} has no Detected event")
        return cloud_event(
            position,
            event,
            facts,
            subject_prefix=self._config.subject_prefix,
            source=self._config.source,
        )
