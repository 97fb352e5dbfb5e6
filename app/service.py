"""The issue application: commands on ``OrderIssue`` (get → act → save), grouped into batches.

One transaction costs about 2 ms here whatever it holds, so throughput comes from many
commands per ``save()`` (DESIGN.md, "Known traps"). :class:`IssueService` executes a batch of
commands in one save; :class:`CommandBus` collects concurrent commands from the event loop
into such batches, one writer thread per hash partition of the issue ids, so commands on
one issue keep their order and never race each other inside one process.

Exception tree (mapped to HTTP in ``app/http/errors.py``)::

    ApplicationError
    ├── IssueNotFound        no issue with that id
    ├── IssueAlreadyExists   detect on an (order, kind) that already has an issue
    ├── VersionMismatch      If-Match named another version than the current one
    ├── ConcurrentWrite      another writer saved the issue between our read and our write
    └── Unavailable          shutting down, or the database did not answer in time
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import anyio.to_thread
from eventsourcing.application import Application
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry
from psycopg.sql import SQL, Identifier

from adapters.clock import Clock
from domain.errors import DomainError
from domain.issue import OrderIssue

log = logging.getLogger(__name__)


class ApplicationError(Exception):
    """Base of the application layer's errors."""


class IssueNotFound(ApplicationError):
    def __init__(self, issue_id: UUID) -> None:
        self.issue_id = issue_id
        super().__init__(f"issue {issue_id} not found")


class IssueAlreadyExists(ApplicationError):
    def __init__(self, issue_id: UUID) -> None:
        self.issue_id = issue_id
        super().__init__(f"issue {issue_id} already exists for this order and kind")


class VersionMismatch(ApplicationError):
    def __init__(self, issue_id: UUID, expected: int, actual: int) -> None:
        self.issue_id = issue_id
        self.expected = expected
        self.actual = actual
        super().__init__(f"issue {issue_id} is at version {actual}, not {expected}")


class ConcurrentWrite(ApplicationError):
    def __init__(self, issue_id: UUID) -> None:
        self.issue_id = issue_id
        super().__init__(f"issue {issue_id} was changed by another writer; read it and retry")


class Unavailable(ApplicationError):
    """The command was not carried out; trying again later may work."""


class IssueApplication(Application[UUID]):
    """The ``eventsourcing`` application; its events live in table ``inbox_events``."""

    name = "inbox"


@dataclass(frozen=True)
class Command:
    """One command on one issue.

    ``act`` mutates the aggregate (it raises a domain error when refused); ``create``
    builds a new aggregate instead, for the commands that raise an issue.
    """

    issue_id: UUID
    name: str
    act: Callable[[OrderIssue, datetime], None] | None = None
    create: Callable[[datetime], OrderIssue] | None = None
    expected_version: int | None = None


@dataclass(frozen=True)
class CommandResult:
    issue_id: UUID
    version: int
    position: int


Outcome = CommandResult | Exception


@dataclass
class _Applied:
    """A command that produced an event in a batch, waiting for the batch's save."""

    index: int
    command: Command
    base_version: int | None  # the version it acted on (None: it created the issue)
    version: int  # the version its event got


@dataclass
class IssueService:
    """Executes commands in batches: each command is checked and applied in memory, then
    the whole batch is stored with one ``save()`` (one transaction)."""

    app: IssueApplication
    clock: Clock

    def execute(self, command: Command) -> CommandResult:
        outcome = self.execute_batch([command])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def execute_batch(self, commands: Sequence[Command]) -> list[Outcome]:
        now = self.clock.now()
        outcomes: list[Outcome | None] = [None] * len(commands)
        # Every issue the batch names, read in one round trip rather than one per issue.
        known = self._load({command.issue_id for command in commands})
        touched: dict[UUID, OrderIssue] = {}
        applied: list[_Applied] = []
        for index, command in enumerate(commands):
            try:
                base, aggregate = self._act(command, known, now)
            except (DomainError, ApplicationError) as exc:
                outcomes[index] = exc
                continue
            known[command.issue_id] = touched[command.issue_id] = aggregate
            applied.append(_Applied(index, command, base, aggregate.version))
        if applied:
            try:
                positions = self._save(list(touched.values()))
            except IntegrityError:
                # Another process wrote one of these issues since we read it. Find which:
                # each command again, alone, on a fresh read of its issue.
                self._retry_alone(applied, outcomes, now)
            else:
                for item in applied:
                    position = positions[(item.command.issue_id, item.version)]
                    outcomes[item.index] = CommandResult(
                        item.command.issue_id, item.version, position
                    )
        assert all(outcome is not None for outcome in outcomes)
        return outcomes  # type: ignore[return-value]

    def _act(
        self,
        command: Command,
        known: dict[UUID, OrderIssue],
        now: datetime,
        *,
        retry_of: _Applied | None = None,
    ) -> tuple[int | None, OrderIssue]:
        """Apply one command in memory; returns the version it acted on and the aggregate.

        ``known`` holds the issues as read (and as changed so far in this batch).
        ``retry_of`` is the same command's first attempt in a batch whose save conflicted:
        if its issue moved on since that attempt read it, another writer won the race.
        """
        aggregate = known.get(command.issue_id)
        if command.create is not None:
            if aggregate is not None:
                if retry_of is not None:
                    raise ConcurrentWrite(command.issue_id)
                raise IssueAlreadyExists(command.issue_id)
            return None, command.create(now)
        if aggregate is None:
            raise IssueNotFound(command.issue_id)
        base = aggregate.version
        if retry_of is not None and retry_of.base_version != base:
            raise ConcurrentWrite(command.issue_id)
        if command.expected_version is not None and command.expected_version != base:
            raise VersionMismatch(command.issue_id, command.expected_version, base)
        assert command.act is not None
        command.act(aggregate, now)
        return base, aggregate

    def _retry_alone(
        self, applied: list[_Applied], outcomes: list[Outcome | None], now: datetime
    ) -> None:
        for item in applied:
            issue_id = item.command.issue_id
            try:
                _, aggregate = self._act(item.command, self._load({issue_id}), now, retry_of=item)
                positions = self._save([aggregate])
            except IntegrityError:
                outcomes[item.index] = ConcurrentWrite(issue_id)
            except (DomainError, ApplicationError) as exc:
                outcomes[item.index] = exc
            else:
                position = positions[(issue_id, aggregate.version)]
                outcomes[item.index] = CommandResult(issue_id, aggregate.version, position)

    def _save(self, aggregates: list[OrderIssue]) -> dict[tuple[UUID, int], int]:
        recordings = self.app.save(*aggregates)
        return {
            (r.domain_event.originator_id, r.domain_event.originator_version): r.notification.id
            for r in recordings
        }

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def _load(self, issue_ids: set[UUID]) -> dict[UUID, OrderIssue]:
        """The current state of each existing issue among ``issue_ids``, in one query.

        The library's repository reads one aggregate per round trip; a batch needs many,
        so this selects their stored events together and replays them with the
        application's own mapper, exactly as the repository would.
        """
        recorder = self.app.recorder
        assert isinstance(recorder, PostgresApplicationRecorder)
        query = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {}.{}"
            " WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
        ).format(Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))
        with recorder.datastore.get_connection() as conn, conn.cursor() as cursor:
            cursor.execute(query, (list(issue_ids),), prepare=True)
            rows = cursor.fetchall()
        aggregates: dict[UUID, OrderIssue] = {}
        for row in rows:
            event = self.app.mapper.to_domain_event(
                StoredEvent(
                    originator_id=row["originator_id"],
                    originator_version=row["originator_version"],
                    topic=row["topic"],
                    state=bytes(row["state"]),
                )
            )
            aggregates[row["originator_id"]] = event.mutate(  # type: ignore[attr-defined]
                aggregates.get(row["originator_id"])
            )
        return aggregates


class CommandBus:
    """Collects commands from the event loop into batches for :class:`IssueService`.

    Each writer owns one hash partition of the issue ids and one thread at a time: it takes
    what has queued up (at most ``batch_size``) while its previous batch was being saved,
    so under load batches grow by themselves and under light load a command waits for no
    one.
    """

    def __init__(
        self,
        service: IssueService,
        *,
        batch_size: int,
        writers: int,
        timeout: float,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self._service = service
        self._batch_size = batch_size
        self._timeout = timeout
        self._on_batch = on_batch
        self._queues: list[asyncio.Queue[tuple[Command, asyncio.Future[CommandResult]]]] = [
            asyncio.Queue() for _ in range(writers)
        ]
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(queue), name=f"command-writer-{n}")
            for n, queue in enumerate(self._queues)
        ]

    async def submit(self, command: Command) -> CommandResult:
        if self._closing:
            raise Unavailable("shutting down")
        future: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()
        queue = self._queues[command.issue_id.int % len(self._queues)]
        queue.put_nowait((command, future))
        try:
            return await asyncio.wait_for(asyncio.shield(future), self._timeout)
        except TimeoutError:
            # The batch may still commit; the caller learns the outcome by reading the issue.
            future.add_done_callback(_consume_outcome)
            raise Unavailable(
                f"no answer from the event store within {self._timeout:g}s; "
                "the command may still have been applied"
            ) from None

    async def stop(self) -> None:
        """Refuse new commands, finish the batches already taken, fail the rest."""
        self._closing = True
        for queue in self._queues:
            queue.put_nowait(_STOP)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for queue in self._queues:
            while not queue.empty():
                item = queue.get_nowait()
                if item is not _STOP and not item[1].done():
                    item[1].set_exception(Unavailable("shutting down"))

    async def _run(
        self, queue: asyncio.Queue[tuple[Command, asyncio.Future[CommandResult]]]
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await queue.get()
            if first is _STOP:
                return
            batch = [first]
            stop_after = False
            while len(batch) < self._batch_size and not queue.empty():
                item = queue.get_nowait()
                if item is _STOP:
                    stop_after = True
                    break
                batch.append(item)
            started = loop.time()
            try:
                outcomes = await anyio.to_thread.run_sync(
                    self._service.execute_batch, [command for command, _ in batch]
                )
            except Exception as exc:
                log.exception("command batch of %d failed", len(batch))
                outcomes = [Unavailable(f"the event store failed: {exc}")] * len(batch)
            if self._on_batch is not None:
                self._on_batch(len(batch), loop.time() - started)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, Exception):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
            if stop_after:
                return


_STOP: Any = object()


def _consume_outcome(future: asyncio.Future[CommandResult]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.info("a timed-out command finished late: %s", future.exception())


@contextlib.contextmanager
def issue_application(env: dict[str, str]) -> Any:
    """An :class:`IssueApplication` whose connection pool is closed on exit."""
    app = IssueApplication(env=env)
    try:
        yield app
    finally:
        app.close()
