"""NATS: one connection with endless reconnects (DESIGN.md: nats-py gives up after 60)."""

from __future__ import annotations

import logging

import nats
from nats.aio.client import Client

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
