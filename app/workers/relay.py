"""The outbox relay: every issue event from the event store to NATS JetStream (CONTRACT §4).

The event store is the outbox. The relay follows its global positions: it reads a batch
after its stored position, publishes each event with ``Nats-Msg-Id = <issue_id>:<version>``,
and advances the position only past events JetStream acknowledged. A crash between the
acks and the position update re-publishes at most that batch, which JetStream's duplicate
window drops; so every event is in the stream once, in effect.

Order per issue: an event is published only after the previous event of the same issue
was acknowledged. Within a batch the events go out in *waves* (the first event of each
issue in the batch, then the second, ...), each wave pipelined with ``publish_async``; a
failed publish is retried, with the same ``Nats-Msg-Id`` and a backoff, before the next
wave. Nothing is ever skipped.

One relay is active per stream: it holds a PostgreSQL advisory lock on its own
connection; others stand by and take over within about a second of its connection ending.
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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
import msgspec
from eventsourcing.persistence import Mapper
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js.api import PubAck
from prometheus_client import Counter, Gauge

from adapters.eventstore import EVENT_COLUMNS, decode
from adapters.leadership import run_as_leader, wait_any, wait_or_stop
from adapters.nats import ensure_stream
from app.integration import IssueFacts, UnmappedEvent, integration_event
from domain.issue import OrderIssue

log = logging.getLogger(__name__)

PUBLISHED = Counter("inbox_relay_published_total", "Issue events acknowledged by JetStream")
DUPLICATES = Counter(
    "inbox_relay_duplicates_total", "Publishes JetStream acknowledged as duplicates"
)
RETRIES = Counter("inbox_relay_retries_total", "Publishes retried after an error or timeout")
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
class Outgoing:
    position: int
    issue_id: UUID
    version: int
    subject: str
    payload: bytes
    headers: dict[str, str]


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
        self._database_url = database_url
        self._nats = nats
        self._max_pending = max_pending
        self._js = nats.jetstream(publish_async_max_pending=max_pending)
        self._mapper = mapper
        self._config = config
        self._facts: dict[UUID, IssueFacts] = {}
        self._encoder = msgspec.json.Encoder()

    async def run(self, stop: asyncio.Event) -> None:
        """Stand by, relay while active, reconnect after losing the database; return when
        ``stop`` is set. Raises :class:`RelayError` when an operator must act."""
        config = self._config
        attempt = 0
        while config.create_stream and not stop.is_set():
            try:
                await ensure_stream(
                    self._js,
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
                delay = min(config.max_backoff, 0.2 * 2**attempt)
                log.warning(
                    "relay: cannot ensure stream %s (%s: %s); retrying in %.1fs",
                    config.stream,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await wait_or_stop(stop, delay)
        await run_as_leader(
            database_url=self._database_url,
            role=f"inbox-relay:{config.stream}",
            stop=stop,
            work=lambda conn: self._relay(conn, stop),
            max_backoff=config.max_backoff,
            # A bounded wait on every query: a connection that went silent is replaced
            # rather than waited on for ever.
            command_timeout=_COMMAND_TIMEOUT_SECONDS,
        )

    async def _relay(self, conn: asyncpg.Connection, stop: asyncio.Event) -> None:
        stream = self._config.stream
        await conn.execute(
            "INSERT INTO relay_state (stream) VALUES ($1) ON CONFLICT DO NOTHING", stream
        )
        position: int = await conn.fetchval(
            "SELECT position FROM relay_state WHERE stream = $1", stream
        )
        newest = await self._newest(conn)
        if position > newest:
            raise RelayPositionAhead(stream, position, newest)
        POSITION.set(position)
        LAG.set(newest - position)
        wake = asyncio.Event()

        def on_notify(*_: Any) -> None:
            wake.set()

        await conn.add_listener("inbox_events", on_notify)
        try:
            while not stop.is_set():
                wake.clear()  # before the read: a NOTIFY after it wakes the wait below
                rows = await conn.fetch(
                    f"SELECT {EVENT_COLUMNS} FROM inbox_events WHERE notification_id > $1"
                    " ORDER BY notification_id LIMIT $2",
                    position,
                    self._config.batch_size,
                )
                if not rows:
                    LAG.set(0)
                    await wait_any(wake, stop, self._config.poll_interval)
                    continue
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

                    if not await self._publish(outgoing, stop, commit):
                        log.info("relay: stopping; unacknowledged events will be re-sent")
                        return
                    position = outgoing[-1].position
                    LAG.set(max(0, await self._newest(conn) - position))
                if halt is not None:
                    await self._record_halt(conn, halt)
                    raise halt
        finally:
            if not conn.is_closed():
                await conn.remove_listener("inbox_events", on_notify)

    async def _newest(self, conn: asyncpg.Connection) -> int:
        newest: int = await conn.fetchval(
            "SELECT coalesce(max(notification_id), 0) FROM inbox_events"
        )
        return newest

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
                decoded.append((row["notification_id"], decode(self._mapper, row)))
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
        rows = await conn.fetch(
            f"SELECT {EVENT_COLUMNS} FROM inbox_events"
            " WHERE originator_id = ANY($1::uuid[]) AND originator_version = 1",
            list(missing),
        )
        for row in rows:
            first = decode(self._mapper, row)
            if isinstance(first, _DETECTED):
                self._facts[row["originator_id"]] = IssueFacts.of(first)

    def _message(self, position: int, event: Any) -> Outgoing:
        facts = self._facts.get(event.originator_id)
        if facts is None:
            raise UnmappedEvent(f"issue {event.originator_id} has no Detected event")
        entry, payload = integration_event(event, facts)
        issue_id = event.originator_id
        message_id = f"{issue_id}:{event.originator_version}"
        return Outgoing(
            position=position,
            issue_id=issue_id,
            version=event.originator_version,
            subject=f"{self._config.subject_prefix}.{entry.name}",
            payload=self._encoder.encode(payload),
            headers={
                "Nats-Msg-Id": message_id,
                "Inbox-Position": str(position),
                "ce-specversion": "1.0",
                "ce-id": message_id,
                "ce-type": entry.ce_type,
                "ce-source": self._config.source,
                "ce-subject": str(issue_id),
                "ce-time": event.at.isoformat(),
                "content-type": "application/json",
            },
        )

    # ---- publishing -------------------------------------------------------------------

    async def _publish(
        self,
        outgoing: list[Outgoing],
        stop: asyncio.Event,
        commit: Callable[[int, int], Awaitable[None]],
    ) -> bool:
        """Publish everything, wave by wave; False when stopped before all were acked.

        After each wave, ``commit`` stores the end of the acknowledged prefix of the batch
        (every event up to it acked): a batch that stalls half way (NATS down, stream
        full) for longer than the duplicate window is not re-sent from its start later.
        """
        positions = [message.position for message in outgoing]
        acked: set[int] = set()
        prefix = 0  # how many of `positions` (in order) are acknowledged
        for wave in _waves(outgoing):
            pending = wave
            attempt = 0
            while pending:
                if stop.is_set():
                    return False
                if not self._nats.is_connected:
                    # Publishing now would only fill the client's buffer (and leak
                    # nats-py's publish slots when it overflows): wait for the reconnect.
                    await wait_or_stop(stop, 0.1)
                    continue
                failed = await self._publish_wave(pending)
                if not failed:
                    break
                attempt += 1
                RETRIES.inc(len(failed))
                delay = min(self._config.max_backoff, 0.05 * 2**attempt)
                first_message, first_error = failed[0]
                log.warning(
                    "relay: %d of %d publishes failed (attempt %d; first %s: %s: %s); "
                    "retrying with the same Nats-Msg-Id in %.2fs",
                    len(failed),
                    len(pending),
                    attempt,
                    first_message.headers["Nats-Msg-Id"],
                    type(first_error).__name__,
                    first_error,
                    delay,
                )
                pending = [message for message, _ in failed]
                await wait_or_stop(stop, delay)
            acked.update(message.position for message in wave)
            start = prefix
            while prefix < len(positions) and positions[prefix] in acked:
                prefix += 1
            if prefix > start:
                await commit(positions[prefix - 1], prefix - start)
        return True

    async def _publish_wave(self, messages: list[Outgoing]) -> list[tuple[Outgoing, Exception]]:
        """Pipeline one wave (at most one message per issue); the ones that failed."""
        timeout = self._config.ack_timeout
        futures: list[asyncio.Future[PubAck] | Exception] = []
        js = self._js
        for message in messages:
            try:
                futures.append(
                    await js.publish_async(
                        message.subject,
                        message.payload,
                        headers=dict(message.headers),
                        stream=self._config.stream,
                        wait_stall=timeout,
                    )
                )
            except Exception as exc:  # reported with the failures below and retried
                futures.append(exc)
                # nats-py keeps the publish slot of a publish that raised: a fresh
                # context (fresh slots) for what follows.
                self._js = self._nats.jetstream(publish_async_max_pending=self._max_pending)

        async def outcome(future: asyncio.Future[PubAck] | Exception) -> PubAck | Exception:
            if isinstance(future, Exception):
                return future
            try:
                # publish_async futures have no timeout of their own (DESIGN.md).
                return await asyncio.wait_for(future, timeout)
            except Exception as exc:  # a timeout or a JetStream error: retried by caller
                return exc

        results = await asyncio.gather(*(outcome(f) for f in futures))
        failed = []
        for message, result in zip(messages, results, strict=True):
            if isinstance(result, Exception):
                failed.append((message, result))
            else:
                PUBLISHED.inc()
                if result.duplicate:
                    DUPLICATES.inc()
        return failed


def _waves(outgoing: list[Outgoing]) -> list[list[Outgoing]]:
    """Split a batch so that each wave holds at most one event per issue, in order."""
    waves: list[list[Outgoing]] = []
    seen: dict[UUID, int] = {}
    for message in outgoing:
        index = seen.get(message.issue_id, 0)
        seen[message.issue_id] = index + 1
        if index == len(waves):
            waves.append([])
        waves[index].append(message)
    return waves
