"""What every worker's loop shares: waiting that a stop cuts short, and one backoff.

Every retry in the service (a lost database connection, a failed batch, a failed publish
or fetch, a crashed worker) waits :func:`backoff` seconds: doubling from ``base`` up to
``cap``; callers choose the two, and log each attempt (STYLE.md habit 8).
"""

from __future__ import annotations

import asyncio
import contextlib


def backoff(attempt: int, *, base: float = 0.2, cap: float = 5.0) -> float:
    """Seconds to wait before retry number ``attempt`` (1, 2, ...): ``base * 2**attempt``,
    at most ``cap``. The exponent is bounded: a float overflows at ``2.0**1024``, which a
    loop retrying every 5 s reaches in a long outage."""
    return min(cap, base * 2.0 ** min(attempt, 64))


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Sleep up to ``seconds``, waking at once when ``stop`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def wait_any(wake: asyncio.Event, stop: asyncio.Event, seconds: float) -> None:
    """Sleep up to ``seconds``, waking at once when either event is set."""
    waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
