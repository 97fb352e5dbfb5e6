"""Fixtures of the integration tests: a migrated database of the test's own, an issue
service (with its own connection pool) writing to it, and an asyncpg pool on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from adapters import postgres
from app.service import IssueService
from tests.integration.helpers import service

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def db(fresh_database: str) -> str:
    await postgres.apply_migrations(fresh_database, REPO / "migrations")
    return fresh_database


@pytest.fixture
def writer(db: str) -> Iterator[IssueService]:
    one = service(db)
    yield one
    one.app.close()


@pytest.fixture
async def pool(db: str) -> AsyncIterator[asyncpg.Pool]:
    created = await postgres.create_pool(db, max_size=4)
    yield created
    await created.close()
