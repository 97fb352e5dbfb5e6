"""Following the event log: the loop the relay and every projection share.

A follower of the log (DESIGN.md, "The log is the outbox") is the one active worker of
its role (adapters/leadership.py). On its connection it LISTENs on ``inbox_events``, the
channel the event store notifies on each insert, and runs its :meth:`LogWorker.step`
again at once while the step says there is more to read, else after the next NOTIFY or
the poll interval, whichever comes first, until ``stop``. A lost connection reconnects (a
standby may take over meanwhile); another failure of a step propagates, or, for a worker
that can wait out its failures (a projection), is handed to it and the step tried again
after a backoff.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from adapters.leadership import run_connected
from adapters.loops import backoff, wait_any, wait_or_stop
from adapters.postgres import CONNECTION_ERRORS

# The event store's NOTIFY channel (migrations/: a trigger on the events table).
EVENTS_CHANNEL = "inbox_events"


class LogWorker(Protocol):
    """What follows the log: the relay, a projection's follower."""

    @property
    def role(self) -> str:
        """The advisory lock that elects the one active worker."""
        ...

    async def start(self, conn: asyncpg.Connection) -> None:
        """Once per connection won, before the first step."""
        ...

    async def step(self, conn: asyncpg.Connection) -> bool:
        """Handle one batch; True when there may be more to read at once."""
        ...


class Retrying(Protocol):
    """A worker whose failed steps are tried again (a projection), not fatal (the relay)."""

    async def failed(
        self, conn: asyncpg.Connection, exc: Exception, attempt: int, delay: float
    ) -> None:
        """A step failed for a reason other than a lost connection (called inside the
        ``except`` block: ``log.exception`` shows the traceback); tried again in ``delay``."""
        ...

    def recovered(self, attempts: int) -> None:
        """A step succeeded after ``attempts`` failed ones."""
        ...


@dataclass(frozen=True)
class LogFollower:
    """Runs a :class:`LogWorker` as the active worker of its role."""

    database_url: str
    poll_interval: float = 1.0
    max_backoff: float = 5.0
    # A bounded wait on every query: a connection that went silent is replaced rather
    # than waited on for ever.
    command_timeout: float = 60.0
    # What wakes a step besides the poll (the event store's inserts, unless told).
    channel: str = EVENTS_CHANNEL

    async def run(
        self,
        worker: LogWorker,
        stop: asyncio.Event,
        *,
        retrying: Retrying | None = None,
        elect: bool = True,
    ) -> None:
        """Stand by, follow while active, reconnect after losing the database; return when
        ``stop`` is set. ``elect=False``: follow on every process at once (no standby)."""

        async def work(conn: asyncpg.Connection) -> None:
            await worker.start(conn)
            await self.follow(conn, worker, stop, retrying=retrying)

        await run_connected(
            database_url=self.database_url,
            role=worker.role,
            stop=stop,
            work=work,
            max_backoff=self.max_backoff,
            command_timeout=self.command_timeout,
            elect=elect,
        )

    async def follow(
        self,
        conn: asyncpg.Connection,
        worker: LogWorker,
        stop: asyncio.Event,
        *,
        retrying: Retrying | None = None,
    ) -> None:
        """Step ``worker`` on ``conn`` (wake on NOTIFY, poll as a fallback) until ``stop``."""
        wake = asyncio.Event()

        def on_notify(*_: Any) -> None:
            wake.set()

        await conn.add_listener(self.channel, on_notify)
        # A connection lost while waiting ends the wait: LISTEN went with it, so no NOTIFY
        # would come until the next poll (a step that reads elsewhere would not notice).
        conn.add_termination_listener(on_notify)
        failures = 0
        try:
            while not stop.is_set():
                wake.clear()  # before the read: a NOTIFY after it wakes the wait below
                if conn.is_closed():
                    raise asyncpg.InterfaceError("the connection was lost")  # reconnect
                try:
                    more = await worker.step(conn)
                except CONNECTION_ERRORS:
                    raise  # reconnect (run_as_leader), and let a standby try meanwhile
                except Exception as exc:
                    if retrying is None:
                        raise
                    failures += 1
                    delay = backoff(failures, cap=self.max_backoff)
                    await retrying.failed(conn, exc, failures, delay)
                    await wait_or_stop(stop, delay)
                    continue
                if failures and retrying is not None:
                    retrying.recovered(failures)
                    failures = 0
                if not more:
                    await wait_any(wake, stop, self.poll_interval)
        finally:
            conn.remove_termination_listener(on_notify)
            if not conn.is_closed():
                await conn.remove_listener(self.channel, on_notify)
