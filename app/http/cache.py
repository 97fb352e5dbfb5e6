"""Inbox pages and counts cached per read-model position, on Litestar's response cache.

Many agents look at the same views (the default inbox, their country, their team). A page
is a function of its query and of the read model's contents, and the contents change only
when a projection commits a batch, which it announces with its new position (NOTIFY,
kept by ``Positions``). So a response is cached under its query plus the positions of the
read models it reads, as this process knows them when the request arrives:

- a read made after the key was taken sees at least those positions, so a cached answer is
  never older than the positions in its key; a newer commit NOTIFYs a position past every
  key taken before it, so the next request misses and reads again;
- a request with ``min_position`` past what this process knows is not cached (it waits
  for the model, then reads);
- without a live LISTEN connection positions are not followed, and nothing is cached;
- the key holds what the handler reads: a parameter that takes one value given twice, or
  an over-long query string, is answered uncached (so is a request with any of several
  ``min_position`` values past what this process knows);
- entries live ``INBOX_READ_CACHE_SECONDS`` at most (0 turns the cache off), in a store
  bounded to ``INBOX_READ_CACHE_MB`` that drops the least recently used entry first.

Content that changes without a new position (a rebuild's swap announces the position it
reached, which may be one already known) can be served until its entries expire: up to
twice ``INBOX_READ_CACHE_SECONDS``, the answer's own lifetime and the shared page's.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from cachetools import TTLCache
from litestar.config.response_cache import ResponseCacheConfig, default_do_cache_predicate
from litestar.stores.base import Store

from app.queries import FILTER_NAMES

if TYPE_CHECKING:
    from litestar.connection import Request
    from litestar.types import CacheKeyBuilder, HTTPScope

    from app.queries import Positions

STORE_NAME = "read_cache"
_KEY = "read_cache_key"  # the key of this request, taken once (scope state)
_SKIP = "read_cache_skip"


# Bytes an entry costs beyond its key and answer (the tuple, the cache's bookkeeping).
_ENTRY_OVERHEAD = 250
# A longer query string is answered uncached: it would make a large key for one client.
_MAX_QUERY = 2048


class ReadCache(Store):
    """An in-process store bounded in bytes (key, answer and overhead of each entry),
    least recently used out first; expired entries leave on the next write."""

    def __init__(self, max_bytes: int, seconds: float) -> None:
        self._entries: TTLCache[str, tuple[float, bytes, int]] = TTLCache(
            maxsize=max_bytes,
            ttl=max(seconds, 1e-9),
            timer=time.monotonic,
            getsizeof=lambda entry: entry[2],
        )

    async def set(
        self, key: str, value: str | bytes, expires_in: int | timedelta | None = None
    ) -> None:
        data = value.encode() if isinstance(value, str) else value
        size = len(key) + len(data) + _ENTRY_OVERHEAD
        if size > self._entries.maxsize:
            return
        seconds = expires_in.total_seconds() if isinstance(expires_in, timedelta) else expires_in
        deadline = time.monotonic() + seconds if seconds else float("inf")
        self._entries[key] = (deadline, data, size)

    async def get(self, key: str, renew_for: int | timedelta | None = None) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            self._entries.pop(key, None)
            return None
        return entry[1]

    async def delete(self, key: str) -> None:
        self._entries.pop(key, None)

    async def delete_all(self) -> None:
        self._entries.clear()

    async def exists(self, key: str) -> bool:
        return await self.get(key) is not None

    async def expires_in(self, key: str) -> int | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] == float("inf"):
            return None
        return max(0, int(entry[0] - time.monotonic()))


def keyed_by(*models: str, single: tuple[str, ...] = ()) -> CacheKeyBuilder:
    """A cache-key builder for a route that reads these read models and takes the inbox
    filters (repeatable) and the parameters named in ``single`` (one value each)."""

    def key(request: Request[Any, Any, Any]) -> str:
        state = request.scope["state"]
        # The response cache asks again when it stores the response: answer the same key,
        # the one taken before the read (positions known then, not after).
        if _KEY in state:
            return str(state[_KEY])
        positions: Positions = request.app.state.container.positions
        params = request.query_params
        known = [positions.known(model) for model in models]
        # What the handler reads, and only that: a filter's values in any order (they are
        # matched with = ANY); other names are ignored by the handler, so by the key too.
        query = sorted(
            (name, value) for name in (*FILTER_NAMES, *single) for value in params.getall(name, [])
        )
        key = f"{request.method}{request.url.path}?{urlencode(query)}@{known}"
        cacheable = (
            positions.live
            and len(request.scope["query_string"]) <= _MAX_QUERY
            # Given twice, the handler reads the last value (or refuses the request).
            and all(len(params.getall(name, [])) <= 1 for name in single)
            and all(_reached(wanted, min(known)) for wanted in params.getall("min_position", []))
        )
        if not cacheable:
            # Neither answered from the cache nor stored: no key stored ends with this.
            state[_SKIP] = True
            key += "#uncached"
        state[_KEY] = key
        return key

    return key


def _reached(wanted: str, known: int) -> bool:
    # Not a position (the handler answers 400 for it): not reached, so not cached.
    return len(wanted) <= 19 and wanted.isascii() and wanted.isdigit() and int(wanted) <= known


def _should_store(scope: HTTPScope, status_code: int) -> bool:
    # Only what a key builder let through: Litestar wraps the route's other methods
    # (POST, OPTIONS) in the response cache too.
    state = scope["state"]
    keyed = _KEY in state and not state.get(_SKIP)
    return keyed and default_do_cache_predicate(scope, status_code)


def config(seconds: int) -> ResponseCacheConfig:
    """The app's response-cache configuration (``seconds`` = 0: cache nothing)."""
    return ResponseCacheConfig(
        default_expiration=seconds or None,
        store=STORE_NAME,
        cache_response_filter=_should_store if seconds else (lambda _scope, _status: False),
    )
