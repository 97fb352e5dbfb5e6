"""Used login tickets in PostgreSQL (``adapters/login_tickets.py``, migration 0011): a jti
is used once, by whichever replica asks first; rows older than a day are swept."""

from __future__ import annotations

import asyncio

import asyncpg

from adapters.login_tickets import PostgresLoginTickets


async def test_a_ticket_is_used_once(pool: asyncpg.Pool) -> None:
    tickets = PostgresLoginTickets(pool)
    assert await tickets.use("jti-1") is True
    assert await tickets.use("jti-1") is False
    assert await tickets.use("jti-2") is True


async def test_of_many_uses_at_once_one_wins(pool: asyncpg.Pool) -> None:
    replicas = [PostgresLoginTickets(pool) for _ in range(4)]
    results = await asyncio.gather(*(r.use("jti-race") for r in replicas))
    assert sorted(results) == [False, False, False, True]


async def test_each_use_sweeps_the_rows_older_than_a_day(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "INSERT INTO login_tickets (jti, used_at) VALUES"
        " ('old', now() - interval '25 hours'), ('recent', now() - interval '23 hours')"
    )
    assert await PostgresLoginTickets(pool).use("new") is True
    rows = await pool.fetch("SELECT jti FROM login_tickets ORDER BY jti")
    assert [r["jti"] for r in rows] == ["new", "recent"]
