"""NATS: one connection with endless reconnects (DESIGN.md: nats-py gives up after 60), and
the streams this service owns."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, StorageType, StreamConfig, StreamInfo
from nats.js.errors import NotFoundError

log = logging.getLogger(__name__)


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
