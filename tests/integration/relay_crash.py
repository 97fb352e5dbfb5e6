"""A relay process that kills itself with SIGKILL right after JetStream acknowledged a wave
of its Nth batch and before it stored the new position: the worst moment to die."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from adapters.nats import Publisher
from app import bootstrap
from app.settings import load_settings

KILL_AFTER = int(os.environ["KILL_AFTER_BATCHES"])
_original_publish = Publisher.publish
_batches = 0


async def _publish_then_die(
    self: Publisher, outgoing: Any, stop: Any, commit: Callable[[int, int], Awaitable[None]]
) -> bool:
    global _batches  # noqa: PLW0603
    _batches += 1

    async def die_before_commit(position: int, count: int) -> None:
        if _batches == KILL_AFTER:
            os.kill(os.getpid(), signal.SIGKILL)
        await commit(position, count)

    return await _original_publish(self, outgoing, stop, die_before_commit)


async def main() -> None:
    settings = load_settings()
    endpoints = bootstrap.Endpoints(settings.database_url or "", settings.nats_url or "")
    async with bootstrap.container(settings, endpoints) as built:
        await bootstrap.relay(built).run(asyncio.Event())


Publisher.publish = _publish_then_die  # type: ignore[method-assign]
asyncio.run(main())
