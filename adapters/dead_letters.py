"""Order events that could not be accepted (``dead_letters``), kept where an operator can
list them and replay them once fixed; the payload as it came (bytes)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg
import msgspec

from adapters.postgres import raises_unavailable
from adapters.watch import delete_older


class Rejected(msgspec.Struct, frozen=True):
    """An event to park: where it came from, its id when it has one, why."""

    source: str
    event_id: str | None
    reason: str
    payload: bytes


class DeadLetter(msgspec.Struct, frozen=True):
    id: int
    source: str
    event_id: str | None
    reason: str
    received_at: datetime
    payload: bytes


@raises_unavailable
class PostgresDeadLetters:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def park(self, letters: Sequence[Rejected]) -> None:
        await self._pool.executemany(
            "INSERT INTO dead_letters (source, event_id, reason, payload) VALUES ($1, $2, $3, $4)",
            [(r.source, r.event_id, r.reason, r.payload) for r in letters],
        )

    async def list(self, limit: int) -> list[DeadLetter]:
        """The oldest ``limit`` parked events, oldest first."""
        rows = await self._pool.fetch(
            "SELECT id, source, event_id, reason, received_at, payload FROM dead_letters"
            " ORDER BY id LIMIT $1",
            limit,
        )
        return [DeadLetter(**dict(row)) for row in rows]

    async def delete(self, letter_id: int) -> None:
        await self._pool.execute("DELETE FROM dead_letters WHERE id = $1", letter_id)

    async def sweep(self, *, older_than: timedelta, batch: int) -> int:
        """Delete what was parked longer ago than ``older_than``, ``batch`` rows per
        statement; how many."""
        async with self._pool.acquire() as conn:
            return await delete_older(conn, "dead_letters", "id", "received_at", older_than, batch)
