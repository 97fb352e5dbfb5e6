"""Shared fixtures: real PostgreSQL and NATS, a database of this run's own.

The servers are the ones ``INBOX_DATABASE_URL`` / ``INBOX_NATS_URL`` name, or embedded ones
started under ``.inbox/test`` when unset (CONTRACT §1). Each run creates its own database
(and, later, stream names), so runs never collide.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from adapters import postgres
from app import bootstrap
from app.bootstrap import Endpoints
from app.settings import Settings
from tests.databases import create_database, drop_database
from tests.tokens import TEST_SECRET

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
RUN_ID = uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def servers() -> Iterator[Endpoints]:
    """Server URLs (admin database): INBOX_DATABASE_URL / INBOX_NATS_URL, else embedded."""
    with bootstrap.servers(Settings(data_dir=REPO / ".inbox" / "test")) as endpoints:
        yield endpoints


@pytest.fixture(scope="session")
async def endpoints(servers: Endpoints) -> AsyncIterator[Endpoints]:
    """This run's own migrated database on the servers."""
    name = f"inbox_test_{RUN_ID}"
    url = await create_database(servers.database_url, name)
    await postgres.apply_migrations(url, REPO / "migrations")
    yield Endpoints(url, servers.nats_url)
    await drop_database(servers.database_url, name)


@pytest.fixture
async def fresh_database(servers: Endpoints) -> AsyncIterator[str]:
    """An empty database (not migrated) of this test's own."""
    name = f"inbox_test_{RUN_ID}_{uuid.uuid4().hex[:8]}"
    url = await create_database(servers.database_url, name)
    yield url
    await drop_database(servers.database_url, name)


@pytest.fixture(scope="session")
def settings(endpoints: Endpoints) -> Settings:
    return Settings(
        database_url=endpoints.database_url,
        nats_url=endpoints.nats_url,
        orders_stream=f"ORDERS_{RUN_ID}",
        orders_subject_prefix=f"orders_{RUN_ID}",
        inbox_stream=f"INBOX_{RUN_ID}",
        inbox_subject_prefix=f"inbox_{RUN_ID}.issue",
        jwt_secret=TEST_SECRET,
    )


def wait_until(
    condition: Callable[[], T | None], *, timeout: float = 10.0, what: str = "condition"
) -> T:
    """Poll ``condition`` until it returns a truthy value, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


async def async_wait_until(
    condition: Callable[[], Awaitable[object]], *, timeout: float = 10.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
