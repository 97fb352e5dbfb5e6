"""The snooze waker: a snoozed issue goes back to its previous status when its time comes
(CONTRACT §3), with a ``woken`` event by ``system``.

The durable timer is the snooze itself: the inbox read model (``inbox_issues``) holds each
issue's status, ``snoozed_until`` and version, so the due snoozes are one indexed query
(migration 0008) and nothing is lost in a restart. Snoozing again moves the time and
resolving clears it, in the read model as in the aggregate.

Each due issue gets a ``wake`` command with the read model's version as the expected
version: the command lands only on the very state the row shows. A second fire of the
same snooze (another replica, a row the projection has not caught up with yet, an agent
who woke or re-snoozed it meanwhile) is refused by the version check or the state
machine, so the ``woken`` event is stored once. One waker is active per database (an
advisory lock, like the relay's) so replicas do not race for nothing; the version check
is what makes a race harmless.

Time is the clock of the issue service (real time): ``until`` is an instant an agent gave
and the service checked against that clock. The detector's demo clock (``inbox up
--speed``) is order time and plays no part here.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from uuid import UUID

import asyncpg
from cachetools import TTLCache
from prometheus_client import Counter

from adapters.clock import Clock
from adapters.leadership import run_as_leader
from adapters.loops import wait_or_stop
from app.bus import CommandBus
from app.commands import Wake
from app.errors import ApplicationError, Unavailable
from domain.errors import DomainError
from domain.values import SYSTEM_ACTOR

log = logging.getLogger(__name__)

WAKES = Counter("inbox_snooze_wakes_total", "Snooze wakes sent, by outcome", ["outcome"])

ROLE = "snooze-waker"

# The due snoozes, earliest first; the wakes already answered at that version are left out
# (the projection has not applied them yet), so they never crowd out the others.
DUE_QUERY = (
    "SELECT issue_id, version, snoozed_until FROM inbox_issues"
    " WHERE status = 'snoozed' AND snoozed_until <= $1"
    " AND (issue_id, version) NOT IN (SELECT * FROM unnest($3::uuid[], $4::int[]))"
    " ORDER BY snoozed_until, issue_id LIMIT $2"
)


@dataclass(frozen=True)
class Woke:
    """What one pass did."""

    due: int  # rows found due
    woken: int  # woken now
    refused: int  # moved on already (woken elsewhere, snoozed again, resolved)
    failed: int  # the event store did not answer: tried again on the next pass


def _wake(at_version: int, issue_id: UUID) -> Wake:
    return Wake(issue_id=issue_id, actor=SYSTEM_ACTOR, expected_version=at_version)


class Waker:
    """Finds due snoozes in the read model and sends their wake commands."""

    def __init__(
        self,
        *,
        bus: CommandBus,
        clock: Clock,
        batch_size: int = 100,
        poll_seconds: float = 1.0,
        max_backoff: float = 5.0,
    ) -> None:
        self._bus = bus
        self._clock = clock
        self._batch_size = batch_size
        self._poll = poll_seconds
        self._max_backoff = max_backoff
        # (issue, version) whose wake was answered, until the projection shows the effect;
        # a row still showing that version after this long is asked for again (refused).
        self._answered: TTLCache[tuple[UUID, int], bool] = TTLCache(maxsize=100_000, ttl=60)

    async def wake_due(self, conn: asyncpg.Connection) -> Woke:
        """One pass: wake up to ``batch_size`` issues whose snooze has ended."""
        answered = list(self._answered)
        rows = await conn.fetch(
            DUE_QUERY,
            self._clock.now(),
            self._batch_size,
            [issue_id for issue_id, _ in answered],
            [version for _, version in answered],
        )
        outcomes = await asyncio.gather(
            *(self._bus.submit(_wake(row["version"], row["issue_id"])) for row in rows),
            return_exceptions=True,
        )
        woken = refused = failed = 0
        for row, outcome in zip(rows, outcomes, strict=True):
            key = (row["issue_id"], row["version"])
            if isinstance(outcome, Unavailable):
                failed += 1
                log.warning("waker: issue %s not woken yet: %s", row["issue_id"], outcome)
                continue
            if isinstance(outcome, DomainError | ApplicationError):
                refused += 1
                log.info("waker: issue %s had moved on: %s", row["issue_id"], outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                woken += 1
                log.info(
                    "waker: woke issue %s (snoozed until %s)",
                    row["issue_id"],
                    row["snoozed_until"].isoformat(),
                )
            self._answered[key] = True
        WAKES.labels("woken").inc(woken)
        WAKES.labels("refused").inc(refused)
        WAKES.labels("failed").inc(failed)
        return Woke(len(rows), woken, refused, failed)

    async def run(self, database_url: str, stop: asyncio.Event) -> None:
        """Wake due snoozes every ``poll_seconds`` (at once again after a full batch)
        while this process holds the waker's lock, until ``stop`` is set."""

        async def work(conn: asyncpg.Connection) -> None:
            while not stop.is_set():
                woke = await self.wake_due(conn)
                if woke.due < self._batch_size or woke.failed:
                    await wait_or_stop(stop, self._poll)

        await run_as_leader(
            database_url=database_url,
            role=ROLE,
            stop=stop,
            work=work,
            max_backoff=self._max_backoff,
            command_timeout=30.0,
        )
