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
- entries live ``INBOX_READ_CACHE_SECONDS`` at most (0 turns the cache off), in a store
  bounded to ``INBOX_READ_CACHE_MB`` that drops the least recently used entry first.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from cachetools import LRUCache
from litestar.config.response_cache import ResponseCacheConfig, default_do_cache_predicate
from litestar.stores.base import Store

if TYPE_CHECKING:
    from litestar.connection import Request
    from litestar.types import CacheKeyBuilder, HTTPScope

    from app.queries import Positions

STORE_NAME = "read_cache"
_KEY = "read_cache_key"  # the key of this request, taken once (scope state)
_SKIP = "read_cache_skip"


class ReadCache(Store):
    """An in-process store bounded in bytes, least recently used out first."""

    def __init__(self, max_bytes: int) -> None:
        self._entries: LRUCache[str, tuple[float, bytes]] = LRUCache(
            maxsize=max_bytes, getsizeof=lambda entry: len(entry[1])
        )

    async def set(
        self, key: str, value: str | bytes, expires_in: int | timedelta | None = None
    ) -> None:
        data = value.encode() if isinstance(value, str) else value
        if len(data) > self._entries.maxsize:
            return
        seconds = expires_in.total_seconds() if isinstance(expires_in, timedelta) else expires_in
        deadline = time.monotonic() + seconds if seconds else float("inf")
        self._entries[key] = (deadline, data)

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


def keyed_by(*models: str) -> CacheKeyBuilder:
    """A cache-key builder for a route that reads these read models."""

    def key(request: Request[Any, Any, Any]) -> str:
        state = request.scope["state"]
        # The response cache asks again when it stores the response: answer the same key,
        # the one taken before the read (positions known then, not after).
        if _KEY in state:
            return str(state[_KEY])
        positions: Positions = request.app.state.container.positions
        query = sorted(
            (name, value)
            for name, values in request.query_params.dict().items()
            if name != "min_position"
            for value in values
        )
        known = [positions.known(model) for model in models]
        wanted = request.query_params.get("min_position")
        key = f"{request.method}{request.url.path}?{urlencode(query)}@{known}"
        if not positions.live or (wanted is not None and not _reached(wanted, min(known))):
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
    skip = bool(scope["state"].get(_SKIP))
    return not skip and default_do_cache_predicate(scope, status_code)


def config(seconds: int) -> ResponseCacheConfig:
    """The app's response-cache configuration (``seconds`` = 0: cache nothing)."""
    return ResponseCacheConfig(
        default_expiration=seconds or None,
        store=STORE_NAME,
        cache_response_filter=_should_store if seconds else (lambda _scope, _status: False),
    )
