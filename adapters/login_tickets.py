"""Used login tickets (``login_tickets``): a ticket's ``jti`` is stored when it is used, so
it logs a browser in once (``app/http/session.py``). Each use also deletes the rows older
than :data:`KEPT` (a ticket is refused long before that by its ``exp``)."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from adapters.postgres import raises_unavailable

# Longer than any ticket lives (at most 15 minutes): a row older than this guards nothing.
KEPT = timedelta(days=1)


@raises_unavailable
class PostgresLoginTickets:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def use(self, jti: str) -> bool:
        """Mark the ticket ``jti`` used: True the first time, False ever after (on any
        replica: the primary key decides)."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM login_tickets WHERE used_at < now() - $1::interval", KEPT
            )
            inserted = await conn.fetchval(
                "INSERT INTO login_tickets (jti) VALUES ($1) ON CONFLICT DO NOTHING RETURNING jti",
                jti,
            )
        return inserted is not None
