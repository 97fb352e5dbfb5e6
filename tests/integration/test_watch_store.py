"""The storage contract (tests/watch_contract.py) kept by the PostgreSQL adapters
(adapters/watch.py, adapters/dead_letters.py), each test on a database of its own."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest

from adapters.dead_letters import PostgresDeadLetters
from adapters.watch import PostgresWatchStore
from app.service import IssueService
from tests.watch_contract import Backend, DeadLetterStoreContract, WatchStoreContract


@pytest.fixture
def backend(pool: asyncpg.Pool, writer: IssueService) -> Backend:
    async def age(by: timedelta) -> None:
        await pool.execute("UPDATE order_watch SET updated_at = updated_at - $1::interval", by)
        await pool.execute("UPDATE dead_letters SET received_at = received_at - $1::interval", by)

    return Backend(
        store=PostgresWatchStore(pool),
        dead_letters=PostgresDeadLetters(pool),
        issues=writer,
        age=age,
    )


class TestPostgresWatchStore(WatchStoreContract):
    pass


class TestPostgresDeadLetters(DeadLetterStoreContract):
    pass
