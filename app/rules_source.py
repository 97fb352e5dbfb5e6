"""The rules a process judges with: one immutable :class:`domain.ruleset.RuleSet` at a
time, swapped whole (a batch of events takes ``current`` once, so no event is judged by a
half-loaded file); and how every process comes to judge with the same one.

PostgreSQL holds the active version (``adapters/rules_store.py``). :meth:`RulesSource.
activate_file` reads and validates a rules file as a whole; a valid one is stored and
made active in one transaction (which notifies the others) and swapped in here; an
invalid one raises :class:`RulesError`, changes nothing, and is kept as
:attr:`RulesSource.last_error` for ``/ready`` and ``GET /api/rules/status``. Every
process follows the active version (:meth:`RulesSource.follow`: LISTEN, with a poll as a
fallback) and swaps in the version another process activated, parsed from the text the
database holds; a version this process cannot parse (older code) is kept out and reported
the same way.

At start a process activates the file it was deployed with when that differs from the
active one (the deployed file wins at start); a reload (SIGHUP, ``POST
/api/rules/reload``) makes a changed file live everywhere.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import asyncpg
from prometheus_client import Counter, Gauge

from adapters.follow import LogFollower
from adapters.rules_store import RULES_CHANNEL, Activation, ActiveRules
from app import rules_config
from app.rules_config import RulesError
from domain.ruleset import RuleSet

log = logging.getLogger(__name__)

RELOADS = Counter(
    "inbox_rules_reloads_total",
    "Rules reloads by outcome: activated (a file made active), unchanged (the file is the"
    " active version), invalid (a file refused), followed (a version another process"
    " activated, swapped in), refused (one this process cannot parse, kept out)",
    ["outcome"],
)
INFO = Gauge("inbox_rules_info", "The rules version this process judges with (1)", ["version"])
LAST_FAILED = Gauge(
    "inbox_rules_last_reload_failed", "1 when the last reload was refused (the rules stay)"
)


class RulesStore(Protocol):
    """Where the active version is kept (``adapters.rules_store.PostgresRulesStore``)."""

    async def active(self) -> ActiveRules | None: ...

    async def activate(self, version: str, text: str, source: str, by: str) -> Activation: ...

    async def open_issues(self, kinds: Collection[str]) -> dict[str, int]: ...


@dataclass(frozen=True)
class RulesFailure:
    """Why the last reload was refused: the RulesError's message (file, table, key)."""

    message: str
    at: datetime


@dataclass(frozen=True)
class Reloaded:
    version: str  # the version active now
    previous: str | None  # the version active before (None: none was)
    changed: bool


def _now() -> datetime:
    return datetime.now(UTC)


class RulesSource:
    def __init__(
        self,
        rules: RuleSet,
        *,
        store: RulesStore | None = None,
        path: Path | None = None,
        text: str | None = None,
        source: str | None = None,
    ) -> None:
        """``rules`` parsed from ``text`` (read from ``source``); ``path`` is the file a
        reload reads (None: the shipped one); ``store`` None: no reloads (tests, tools)."""
        self._current = rules
        self._store = store
        self._path = path
        self._text = text
        self._source = source or "rules"
        self._generation = 0  # the newest activation acted on
        self._lock = asyncio.Lock()
        self._reloading: set[asyncio.Task[None]] = set()
        self.last_error: RulesFailure | None = None

    @classmethod
    def from_file(cls, path: Path | None, store: RulesStore | None = None) -> RulesSource:
        """The rules of the file at ``path`` (the shipped one when None); RulesError when
        it is unreadable or invalid (a start stops on it)."""
        text, source = rules_config.read(path)
        return cls(
            rules_config.parse(text, source), store=store, path=path, text=text, source=source
        )

    @property
    def current(self) -> RuleSet:
        return self._current

    @property
    def source(self) -> str:
        """The file the running rules were read from (as its activator named it)."""
        return self._source

    @property
    def path(self) -> Path | None:
        """The file a reload reads (None: the shipped one)."""
        return self._path

    def swap(self, rules: RuleSet) -> None:
        self._current = rules
        _show(rules.version)

    async def active(self) -> ActiveRules | None:
        """The version active in the database (None: none yet, or no store)."""
        return None if self._store is None else await self._store.active()

    async def start(self, by: str) -> Reloaded:
        """Make the file this process was started with the active version when it is not
        (the deployed file wins at start)."""
        if self._store is None or self._text is None:
            raise RuntimeError("RulesSource.start needs a store and the file's text")
        async with self._lock:
            activation = await self._store.activate(
                self._current.version, self._text, self._source, by
            )
            self._generation = max(self._generation, activation.active.generation)
        _show(self._current.version)
        if activation.changed:
            log.info(
                "rules: activated %s from %s (was %s)",
                self._current.version,
                self._source,
                activation.previous,
            )
        else:
            log.info("rules: %s from %s is the active version", self._current.version, self._source)
        return Reloaded(self._current.version, activation.previous, activation.changed)

    async def activate_file(self, by: str, path: Path | None = None) -> Reloaded:
        """Read and validate the rules file (``path``, else this source's own); valid: make
        it the active version everywhere and judge with it here; invalid: RulesError, and
        nothing changes. ``by`` names who asked (the log, ``activated_by``)."""
        if self._store is None:
            raise RuntimeError("RulesSource.activate_file needs a store")
        chosen = path if path is not None else self._path
        try:
            text, source = rules_config.read(chosen)
            rules = rules_config.parse(text, source)
            await self._check_dropped(rules, source)
        except RulesError as exc:
            self._refuse("invalid", str(exc))
            raise
        async with self._lock:
            activation = await self._store.activate(rules.version, text, source, by)
            self._generation = max(self._generation, activation.active.generation)
            self._text, self._source = text, source
            self.swap(rules)
            self._cleared()
        RELOADS.labels("activated" if activation.changed else "unchanged").inc()
        log.info(
            "rules: reload by %s: %s from %s (%s %s)",
            by,
            rules.version,
            source,
            "was" if activation.changed else "unchanged, already",
            activation.previous,
        )
        return Reloaded(rules.version, activation.previous, activation.changed)

    async def _check_dropped(self, rules: RuleSet, source: str) -> None:
        """A declared kind the new file drops while issues of it are open would leave them
        open for good (the detector looks only at the kinds its rules know): refused, with
        the way to retire a kind."""
        assert self._store is not None
        dropped = self._current.kinds - rules.kinds
        still_open = await self._store.open_issues(sorted(dropped)) if dropped else {}
        if still_open:
            named = ", ".join(f"{kind} ({n} open)" for kind, n in sorted(still_open.items()))
            raise RulesError(
                f"{source}: waiting: the file drops {named} while issues of it are open: "
                "take the kind out of the verticals' rules first and reload (its open issues "
                "resolve as cleared), then remove its [waiting] table"
            )

    def reload_soon(self, by: str) -> None:
        """:meth:`activate_file` in the background (a signal handler's way): its outcome is
        logged, a refused file kept as :attr:`last_error`."""
        task = asyncio.get_running_loop().create_task(self._reload_logged(by))
        self._reloading.add(task)
        task.add_done_callback(self._reloading.discard)

    async def _reload_logged(self, by: str) -> None:
        try:
            await self.activate_file(by)
        except RulesError:
            pass  # logged and kept by activate_file
        except Exception:
            log.exception("rules: reload by %s failed; the running rules stay", by)

    async def refresh(self) -> bool:
        """Swap in the active version when it is newer than what this process acted on;
        True when it swapped."""
        if self._store is None:
            return False
        async with self._lock:
            active = await self._store.active()
            if active is None or active.generation <= self._generation:
                return False
            self._generation = active.generation
            if active.version == self._current.version:
                return False
            try:
                rules = rules_config.parse(active.text, f"{active.source} ({active.version})")
            except RulesError as exc:
                self._refuse("refused", f"the active version cannot be used here: {exc}")
                return False
            self._text, self._source = active.text, active.source
            self.swap(rules)
            self._cleared()
        RELOADS.labels("followed").inc()
        log.info(
            "rules: following %s (activated by %s at %s)",
            active.version,
            active.activated_by,
            active.activated_at.isoformat(),
        )
        return True

    async def follow(
        self, database_url: str, stop: asyncio.Event, *, poll_interval: float = 5.0
    ) -> None:
        """Until ``stop``: swap in each version another process activates (woken by its
        NOTIFY, polling as a fallback, reconnecting after losing the database)."""
        following = LogFollower(
            database_url, poll_interval=poll_interval, command_timeout=30.0, channel=RULES_CHANNEL
        )
        await following.run(_Follower(self), stop, retrying=_Follower(self), elect=False)

    def _refuse(self, outcome: str, message: str) -> None:
        self.last_error = RulesFailure(message, _now())
        LAST_FAILED.set(1)
        RELOADS.labels(outcome).inc()
        log.error("rules: %s; still judging with %s", message, self._current.version)

    def _cleared(self) -> None:
        self.last_error = None
        LAST_FAILED.set(0)


def _show(version: str) -> None:
    # One version per process: the one its started source judges with (a source made
    # only to read a file, a tool's or a test's, shows nothing until it swaps).
    INFO.clear()
    INFO.labels(version).set(1)


class _Follower:
    """The rules follower as a worker of the shared follow loop (adapters/follow.py)."""

    role = "inbox-rules-follower"

    def __init__(self, source: RulesSource) -> None:
        self._source = source

    async def start(self, conn: asyncpg.Connection) -> None:
        """Nothing to prepare: the active version is read afresh at each step."""

    async def step(self, conn: asyncpg.Connection) -> bool:
        await self._source.refresh()
        return False  # then wait for a NOTIFY or the poll

    async def failed(
        self, conn: asyncpg.Connection, exc: Exception, attempt: int, delay: float
    ) -> None:
        log.exception(
            "rules: reading the active version failed (%d); again in %.1fs", attempt, delay
        )

    def recovered(self, attempts: int) -> None:
        log.info("rules: reading the active version works again after %d failures", attempts)
