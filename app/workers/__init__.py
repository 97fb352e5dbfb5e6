"""Long-running workers: each has a ``run(stop)`` coroutine that returns when ``stop`` is set."""

from __future__ import annotations

import asyncio
import contextlib


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Sleep up to ``seconds``, waking at once when ``stop`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
