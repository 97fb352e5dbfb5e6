"""The storage contract (tests/watch_contract.py) kept by the in-memory fakes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.unit.fakes import FakeDeadLetters, FakeIssues, FakeWatchStore
from tests.watch_contract import Backend, DeadLetterStoreContract, WatchStoreContract


@pytest.fixture
def backend() -> Backend:
    issues = FakeIssues()
    store = FakeWatchStore(issue_versions=issues.versions)
    letters = FakeDeadLetters()

    async def age(by: timedelta) -> None:
        store.age(by)
        letters.age(by)

    return Backend(store=store, dead_letters=letters, issues=issues, age=age)


class TestFakeWatchStore(WatchStoreContract):
    pass


class TestFakeDeadLetters(DeadLetterStoreContract):
    pass
