"""The read cache's store: bounded in bytes (least recently used out first), entries
expire."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.http import cache
from app.http.cache import ReadCache


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(cache.time, "monotonic", lambda: now[0])
    return now


async def test_an_entry_lives_until_it_expires(clock: list[float]) -> None:
    store = ReadCache(max_bytes=1000)
    await store.set("a", b"page", expires_in=2)
    await store.set("b", "text", expires_in=timedelta(seconds=5))
    assert await store.get("a") == b"page"
    assert await store.expires_in("a") == 2
    clock[0] += 2
    assert await store.get("a") is None
    assert not await store.exists("a")
    assert await store.get("b") == b"text"
    await store.delete("b")
    assert await store.get("b") is None


async def test_the_least_recently_used_entry_leaves_first(clock: list[float]) -> None:
    store = ReadCache(max_bytes=120)
    for key in "abc":
        await store.set(key, bytes(40), expires_in=60)
    assert await store.get("a") == bytes(40)  # now b is the least recently used
    await store.set("d", bytes(40), expires_in=60)
    assert [await store.exists(key) for key in "abcd"] == [True, False, True, True]
    await store.set("huge", bytes(121), expires_in=60)  # larger than the store
    assert not await store.exists("huge")
    await store.delete_all()
    assert not await store.exists("a")
