"""The one read cache: inbox pages and counts cached per read-model position, on
Litestar's response cache, and each miss answered once for every request that shares it.

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
- the key holds the caller's scope (CONTRACT §6): callers of one scope share entries,
  callers of another never see them;
- the key holds what the handler reads: a parameter that takes one value given twice, or
  an over-long query string, is answered uncached (so is a request with any of several
  ``min_position`` values past what this process knows);
- entries live ``INBOX_READ_CACHE_SECONDS`` at most (0 turns the cache off), in a store
  bounded to ``INBOX_READ_CACHE_MB`` that drops the least recently used entry first;
- a request that misses a key another request is answering waits for that answer (at
  most ``_SHARE_SECONDS``) instead of reading too: when a projection commits, the clients
  asking for the same view at the new position make one query and one encoding, not one
  each (50 clients on a pool of 20 connections). If the first request stores nothing (an
  error, or it went away), each waiting one reads for itself.

Content that changes without a new position (a rebuild's swap announces the position it
reached, which may be one already known) can be served until its entries expire, up to
``INBOX_READ_CACHE_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from time import monotonic
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from cachetools import TTLCache
from litestar.config.response_cache import ResponseCacheConfig, default_do_cache_predicate
from litestar.stores.base import Store

from app.http.auth import caller
from app.queries import FILTER_NAMES
from app.scope import Scope

if TYPE_CHECKING:
    from litestar.connection import Request
    from litestar.types import CacheKeyBuilder, HTTPScope

    from app.queries import Positions

STORE_NAME = "read_cache"
_KEY = "read_cache_key"  # the key of this request, taken once (scope state)
_SKIP = "read_cache_skip"
_UNCACHED = "#uncached"  # the end of a key whose request is neither answered nor stored
# The longest a request waits for another one's answer to the same key: far more than a
# read takes, so only a request that hangs (or went away unnoticed) makes the others read
# for themselves.
_SHARE_SECONDS = 5.0


# Bytes an entry costs beyond its key and answer (the tuple, the cache's bookkeeping).
_ENTRY_OVERHEAD = 250
# A longer query string is answered uncached: it would make a large key for one client.
_MAX_QUERY = 2048


class ReadCache(Store):
    """An in-process store bounded in bytes (key, answer and overhead of each entry),
    least recently used out first; expired entries leave on the next write. A miss makes
    the request that missed the key's answerer: until it stores an answer or ends, the
    other requests for the key wait for it (``seconds`` = 0: none does, nothing is kept)."""

    def __init__(self, max_bytes: int, seconds: float) -> None:
        self._entries: TTLCache[str, tuple[float, bytes, int]] = TTLCache(
            maxsize=max_bytes,
            ttl=max(seconds, 1e-9),
            timer=monotonic,
            getsizeof=lambda entry: entry[2],
        )
        self._sharing = seconds > 0
        # Keys being answered, by the request (task) answering each; the event is set when
        # the answer is stored or that request ended.
        self._answering: dict[str, tuple[asyncio.Task[Any], asyncio.Event]] = {}

    async def set(
        self, key: str, value: str | bytes, expires_in: int | timedelta | None = None
    ) -> None:
        data = value.encode() if isinstance(value, str) else value
        size = len(key) + len(data) + _ENTRY_OVERHEAD
        seconds = expires_in.total_seconds() if isinstance(expires_in, timedelta) else expires_in
        if size <= self._entries.maxsize:
            deadline = monotonic() + seconds if seconds else float("inf")
            self._entries[key] = (deadline, data, size)
        self._answered(key)

    async def get(self, key: str, renew_for: int | timedelta | None = None) -> bytes | None:
        found = self._fresh(key)
        if found is not None or not self._sharing or key.endswith(_UNCACHED):
            return found
        task = asyncio.current_task()
        answering = self._answering.get(key)
        if answering is None:
            if task is not None:  # (outside a task nobody could wait for it)
                self._answer(key, task)
            return None
        answerer, answered = answering
        if answerer is not task:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_SHARE_SECONDS):
                    await answered.wait()
        return self._fresh(key)

    def _fresh(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= monotonic():
            self._entries.pop(key, None)
            return None
        return entry[1]

    def _answer(self, key: str, task: asyncio.Task[Any]) -> None:
        """Make the request of ``task`` the one answering ``key``."""
        answered = asyncio.Event()
        self._answering[key] = (task, answered)
        # Its answer may not be stored (an error, a client gone): the others then read.
        task.add_done_callback(lambda _: self._answered(key, answered))

    def _answered(self, key: str, answered: asyncio.Event | None = None) -> None:
        """``key`` is answered (or its answerer ended: ``answered``, its event)."""
        answering = self._answering.get(key)
        if answering is not None and answered in (None, answering[1]):
            del self._answering[key]
            answering[1].set()
        if answered is not None:
            answered.set()

    async def delete(self, key: str) -> None:
        self._entries.pop(key, None)

    async def delete_all(self) -> None:
        self._entries.clear()

    async def exists(self, key: str) -> bool:
        return self._fresh(key) is not None

    async def expires_in(self, key: str) -> int | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] == float("inf"):
            return None
        return max(0, int(entry[0] - monotonic()))


def keyed_by(*models: str, single: tuple[str, ...] = ()) -> CacheKeyBuilder:
    """A cache-key builder for a route that reads these read models and takes the inbox
    filters (repeatable) and the parameters named in ``single`` (one value each)."""

    def key(request: Request[Any, Any, Any]) -> str:
        state = request.scope["state"]
        # The response cache asks again when it stores the response: answer the same key,
        # the one taken before the read (positions known then, not after).
        if _KEY in state:
            return str(state[_KEY])
        positions: Positions = request.app.state.positions
        params = request.query_params
        known = [positions.known(model) for model in models]
        # What the handler reads, and only that: a filter's values in any order (they are
        # matched with = ANY); other names are ignored by the handler, so by the key too.
        query = sorted(
            (name, value) for name in (*FILTER_NAMES, *single) for value in params.getall(name, [])
        )
        scope = Scope.of(caller(request)).key()
        key = f"{request.method}{request.url.path}?{urlencode(query)}@{known}~{scope}"
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
            key += _UNCACHED
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
