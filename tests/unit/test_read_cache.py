"""The read cache's store: bounded in bytes (key, answer and overhead of each entry; least
recently used out first), entries expire, and a miss is answered once for every request
that asks for the key meanwhile."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from litestar.datastructures import MultiDict

from app.http import cache
from app.http.app import create_app
from app.http.cache import ReadCache
from app.principal import Principal
from app.queries import Positions, ReadModels
from app.settings import Settings
from tests.tokens import TEST_SECRET, headers_for


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(cache, "monotonic", lambda: now[0])
    return now


async def test_an_entry_lives_until_it_expires(clock: list[float]) -> None:
    store = ReadCache(max_bytes=10_000, seconds=60)
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


async def test_expired_entries_leave_by_themselves(clock: list[float]) -> None:
    store = ReadCache(max_bytes=10_000, seconds=1)
    await store.set("old", b"x", expires_in=1)
    clock[0] += 1.5
    await store.set("new", b"y", expires_in=1)  # a write drops what has expired
    assert "old" not in store._entries
    assert await store.get("new") == b"y"


async def test_the_least_recently_used_entry_leaves_first(clock: list[float]) -> None:
    entry = 1 + 40 + cache._ENTRY_OVERHEAD  # a one-letter key and a 40-byte answer
    store = ReadCache(max_bytes=3 * entry, seconds=60)
    for key in "abc":
        await store.set(key, bytes(40), expires_in=60)
    assert await store.get("a") == bytes(40)  # now b is the least recently used
    await store.set("d", bytes(40), expires_in=60)
    assert [await store.exists(key) for key in "abcd"] == [True, False, True, True]
    await store.set("k" * (3 * entry), b"", expires_in=60)  # its key alone is too large
    assert not await store.exists("k" * (3 * entry))
    await store.delete_all()
    assert not await store.exists("a")


async def test_requests_missing_a_key_being_answered_wait_for_that_answer() -> None:
    store = ReadCache(max_bytes=10_000, seconds=60)
    reads = 0

    async def request() -> bytes:
        nonlocal reads
        if (found := await store.get("k")) is not None:
            return found
        reads += 1
        await asyncio.sleep(0.01)  # the query
        await store.set("k", b"page", expires_in=60)
        return b"page"

    assert await asyncio.gather(*(request() for _ in range(20))) == [b"page"] * 20
    assert reads == 1


async def test_when_the_first_request_stores_nothing_the_others_read_for_themselves() -> None:
    store = ReadCache(max_bytes=10_000, seconds=60)
    first = asyncio.Event()

    async def failing() -> None:
        assert await store.get("k") is None
        first.set()
        await asyncio.sleep(0.01)
        raise RuntimeError("the database went away")  # its task ends, nothing stored

    failed = asyncio.create_task(failing())
    await first.wait()
    waiting = asyncio.create_task(store.get("k"))
    await asyncio.sleep(0)
    assert not waiting.done()  # it waits for the first
    assert await asyncio.wait_for(waiting, 1) is None  # and then reads itself
    assert isinstance(failed.exception(), RuntimeError)
    # The next request answers the key anew.
    assert await store.get("k") is None
    assert "k" in store._answering


async def test_nobody_waits_for_an_uncached_key_or_when_the_cache_is_off() -> None:
    store = ReadCache(max_bytes=10_000, seconds=60)
    assert await store.get("k#uncached") is None
    assert await asyncio.wait_for(store.get("k#uncached"), 0.1) is None
    off = ReadCache(max_bytes=10_000, seconds=0)
    assert await off.get("k") is None
    assert await asyncio.wait_for(off.get("k"), 0.1) is None


async def test_a_first_request_that_hangs_holds_the_others_a_bounded_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cache, "_SHARE_SECONDS", 0.05)
    store = ReadCache(max_bytes=10_000, seconds=60)
    assert await store.get("k") is None  # this task answers, and never does
    assert await asyncio.wait_for(asyncio.create_task(store.get("k")), 1) is None


class _Positions:
    def __init__(self, known: int, live: bool = True) -> None:
        self._known, self.live = known, live

    def known(self, _name: str) -> int:
        return self._known


def _key(query: str, known: int = 10, live: bool = True) -> tuple[str, bool]:
    """The key the inbox list's builder gives a request, and whether it may be cached."""
    scope: dict[str, Any] = {
        "state": {},
        "query_string": query.encode(),
        "user": Principal("ann", "agent"),
    }
    request = SimpleNamespace(
        scope=scope,
        method="GET",
        url=SimpleNamespace(path="/api/issues"),
        query_params=MultiDict(parse_qsl(query, keep_blank_values=True)),
        app=SimpleNamespace(state=SimpleNamespace(positions=_Positions(known, live))),
    )
    key = cache.keyed_by("inbox", single=("sort", "limit", "cursor"))(request)  # type: ignore[arg-type]
    return key, cache._should_store(scope, 200)  # type: ignore[arg-type]


def test_the_key_is_what_the_handler_reads() -> None:
    key, stored = _key("country=FI&country=DE&limit=5")
    assert stored
    assert _key("limit=5&country=DE&country=FI&junk=1") == (key, True)  # order, unknown names
    assert _key("country=FI&country=DE&limit=5", known=11)[0] != key  # a newer position
    assert _key("country=FI&country=DE&limit=5&min_position=10") == (key, True)


@pytest.mark.parametrize(
    ("query", "live"),
    [
        ("limit=1&limit=2", True),  # the handler reads the last value
        ("sort=priority&sort=updated_at", True),
        ("min_position=1&min_position=99", True),  # the largest one is not reached
        ("min_position=11", True),
        ("min_position=x", True),
        ("country=" + "F" * 3000, True),
        ("limit=5", False),  # positions not followed
    ],
)
def test_these_are_answered_uncached(query: str, live: bool) -> None:
    key, stored = _key(query, live=live)
    assert not stored
    assert key.endswith("#uncached")


def test_only_keyed_requests_are_stored() -> None:
    """Litestar wraps the route's POST and OPTIONS in the response cache too."""
    assert not cache._should_store({"state": {}}, 200)  # type: ignore[typeddict-item]  # a partial scope on purpose


class _SlowPool:
    """A pool whose every query finds nothing, slowly enough for requests to meet."""

    queries = 0

    async def fetch(self, *_args: Any) -> list[Any]:
        self.queries += 1
        await asyncio.sleep(0.05)
        return []


async def test_identical_reads_in_flight_make_one_query() -> None:
    """Through the app: 20 clients asking for the same page at a new position make one
    query; a page at another position (or another page) is read again."""
    pool = _SlowPool()
    read_models = ReadModels(pool)  # type: ignore[arg-type]
    positions = Positions("", read_models, _known={"inbox": 10})
    # Followed (live): as if its LISTEN connection were open.
    positions._conn = SimpleNamespace(is_closed=lambda: False)  # type: ignore[assignment]
    services = SimpleNamespace(
        settings=Settings(jwt_secret=TEST_SECRET),
        read_models=read_models,
        positions=positions,
        **dict.fromkeys(
            ("clock", "nats", "issues", "bus", "history", "detector", "login_tickets", "rules")
        ),
    )
    transport = httpx.ASGITransport(app=create_app(services))  # type: ignore[arg-type]
    async with httpx.AsyncClient(
        transport=transport, base_url="http://inbox", headers=headers_for(role="agent")
    ) as client:
        pages = await asyncio.gather(*(client.get("/api/issues") for _ in range(20)))
        assert {(page.status_code, page.text) for page in pages} == {
            (200, '{"items":[],"next_cursor":null}')
        }
        assert pool.queries == 1
        await asyncio.gather(*(client.get("/api/issues?limit=5") for _ in range(5)))
        positions._known["inbox"] = 11
        await client.get("/api/issues")
        assert pool.queries == 3
