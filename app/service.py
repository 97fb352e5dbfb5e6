"""The issue service: executes commands on ``OrderIssue`` (get → act → save) in batches.

One transaction costs about 2 ms here whatever it holds, so throughput comes from many
commands per ``save()`` (DESIGN.md, "Known traps"). :class:`IssueService` executes a batch of
commands (``app/commands.py``) in one save; ``app/bus.py`` collects concurrent commands
from the event loop into such batches. The errors it answers with are in
``app/errors.py``; its storage (the library's save, the reads of many issues at once, the
idempotency keys) is ``adapters.eventstore.EventStore``.

Idempotency: a command may carry a ``Request`` (``app/commands.py``: the client's
``Idempotency-Key`` and a fingerprint of what it asked). Its key is stored by the event
store in the transaction that stores its event (``adapters.eventstore.RequestRecorder``),
and looked up before a command is applied, so a repeat within the window (on any replica,
after any restart, after a 503 or a lost answer) gets the first outcome and is applied
once.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.application import Application

from adapters.clock import Clock
from adapters.eventstore import Conflict, EventStore, IssueScope, StoredRequest
from adapters.postgres import DatabaseUnavailable
from app.commands import Command, Detect, Report, Request
from app.errors import (
    AnsweredBefore,
    ApplicationError,
    ConcurrentWrite,
    IssueAlreadyExists,
    IssueNotFound,
    KeyReused,
    Unavailable,
    VersionMismatch,
)
from domain.errors import DomainError, InvalidValue
from domain.issue import OrderIssue

log = logging.getLogger(__name__)


class IssueApplication(Application[UUID]):
    """The ``eventsourcing`` application; its events live in table ``inbox_events``."""

    name = "inbox"


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
    store: EventStore = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.store = EventStore(self.app)

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
            except Conflict:
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
        if isinstance(command, Report | Detect):
            outside = command.scope.outside(command.vertical, command.country)
            if outside is not None:
                # Refused before looking at the issue: whether it exists is not revealed.
                raise InvalidValue(outside, "outside your scope")
            if aggregate is not None:
                if not command.scope.sees(aggregate.vertical, aggregate.country):
                    # The order's issue is another market's: say only that the order is
                    # not the caller's, nothing of the issue (not 409 "already exists").
                    raise InvalidValue("order_id", "outside your scope")
                if retry_of is not None:
                    raise ConcurrentWrite(command.issue_id)
                raise IssueAlreadyExists(command.issue_id)
            return None, command.create(now)
        if aggregate is None or not command.scope.sees(aggregate.vertical, aggregate.country):
            # Out of the caller's scope reads exactly as unknown (CONTRACT §6).
            raise IssueNotFound(command.issue_id)
        base = aggregate.version
        if retry_of is not None and retry_of.base_version != base:
            raise ConcurrentWrite(command.issue_id)
        if command.expected_version is not None and command.expected_version != base:
            raise VersionMismatch(command.issue_id, command.expected_version, base)
        command.apply(aggregate, now)
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
            except Conflict:
                outcomes[item.index] = ConcurrentWrite(issue_id)
            except (DomainError, ApplicationError) as exc:
                outcomes[item.index] = exc
            except DatabaseUnavailable:
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
        raised = {item.command.issue_id for item in applied if item.base_version is None}
        scopes = [IssueScope(a.id, a.vertical, a.country) for a in aggregates if a.id in raised]
        return self.store.save(aggregates, requests, self.request_window, scopes)

    def _answers(self, requests: Sequence[Request]) -> dict[str, dict[str, Any]]:
        """What was answered before to each key among ``requests`` still in the window: a
        stored outcome (issue, version, position) or a refusal (status code, body)."""
        return self.store.answers([r.key for r in requests])

    def remember_refusal(
        self, request: Request, status_code: int, body: dict[str, Any]
    ) -> Outcome | None:
        """Keep the answer a keyed command was refused with, for its repeats. The first
        answer wins: when the key is taken already (its first attempt landed meanwhile),
        that first outcome is returned, to be answered instead of the refusal."""
        if self.store.keep_refusal(
            request.key, request.fingerprint, status_code, body, self.request_window
        ):
            return None
        stored = self._answers([request])
        return _replay(request, stored[request.key]) if request.key in stored else None

    def sweep_requests(self, batch: int = 1000) -> int:
        """Delete expired idempotency keys, ``batch`` rows per statement; how many were."""
        return self.store.sweep_requests(batch)

    def current(self, issue_ids: set[UUID]) -> dict[UUID, OrderIssue]:
        """The issues among ``issue_ids`` that exist, as they stand now (planned for the
        table as it is: the detector's reads, see app/detection.py, _CUSTOM_PLANS)."""
        return self._load(issue_ids, prepare=False)

    def _load(self, issue_ids: set[UUID], *, prepare: bool = True) -> dict[UUID, OrderIssue]:
        """The current state of each existing issue among ``issue_ids``, in one query."""
        found: dict[UUID, OrderIssue] = self.store.load(issue_ids, prepare=prepare)
        return found


def _replay(request: Request, row: dict[str, Any]) -> Outcome:
    """The first outcome of an idempotency key, for a repeat of its request."""
    if row["fingerprint"] != request.fingerprint:
        return KeyReused()
    if row["version"] is None:
        return AnsweredBefore(row["status_code"], row["body"])
    return CommandResult(row["issue_id"], row["version"], row["position"])
