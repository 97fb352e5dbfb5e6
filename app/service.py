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
    ├── KeyReused            an idempotency key already used for a different request
    ├── AnsweredBefore       an idempotency key whose first request was refused: that answer
    └── Unavailable          the database did not answer in time: outcome unknown
        └── NotApplied       never carried out (queue full, timed out waiting, shutdown)

Idempotency: a command may carry a :class:`Request` (the client's ``Idempotency-Key`` and a
fingerprint of what it asked). Its key is stored by the event store in the transaction
that stores its event (``adapters.eventstore.RequestRecorder``), and looked up before a
command is applied, so a repeat within the window (on any replica, after any restart,
after a 503 or a lost answer) gets the first outcome and is applied once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import anyio.to_thread
from eventsourcing.application import Application
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry
from psycopg.sql import SQL, Identifier
from psycopg.types.json import Jsonb

from adapters.clock import Clock
from adapters.eventstore import StoredRequest, decode
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


class KeyReused(ApplicationError):
    def __init__(self) -> None:
        super().__init__(
            "this Idempotency-Key was already used for a different request; use a new key"
        )


class AnsweredBefore(ApplicationError):
    """The first request with this idempotency key was refused: the same answer again."""

    def __init__(self, status_code: int, body: dict[str, Any]) -> None:
        self.status_code = status_code
        self.body = body
        super().__init__(str(body.get("detail", "refused")))


class Unavailable(ApplicationError):
    """No answer in time: the command may or may not have been carried out."""


class NotApplied(Unavailable):
    """The command was not carried out; trying again is safe."""


class IssueApplication(Application[UUID]):
    """The ``eventsourcing`` application; its events live in table ``inbox_events``."""

    name = "inbox"


@dataclass(frozen=True)
class Request:
    """A client's idempotency key for one command, and a fingerprint of what it asked."""

    key: str
    fingerprint: str


@dataclass(frozen=True)
class Command:
    """One command on one issue.

    ``act`` mutates the aggregate (it raises a domain error when refused); ``create``
    builds a new aggregate instead, for the commands that raise an issue. ``request``
    makes it idempotent (see the module docstring).
    """

    issue_id: UUID
    name: str
    act: Callable[[OrderIssue, datetime], None] | None = None
    create: Callable[[datetime], OrderIssue] | None = None
    expected_version: int | None = None
    request: Request | None = None


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
    # How long an idempotency key is remembered (INBOX_IDEMPOTENCY_WINDOW_HOURS).
    request_window: timedelta = field(default=timedelta(hours=24))

    def execute(self, command: Command) -> CommandResult:
        outcome = self.execute_batch([command])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def execute_batch(
        self,
        commands: Sequence[Command],
        preloaded: MutableMapping[UUID, OrderIssue | None] | None = None,
    ) -> list[Outcome]:
        """Each command's outcome, in order.

        ``preloaded`` holds issues the caller has read already (None: known not to exist),
        so that they are not read again; it is acted on in place. On return it holds each
        issue the batch saved, at its new version, and has lost every issue whose state it
        could no longer vouch for (a refused command, a conflict, a failed save). A stale
        entry costs nothing but a conflict: the save is refused and the command retried
        on a fresh read.

        A command whose idempotency key was used before is not applied: it gets the first
        outcome (a repeat of the key in the same batch too)."""
        now = self.clock.now()
        outcomes: list[Outcome | None] = [None] * len(commands)
        repeats = self._answer_repeats(commands, outcomes)
        wanted = {command.issue_id for command in commands}
        given = preloaded if preloaded is not None else {}
        known = {i: issue for i in wanted if (issue := given.get(i)) is not None}
        # Every other issue the batch names, read in one round trip, not one per issue.
        known.update(self._load({i for i in wanted if i not in given}))
        touched: dict[UUID, OrderIssue] = {}
        applied: list[_Applied] = []
        # Refused on an issue an earlier command of the batch changed: a refusal that
        # holds only if that change is stored.
        provisional: list[int] = []
        for index, command in enumerate(commands):
            if outcomes[index] is not None or index in repeats:
                continue
            try:
                base, aggregate = self._act(command, known, now)
            except (DomainError, ApplicationError) as exc:
                outcomes[index] = exc
                given.pop(command.issue_id, None)
                if command.issue_id in touched:
                    provisional.append(index)
                continue
            known[command.issue_id] = touched[command.issue_id] = aggregate
            applied.append(_Applied(index, command, base, aggregate.version))
        if applied:
            try:
                positions = self._save(list(touched.values()), applied)
            except IntegrityError:
                # Another process wrote one of these issues (or used one of these keys)
                # since we read it. Find which: each command again, alone, on a fresh read.
                for issue_id in touched:
                    given.pop(issue_id, None)
                self._retry_alone(applied, outcomes, now)
                for index in provisional:
                    outcomes[index] = self.execute_batch([commands[index]])[0]
            except BaseException:
                for issue_id in touched:
                    given.pop(issue_id, None)
                raise
            else:
                given.update(touched)
                for item in applied:
                    position = positions[(item.command.issue_id, item.version)]
                    outcomes[item.index] = CommandResult(
                        item.command.issue_id, item.version, position
                    )
        self._settle_keys(commands, outcomes, repeats)
        assert all(outcome is not None for outcome in outcomes)
        return outcomes  # type: ignore[return-value]

    def _settle_keys(
        self,
        commands: Sequence[Command],
        outcomes: list[Outcome | None],
        repeats: dict[int, tuple[int, bool]],
    ) -> None:
        """A repeat of a key within the batch gets its first command's outcome. A keyed
        command refused or in conflict may have lost a race with its own first attempt
        (stored between our look at the keys and our read of the issue, or while we
        saved): if its key is stored now, that first outcome is its answer."""
        for index, (first, same) in repeats.items():
            outcomes[index] = outcomes[first] if same else KeyReused()
        refused = {
            index: request
            for index, command in enumerate(commands)
            if (request := command.request) is not None
            and isinstance(outcomes[index], (DomainError, ApplicationError))
            and not isinstance(outcomes[index], (KeyReused, AnsweredBefore, Unavailable))
        }
        if not refused:
            return
        stored = self._answers(list(refused.values()))
        for index, request in refused.items():
            if request.key in stored:
                outcomes[index] = _replay(request, stored[request.key])

    def _answer_repeats(
        self, commands: Sequence[Command], outcomes: list[Outcome | None]
    ) -> dict[int, tuple[int, bool]]:
        """Answer each keyed command whose key was used before with that first outcome
        (in ``outcomes``); returns the repeats of a key within the batch, by index: the
        index of the key's first command, and whether they asked for the same."""
        earlier = self._answers([c.request for c in commands if c.request is not None])
        first_with_key: dict[str, int] = {}
        repeats: dict[int, tuple[int, bool]] = {}
        for index, command in enumerate(commands):
            request = command.request
            if request is None:
                continue
            if request.key in earlier:
                outcomes[index] = _replay(request, earlier[request.key])
            elif request.key in first_with_key:
                first = first_with_key[request.key]
                before = commands[first].request
                repeats[index] = (first, before is not None and before == request)
            else:
                first_with_key[request.key] = index
        return repeats

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
            request = item.command.request
            try:
                if request is not None and (found := self._answers([request])):
                    # The key's first request landed meanwhile (another replica, or a
                    # first attempt that timed out): its outcome, not a second effect.
                    outcomes[item.index] = _replay(request, found[request.key])
                    continue
                _, aggregate = self._act(item.command, self._load({issue_id}), now, retry_of=item)
                positions = self._save([aggregate], [item])
            except IntegrityError:
                outcomes[item.index] = ConcurrentWrite(issue_id)
            except (DomainError, ApplicationError) as exc:
                outcomes[item.index] = exc
            except (OperationalError, InterfaceError):
                # Commands before this one are saved: answer each for itself, never the
                # whole batch as failed.
                log.exception("event store failed retrying a command on %s", issue_id)
                outcomes[item.index] = Unavailable(
                    "the event store failed; the command may not have been applied"
                )
            else:
                position = positions[(issue_id, aggregate.version)]
                outcomes[item.index] = CommandResult(issue_id, aggregate.version, position)

    def _save(
        self, aggregates: list[OrderIssue], applied: Sequence[_Applied]
    ) -> dict[tuple[UUID, int], int]:
        requests = [
            StoredRequest(
                item.command.request.key,
                item.command.request.fingerprint,
                item.command.issue_id,
                item.version,
            )
            for item in applied
            if item.command.request is not None
        ]
        recordings = self.app.save(
            *aggregates, requests=requests, request_window=self.request_window
        )
        return {
            (r.domain_event.originator_id, r.domain_event.originator_version): r.notification.id
            for r in recordings
        }

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def _answers(self, requests: Sequence[Request]) -> dict[str, dict[str, Any]]:
        """What was answered before to each key among ``requests`` still in the window: a
        stored outcome (issue, version, position) or a refusal (status code, body)."""
        if not requests:
            return {}
        recorder = self._recorder()
        query = SQL(
            "SELECT r.key, r.fingerprint, r.issue_id, r.version, r.status_code, r.body,"
            " e.notification_id AS position FROM command_requests AS r"
            " LEFT JOIN {}.{} AS e ON e.originator_id = r.issue_id"
            " AND e.originator_version = r.version"
            " WHERE r.key = ANY(%s) AND r.expires_at > now()"
        ).format(Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))
        with recorder.datastore.get_connection() as conn, conn.cursor() as cursor:
            cursor.execute(query, ([r.key for r in requests],))
            return {row["key"]: row for row in cursor.fetchall()}

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def remember_refusal(
        self, request: Request, status_code: int, body: dict[str, Any]
    ) -> Outcome | None:
        """Keep the answer a keyed command was refused with, for its repeats. The first
        answer wins: when the key is taken already (its first attempt landed meanwhile),
        that first outcome is returned, to be answered instead of the refusal."""
        with self._recorder().datastore.transaction(commit=True) as cursor:
            cursor.execute(
                "DELETE FROM command_requests WHERE key = %s AND expires_at <= now()",
                (request.key,),
            )
            cursor.execute(
                "INSERT INTO command_requests (key, fingerprint, status_code, body, expires_at)"
                " VALUES (%s, %s, %s, %s, now() + %s::interval)"
                " ON CONFLICT (key) DO NOTHING RETURNING key",
                (request.key, request.fingerprint, status_code, Jsonb(body), self.request_window),
            )
            if cursor.fetchone() is not None:
                return None
        stored = self._answers([request])
        return _replay(request, stored[request.key]) if request.key in stored else None

    def sweep_requests(self, batch: int = 1000) -> int:
        """Delete expired idempotency keys, ``batch`` rows per statement; how many were."""
        deleted = 0
        while True:
            with self._recorder().datastore.transaction(commit=True) as cursor:
                cursor.execute(
                    "DELETE FROM command_requests WHERE key IN (SELECT key FROM command_requests"
                    " WHERE expires_at <= now() LIMIT %s FOR UPDATE SKIP LOCKED)",
                    (batch,),
                )
                count = cursor.rowcount
            deleted += count
            if count < batch:
                return deleted

    def _recorder(self) -> PostgresApplicationRecorder:
        recorder = self.app.recorder
        assert isinstance(recorder, PostgresApplicationRecorder)
        return recorder

    def current(self, issue_ids: set[UUID]) -> dict[UUID, OrderIssue]:
        """The issues among ``issue_ids`` that exist, as they stand now (planned for the
        table as it is: the detector's reads, see app/detection.py, _CUSTOM_PLANS)."""
        found: dict[UUID, OrderIssue] = self._load(issue_ids, prepare=False)
        return found

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def _load(self, issue_ids: set[UUID], *, prepare: bool = True) -> dict[UUID, OrderIssue]:
        """The current state of each existing issue among ``issue_ids``, in one query.

        The library's repository reads one aggregate per round trip; a batch needs many,
        so this selects their stored events together and replays them with the
        application's own mapper, exactly as the repository would. ``prepare`` keeps the
        statement's plan (the command path: the planning is a tenth of a millisecond of
        every command); unprepared, each read is planned for the table as it is.
        """
        recorder = self._recorder()
        query = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {}.{}"
            " WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
        ).format(Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))
        with recorder.datastore.get_connection() as conn, conn.cursor() as cursor:
            cursor.execute(query, (list(issue_ids),), prepare=prepare)
            rows = cursor.fetchall()
        aggregates: dict[UUID, OrderIssue] = {}
        for row in rows:
            event = decode(self.app.mapper, row)
            aggregates[row["originator_id"]] = event.mutate(aggregates.get(row["originator_id"]))
        return aggregates


def _replay(request: Request, row: dict[str, Any]) -> Outcome:
    """The first outcome of an idempotency key, for a repeat of its request."""
    if row["fingerprint"] != request.fingerprint:
        return KeyReused()
    if row["version"] is None:
        return AnsweredBefore(row["status_code"], row["body"])
    return CommandResult(row["issue_id"], row["version"], row["position"])


class CommandBus:
    """Collects commands from the event loop into batches for :class:`IssueService`.

    Each writer owns one hash partition of the issue ids and one thread at a time: it takes
    what has queued up (at most ``batch_size``) while its previous batch was being saved,
    so under load batches grow by themselves and under light load a command waits for no
    one. What a caller hears matches what happened: :class:`NotApplied` when its command
    was never taken (queue full, timed out while waiting, shutting down), a plain
    :class:`Unavailable` ("may have been applied") only when a writer had taken it.
    """

    def __init__(
        self,
        service: IssueService,
        *,
        batch_size: int,
        writers: int,
        timeout: float,
        queue_limit: int = 10_000,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self._service = service
        self._batch_size = batch_size
        self._timeout = timeout
        self._on_batch = on_batch
        self._queues: list[asyncio.Queue[_Pending]] = [
            asyncio.Queue(maxsize=queue_limit) for _ in range(writers)
        ]
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    @property
    def queued(self) -> int:
        return sum(queue.qsize() for queue in self._queues)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(queue), name=f"command-writer-{n}")
            for n, queue in enumerate(self._queues)
        ]
        for task in self._tasks:
            task.add_done_callback(_report_writer_end)

    async def submit(self, command: Command) -> CommandResult:
        if self._closing:
            raise NotApplied("shutting down")
        pending = _Pending(command, asyncio.get_running_loop().create_future())
        try:
            self._queues[command.issue_id.int % len(self._queues)].put_nowait(pending)
        except asyncio.QueueFull:
            raise NotApplied("too many commands are waiting for the event store") from None
        try:
            return await asyncio.wait_for(asyncio.shield(pending.future), self._timeout)
        except TimeoutError:
            if not pending.taken:
                pending.abandoned = True  # the writer will skip it
                raise NotApplied(
                    f"the event store did not take the command within {self._timeout:g}s"
                ) from None
            pending.future.add_done_callback(_consume_outcome)
            raise Unavailable(
                f"no answer from the event store within {self._timeout:g}s; the command "
                "may still have been applied: read the issue before retrying"
            ) from None

    async def stop(self) -> None:
        """Refuse new commands, fail the ones no writer took yet, finish the batches
        already taken (waiting at most the command timeout for them)."""
        self._closing = True
        for queue in self._queues:
            while not queue.empty():
                pending = queue.get_nowait()
                if not pending.future.done():
                    pending.future.set_exception(NotApplied("shutting down"))
            queue.put_nowait(_STOP)
        if not self._tasks:
            return
        _, running = await asyncio.wait(self._tasks, timeout=self._timeout)
        for task in running:
            log.error("a command writer did not finish its batch in time; abandoning it")
            task.cancel()

    async def _run(self, queue: asyncio.Queue[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await queue.get()
            if first is _STOP:
                return
            batch = [first]
            while len(batch) < self._batch_size and not queue.empty():
                batch.append(queue.get_nowait())
            stop_after = any(item is _STOP for item in batch)
            batch = [item for item in batch if item is not _STOP and not item.abandoned]
            for item in batch:
                item.taken = True
            if batch:
                started = loop.time()
                outcomes = await self._execute([item.command for item in batch])
                if self._on_batch is not None:
                    self._on_batch(len(batch), loop.time() - started)
                for item, outcome in zip(batch, outcomes, strict=True):
                    if item.future.done():
                        continue
                    if isinstance(outcome, Exception):
                        item.future.set_exception(outcome)
                    else:
                        item.future.set_result(outcome)
            if stop_after:
                return

    async def _execute(self, commands: list[Command]) -> list[Outcome]:
        try:
            return await anyio.to_thread.run_sync(self._service.execute_batch, commands)
        except Exception:
            log.exception("a batch of %d commands failed in the event store", len(commands))
            return [
                Unavailable("the event store failed; the command may not have been applied")
                for _ in commands
            ]


@dataclass(eq=False)
class _Pending:
    command: Command
    future: asyncio.Future[CommandResult]
    taken: bool = False  # a writer has it: its outcome is no longer ours to decide
    abandoned: bool = False  # its caller gave up before a writer took it


_STOP: Any = _Pending(Command(UUID(int=0), "stop"), None)  # type: ignore[arg-type]


def _consume_outcome(future: asyncio.Future[CommandResult]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.info("a timed-out command finished late: %s", future.exception())


def _report_writer_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("command writer %s died", task.get_name(), exc_info=task.exception())
