"""One active worker per role: a PostgreSQL advisory lock held on the worker's own
connection elects it; the others stand by. Losing the connection releases the lock, so a
standby takes over within about a poll interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from adapters import postgres
from adapters.loops import backoff, wait_or_stop

log = logging.getLogger(__name__)

STANDBY_POLL_SECONDS = 1.0


async def run_as_leader(
    *,
    database_url: str,
    role: str,
    stop: asyncio.Event,
    work: Callable[[asyncpg.Connection], Awaitable[None]],
    max_backoff: float,
    command_timeout: float,
) -> None:
    """Connect, win the advisory lock of ``role``, run ``work`` on that connection; on a
    lost connection reconnect with a bounded backoff (logged each time); return when
    ``stop`` is set. Any other error propagates."""
    await run_connected(
        database_url=database_url,
        role=role,
        stop=stop,
        work=work,
        max_backoff=max_backoff,
        command_timeout=command_timeout,
        elect=True,
    )


async def run_connected(
    *,
    database_url: str,
    role: str,
    stop: asyncio.Event,
    work: Callable[[asyncpg.Connection], Awaitable[None]],
    max_backoff: float,
    command_timeout: float,
    elect: bool = False,
) -> None:
    """:func:`run_as_leader`'s loop; ``elect=False``: on every process at once (no lock),
    for what each process must do itself (follow the active rules version)."""
    failures = 0
    while not stop.is_set():
        conn: asyncpg.Connection | None = None
        try:
            conn = await postgres.connect(database_url, name=role, command_timeout=command_timeout)
            if not elect or await _elect(conn, role, stop):
                failures = 0
                await work(conn)
        except postgres.CONNECTION_ERRORS as exc:
            failures += 1
            delay = backoff(failures, cap=max_backoff)
            log.warning(
                "%s: database connection lost (%s: %s); reconnecting in %.1fs",
                role,
                type(exc).__name__,
                exc,
                delay,
            )
            await wait_or_stop(stop, delay)
        finally:
            if conn is not None and not conn.is_closed():
                conn.terminate()


async def _elect(conn: asyncpg.Connection, role: str, stop: asyncio.Event) -> bool:
    """Wait until this connection holds the role's lock; False when stopped first."""
    said = False
    while not stop.is_set():
        if await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", role):
            log.info("%s: active", role)
            return True
        if not said:
            log.info("%s: another worker is active; standing by", role)
            said = True
        await wait_or_stop(stop, STANDBY_POLL_SECONDS)
    return False
