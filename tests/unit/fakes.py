"""In-memory fakes of the detector's ports (app/ports.py) and of the issue service, for
unit tests of the orchestration without PostgreSQL. ``tests/watch_contract.py`` holds
what the fakes and the real adapters must both do.

The watch store mimics the transactions of the real one: a batch holds an asyncio lock
per order (taken in order-id order; timers skip held rows), reads what it wrote itself,
and what it wrote is kept only if its block ends without an exception.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import AsyncIterator, Callable, Collection, MutableMapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

from adapters.watch import event_body
from app.commands import Command, Detect, Report
from app.errors import ApplicationError, ConcurrentWrite, IssueAlreadyExists, IssueNotFound
from app.ports import (
    BrokenOrder,
    DeadLetter,
    Rejected,
    StoredEvent,
    SupportContact,
    SweptWatch,
    WatchRow,
    WatchUpdate,
)
from app.service import CommandResult, Outcome
from domain.errors import DomainError
from domain.issue import OrderIssue
from domain.order import OrderEvent, OrderState


def wall_clock() -> datetime:
    return datetime.now(UTC)


class SetClock:
    """A clock that stands at ``at`` until a test moves it (``clock.at = ...``)."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


@dataclass
class _Row:
    state: OrderState | None = None
    clear_since: dict[str, datetime] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)
    next_check_at: datetime | None = None
    updated_at: datetime = field(default_factory=wall_clock)


class FakeWatchBatch:
    def __init__(self, store: FakeWatchStore, rows: list[WatchRow], created: list[str]) -> None:
        self._store = store
        self.rows = rows
        self._created = created
        self._events: dict[str, dict[str, str]] = {}
        self._contacts: dict[str, SupportContact] = {}
        self._updates: list[WatchUpdate] = []
        self._broken: list[BrokenOrder] = []

    async def insert_events(self, events: Sequence[OrderEvent]) -> set[tuple[str, str]]:
        fresh = set()
        for event in events:
            known = self._store.events.get(event.order_id, {})
            staged = self._events.setdefault(event.order_id, {})
            if event.event_id not in known and event.event_id not in staged:
                staged[event.event_id] = event_body(event)
                fresh.add((event.order_id, event.event_id))
        return fresh

    async def events_of(self, order_ids: Collection[str]) -> list[StoredEvent]:
        return [
            StoredEvent(order_id, body)
            for order_id in order_ids
            for source in (self._store.events.get(order_id, {}), self._events.get(order_id, {}))
            for body in source.values()
        ]

    async def issue_versions(self, issue_ids: Sequence[UUID]) -> dict[UUID, int]:
        return self._store.issue_versions(issue_ids)

    async def record_contacts(self, contacts: Sequence[SupportContact]) -> None:
        for contact in contacts:
            if contact.event_id not in self._store.contacts:
                self._contacts.setdefault(contact.event_id, contact)

    async def store(self, updates: Sequence[WatchUpdate], broken: Sequence[BrokenOrder]) -> None:
        self._updates += updates
        self._broken += broken

    def _commit(self) -> None:
        store = self._store
        for order_id in self._created:
            store.rows[order_id] = _Row(updated_at=store.now())
        for order_id, events in self._events.items():
            store.events.setdefault(order_id, {}).update(events)
        store.contacts.update(self._contacts)
        for update in self._updates:
            if (row := store.rows.get(update.order_id)) is not None:
                row.state = update.state
                row.clear_since = dict(update.clear_since)
                row.pending = list(update.pending)
                row.next_check_at = update.next_check_at
                row.updated_at = store.now()
        for broken in self._broken:
            if (row := store.rows.get(broken.order_id)) is not None:
                row.state = None
                row.next_check_at = broken.next_check_at


class FakeWatchStore:
    def __init__(
        self,
        issue_versions: Callable[[Sequence[UUID]], dict[UUID, int]] | None = None,
        now: Callable[[], datetime] = wall_clock,
    ) -> None:
        self.issue_versions = issue_versions or (lambda _ids: {})
        self.now = now  # the database's clock: updated_at, and what the sweep compares with
        self.rows: dict[str, _Row] = {}
        self.events: dict[str, dict[str, str]] = {}  # order id -> event id -> body
        self.contacts: dict[str, SupportContact] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.batches = 0  # transactions begun

    def _lock(self, order_id: str) -> asyncio.Lock:
        return self._locks.setdefault(order_id, asyncio.Lock())

    @asynccontextmanager
    async def _holding(self, order_ids: list[str]) -> AsyncIterator[FakeWatchBatch]:
        self.batches += 1
        held: list[asyncio.Lock] = []
        try:
            for order_id in order_ids:
                lock = self._lock(order_id)
                await lock.acquire()
                held.append(lock)
            created = [order_id for order_id in order_ids if order_id not in self.rows]
            rows = [
                WatchRow(order_id, None, {}, [], created=True)
                if (row := self.rows.get(order_id)) is None
                else WatchRow(order_id, row.state, dict(row.clear_since), list(row.pending))
                for order_id in order_ids
            ]
            batch = FakeWatchBatch(self, rows, created)
            yield batch
            batch._commit()
        finally:
            for lock in held:
                lock.release()

    @asynccontextmanager
    async def lock(self, order_ids: Sequence[str]) -> AsyncIterator[FakeWatchBatch]:
        async with self._holding(sorted(set(order_ids))) as batch:
            yield batch

    @asynccontextmanager
    async def claim_due(self, now: datetime, limit: int) -> AsyncIterator[FakeWatchBatch]:
        due = sorted(
            (row.next_check_at, order_id)
            for order_id, row in self.rows.items()
            if row.next_check_at is not None
            and row.next_check_at <= now
            and not self._lock(order_id).locked()
        )
        claimed = [order_id for _, order_id in due[:limit]]
        async with self._holding(claimed) as batch:
            yield batch

    async def sweep(self, *, orders: timedelta, contacts: timedelta, batch: int) -> SweptWatch:
        now = self.now()
        gone = [
            order_id
            for order_id, row in self.rows.items()
            if row.updated_at < now - orders and not self._lock(order_id).locked()
        ]
        events = 0
        for order_id in gone:
            del self.rows[order_id]
            events += len(self.events.pop(order_id, {}))
        old = [k for k, c in self.contacts.items() if c.contacted_at < now - contacts]
        for key in old:
            del self.contacts[key]
        return SweptWatch(len(gone), events, len(old))

    def age(self, by: timedelta) -> None:
        """Every row as if it had been written ``by`` earlier."""
        for row in self.rows.values():
            row.updated_at -= by


class FakeDeadLetters:
    def __init__(self, now: Callable[[], datetime] = wall_clock) -> None:
        self.now = now
        self.letters: dict[int, DeadLetter] = {}
        self._ids = itertools.count(1)

    async def park(self, letters: Sequence[Rejected]) -> None:
        for r in letters:
            letter_id = next(self._ids)
            self.letters[letter_id] = DeadLetter(
                letter_id, r.source, r.event_id, r.reason, self.now(), r.payload
            )

    async def list(self, limit: int) -> list[DeadLetter]:
        return [self.letters[i] for i in sorted(self.letters)[:limit]]

    async def delete(self, letter_id: int) -> None:
        self.letters.pop(letter_id, None)

    async def sweep(self, *, older_than: timedelta, batch: int) -> int:
        cutoff = self.now() - older_than
        old = [i for i, letter in self.letters.items() if letter.received_at < cutoff]
        for letter_id in old:
            del self.letters[letter_id]
        return len(old)

    def age(self, by: timedelta) -> None:
        for letter_id, letter in self.letters.items():
            self.letters[letter_id] = DeadLetter(
                letter.id,
                letter.source,
                letter.event_id,
                letter.reason,
                letter.received_at - by,
                letter.payload,
            )


class FakeIssues:
    """The issue service in memory: each batch's commands acted on copies of the issues
    as stored, in order, and stored together (one "save" per batch, recorded in
    ``saves``). ``refuse_next()`` makes the next batch lose a race: every command answered
    ConcurrentWrite, nothing stored."""

    def __init__(self, now: Callable[[], datetime] = wall_clock) -> None:
        self.now = now
        self.issues: dict[UUID, OrderIssue] = {}
        self.saves: list[list[Command]] = []
        self._refuse = 0
        self._positions = itertools.count(1)

    def refuse_next(self, batches: int = 1) -> None:
        self._refuse += batches

    def versions(self, issue_ids: Sequence[UUID]) -> dict[UUID, int]:
        return {i: self.issues[i].version for i in issue_ids if i in self.issues}

    def current(self, issue_ids: set[UUID]) -> dict[UUID, OrderIssue]:
        return {i: copy.deepcopy(self.issues[i]) for i in issue_ids if i in self.issues}

    def execute_batch(
        self,
        commands: Sequence[Command],
        preloaded: MutableMapping[UUID, OrderIssue | None] | None = None,
    ) -> list[Outcome]:
        given = preloaded if preloaded is not None else {}
        if self._refuse:
            self._refuse -= 1
            for command in commands:
                given.pop(command.issue_id, None)
            return [ConcurrentWrite(command.issue_id) for command in commands]
        now = self.now()
        touched: dict[UUID, OrderIssue] = {}
        outcomes: list[Outcome] = []
        for command in commands:
            issue = touched.get(command.issue_id)
            if issue is None and command.issue_id in self.issues:
                issue = copy.deepcopy(self.issues[command.issue_id])
            try:
                if isinstance(command, Report | Detect):
                    if issue is not None:
                        raise IssueAlreadyExists(command.issue_id)
                    issue = command.create(now)
                else:
                    if issue is None:
                        raise IssueNotFound(command.issue_id)
                    command.apply(issue, now)
            except (DomainError, ApplicationError) as exc:
                given.pop(command.issue_id, None)
                outcomes.append(exc)
                continue
            touched[command.issue_id] = issue
            outcomes.append(CommandResult(issue.id, issue.version, next(self._positions)))
        for issue_id, issue in touched.items():
            issue.collect_events()
            self.issues[issue_id] = issue
            given[issue_id] = copy.deepcopy(issue)
        self.saves.append(list(commands))
        return outcomes
