"""NATS: one connection with endless reconnects (DESIGN.md: nats-py gives up after 60), the
streams this service owns, and the in-order JetStream publisher of the outbox relay.

:class:`Publisher` publishes a batch of messages so that each issue's messages are
acknowledged in order: the batch goes out in *waves* (the first message of each issue in
the batch, then the second, ...), each wave pipelined with ``publish_async``; a failed
publish is retried, with the same ``Nats-Msg-Id`` and a backoff, before the next wave.
Nothing is ever skipped, and JetStream's duplicate window drops what a retry or a
restarted relay sends twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, PubAck, StorageType, StreamConfig, StreamInfo
from nats.js.errors import NotFoundError
from prometheus_client import Counter

from adapters.loops import backoff, wait_or_stop

log = logging.getLogger(__name__)

PUBLISHED = Counter("inbox_relay_published_total", "Issue events acknowledged by JetStream")
DUPLICATES = Counter(
    "inbox_relay_duplicates_total", "Publishes JetStream acknowledged as duplicates"
)
RETRIES = Counter("inbox_relay_retries_total", "Publishes retried after an error or timeout")


async def connect(url: str, *, name: str) -> Client:
    async def on_disconnect() -> None:
        log.warning("NATS disconnected from %s", url)

    async def on_reconnect() -> None:
        log.info("NATS reconnected to %s", url)

    async def on_error(exc: Exception) -> None:
        log.warning("NATS error: %s", exc)

    client: Client = await nats.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        error_cb=on_error,
    )
    return client


async def ensure_stream(
    js: JetStreamContext,
    *,
    name: str,
    subjects: list[str],
    duplicate_window: float,
    max_bytes: int = -1,
    max_msgs: int = -1,
    replicas: int = 1,
) -> StreamInfo:
    """Create the stream, or bring the settings we own up to date on an existing one.

    File storage; ``discard=new`` so that a full stream refuses new messages (a relay then
    stalls and retries) instead of silently dropping old ones.
    """
    config = StreamConfig(
        name=name,
        subjects=subjects,
        storage=StorageType.FILE,
        discard=DiscardPolicy.NEW,
        duplicate_window=duplicate_window,
        max_bytes=max_bytes,
        max_msgs=max_msgs,
        num_replicas=replicas,
    )
    try:
        info: StreamInfo = await js.stream_info(name)
    except NotFoundError:
        log.info("creating stream %s (%s)", name, ", ".join(subjects))
        created: StreamInfo = await js.add_stream(config)
        return created
    current = info.config
    wanted: dict[str, Any] = {
        "subjects": subjects,
        "duplicate_window": duplicate_window,
        "discard": DiscardPolicy.NEW,
        "max_bytes": max_bytes,
        "max_msgs": max_msgs,
    }
    if any(getattr(current, key) != value for key, value in wanted.items()):
        # Change only the settings we own: an operator's other settings (max_age, ...)
        # stay as they are.
        log.info("updating stream %s to the configured settings", name)
        updated: StreamInfo = await js.update_stream(dataclasses.replace(current, **wanted))
        return updated
    return info


@dataclass(frozen=True)
class Outgoing:
    """One message to publish: the event at ``position``, version ``version`` of its issue."""

    position: int
    issue_id: UUID
    version: int
    subject: str
    payload: bytes
    headers: dict[str, str]


class Publisher:
    """Publishes batches to one stream, in order per issue, awaiting every PubAck."""

    def __init__(
        self,
        nats: Client,
        *,
        stream: str,
        ack_timeout: float,
        max_backoff: float,
        max_pending: int = 4000,
    ) -> None:
        self._nats = nats
        self._stream = stream
        self._ack_timeout = ack_timeout
        self._max_backoff = max_backoff
        self._max_pending = max_pending
        self._js = nats.jetstream(publish_async_max_pending=max_pending)

    @property
    def jetstream(self) -> JetStreamContext:
        return self._js

    async def publish(
        self,
        outgoing: list[Outgoing],
        stop: asyncio.Event,
        commit: Callable[[int, int], Awaitable[None]],
    ) -> bool:
        """Publish everything, wave by wave; False when stopped before all were acked.

        After each wave, ``commit`` stores the end of the acknowledged prefix of the batch
        (every event up to it acked) and how many it adds: a batch that stalls half way
        (NATS down, stream full) for longer than the duplicate window is not re-sent from
        its start later.
        """
        positions = [message.position for message in outgoing]
        acked: set[int] = set()
        prefix = 0  # how many of `positions` (in order) are acknowledged
        for wave in waves(outgoing):
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
                delay = backoff(attempt, base=0.05, cap=self._max_backoff)
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
        timeout = self._ack_timeout
        futures: list[asyncio.Future[PubAck] | Exception] = []
        js = self._js
        for message in messages:
            try:
                futures.append(
                    await js.publish_async(
                        message.subject,
                        message.payload,
                        headers=dict(message.headers),
                        stream=self._stream,
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


def waves(outgoing: list[Outgoing]) -> list[list[Outgoing]]:
    """Split a batch so that each wave holds at most one message per issue, in order."""
    result: list[list[Outgoing]] = []
    seen: dict[UUID, int] = {}
    for message in outgoing:
        index = seen.get(message.issue_id, 0)
        seen[message.issue_id] = index + 1
        if index == len(result):
            result.append([])
        result[index].append(message)
    return result
