"""The detector: order events in, issue commands out, durable timers in between.

For each order it keeps a watch row (``order_watch``): the state folded from the order's
events, since when each open issue's condition has been clear, and the order's next
timer; and its events (``order_events``, keyed by event id, so a repeated one changes
nothing; every event is kept until the order's retention sweep, which is what
``inbox backtest`` replays). Events that arrive after the
last one applied are applied to the stored state; an event that belongs before it (late,
out of order) makes the detector fold the state again from all the events, in
``occurred_at`` order, so arrival order never changes the result.

Ingesting a batch and firing due timers both end the same way: evaluate the rules
(``domain/rules.py``) on each order, plan the issue actions (``domain/detection.py``)
against the issues as they stand, send the commands, write the watch rows back. The rows
of a batch are locked (``FOR UPDATE``, in order-id order) in one transaction meanwhile, so
replicas never work on one order at once; due timers are claimed with ``SKIP LOCKED``, so
replicas share them. Everything is derived from state, so a redelivered event or a
re-fired timer asks for nothing twice.

This module is the orchestration (fold, evaluate, plan, command); the rows are kept by a
``WatchStore`` and parked events by a ``DeadLetterStore`` (``app/ports.py``; PostgreSQL:
``adapters/watch.py``, ``adapters/dead_letters.py``; in memory: ``tests/unit/fakes.py``).
"""

from __future__ import annotations

import itertools
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Any, assert_never
from uuid import UUID

import anyio.to_thread
import msgspec
from cachetools import LRUCache
from prometheus_client import Counter

from adapters.clock import Clock
from app.commands import Command, Detect, Escalate, Reopen, Resolve
from app.ingest import InvalidEvent, decode, validate
from app.ports import (
    BrokenOrder,
    DeadLetter,
    DeadLetterStore,
    IssueCommands,
    Rejected,
    SupportContact,
    WatchBatch,
    WatchRow,
    WatchStore,
    WatchUpdate,
)
from app.rules_source import RulesSource
from app.service import CommandResult
from domain.detection import Action, IssueSnapshot, decide
from domain.issue import OrderIssue, fired_rule, issue_id_for
from domain.order import OrderEvent, OrderState, apply, fold, sort_key
from domain.rules import evaluate
from domain.ruleset import RuleSet
from domain.values import SYSTEM_ACTOR, storable

log = logging.getLogger(__name__)

ORDER_EVENTS = Counter("inbox_order_events_total", "Order events by outcome", ["outcome"])
ISSUE_ACTIONS = Counter(
    "inbox_detector_actions_total", "Issue actions by kind and op", ["kind", "op"]
)
TIMERS = Counter("inbox_detector_timers_total", "Durable timers fired")
REFOLDS = Counter("inbox_detector_refolds_total", "States folded again from all events")

# How long a timer that failed with a bug waits before it is tried again.
_RETRY_BROKEN = timedelta(minutes=5)
# How soon an order whose issue command did not land is looked at again.
_RETRY_FAILED = timedelta(seconds=5)


@dataclass(frozen=True)
class Ingested:
    accepted: int
    duplicates: int


@dataclass(frozen=True)
class Retention:
    """How long the detector keeps what it no longer needs."""

    orders: timedelta  # an order's watch row and events, after its last change
    contacts: timedelta  # support contacts (the detection KPI's window)
    dead_letters: timedelta  # parked events nobody replayed


@dataclass(frozen=True)
class Swept:
    orders: int
    events: int
    contacts: int
    dead_letters: int


@dataclass(eq=False)  # one visit is one order in one batch: compared by identity
class _Visit:
    """One order looked at in a batch: its watch row as locked, what the batch brought,
    and what the detector decided."""

    order_id: str
    clear_since: dict[str, datetime]
    # Customer contacts whose escalations have not all landed: passed again next time
    # (an issue that counted one already is not raised twice).
    pending: list[str] = field(default_factory=list)
    contacts_sent: list[str] = field(default_factory=list)  # contacts this visit escalated
    new: list[OrderEvent] = field(default_factory=list)  # unseen events, in sort_key order
    state: OrderState | None = None
    refold: bool = False  # the state must be folded again from all the events
    broken: bool = False  # a stored event could not be read: no state, try again later
    issue_ids: Mapping[str, UUID] = field(default_factory=dict)
    checks: dict[str, Any] | None = None
    outcome: tuple[dict[str, datetime], datetime | None] | None = None

    @property
    def contacts(self) -> list[OrderEvent]:
        return [e for e in self.new if e.type == "customer_contacted_support"]


@lru_cache(maxsize=1 << 16)
def _issue_ids(order_id: str, kinds: frozenset[str]) -> Mapping[str, UUID]:
    """The id each kind's issue of the order has (or would have)."""
    return MappingProxyType({kind: issue_id_for(order_id, kind) for kind in kinds})


def _visit_of(row: WatchRow, new: list[OrderEvent]) -> _Visit:
    """The visit of a locked watch row: the ``new`` events (never seen before) applied to
    the stored state when they come after it, or the visit marked for a re-fold (no state
    that can be used: see WatchRow)."""
    visit = _Visit(
        order_id=row.order_id,
        clear_since=row.clear_since,
        pending=row.pending,
        new=sorted(new, key=sort_key),
    )
    if row.created:  # a new order: its events are all in hand, nothing to read back
        visit.state = fold(visit.new)
        return visit
    state = row.state
    if state is None:
        visit.refold = True
        return visit
    last = state.last_event_at
    if visit.new and last is not None and visit.new[0].occurred_at <= last:
        visit.refold = True  # a late event: it belongs before some applied ones
        return visit
    for event in visit.new:
        state = apply(state, event)
    visit.state = state
    return visit


class Detector:
    def __init__(
        self,
        *,
        store: WatchStore,
        dead_letters: DeadLetterStore,
        issues: IssueCommands,
        rules: RulesSource,
        clock: Clock,
        command_batch_size: int = 100,
        cached_issues: int = 100_000,
    ) -> None:
        self._store = store
        self._dead_letters = dead_letters
        # Issues as last read or saved here: events never change, so an entry is right for
        # as long as the issue's latest stored version is the entry's version.
        self._known: LRUCache[UUID, OrderIssue] = LRUCache(maxsize=cached_issues)
        self._snapshots: LRUCache[UUID, tuple[int, IssueSnapshot]] = LRUCache(cached_issues)
        self._command_batch_size = command_batch_size
        self._issues = issues
        self._rules = rules
        self._clock = clock
        # The order-event consumer is behind on its stream (set by it from each fetch):
        # a condition found clear is not backdated meanwhile (domain/detection.py plan).
        self.behind = False

    @property
    def rules(self) -> RuleSet:
        """The rules events are validated and judged with now."""
        return self._rules.current

    async def ingest(self, events: list[OrderEvent], rules: RuleSet | None = None) -> Ingested:
        """Apply validated events in one transaction: every order they name is locked (in
        order-id order, so replicas never deadlock), evaluated, and its issue commands are
        sent in one batch. ``rules``: the set the events were validated with (judged by
        the same, whatever a reload does meanwhile); default the current one."""
        by_order: dict[str, list[OrderEvent]] = defaultdict(list)
        for event in events:
            by_order[event.order_id].append(event)
        async with self._store.lock(sorted(by_order)) as batch:
            unique = list({(e.order_id, e.event_id): e for e in events}.values())
            # The rows are locked: whatever this insert finds already there was seen before.
            fresh = await batch.insert_events(unique)
            new: dict[str, list[OrderEvent]] = defaultdict(list)
            for event in unique:
                if (event.order_id, event.event_id) in fresh:
                    new[event.order_id].append(event)
            visits = [_visit_of(row, new[row.order_id]) for row in batch.rows]
            await self._refold(batch, visits)
            await self._visit(batch, visits, rules or self.rules)
        accepted = len(fresh)
        duplicates = len(events) - accepted
        ORDER_EVENTS.labels("accepted").inc(accepted)
        ORDER_EVENTS.labels("duplicate").inc(duplicates)
        return Ingested(accepted, duplicates)

    async def ingest_each_order(
        self, events: Sequence[OrderEvent], rules: RuleSet | None = None
    ) -> tuple[Ingested, dict[str, Exception]]:
        """Ingest ``events`` one order at a time (after a batch of them failed), so that
        only the orders that fail are set aside: what was stored, and each failed order's
        id with the exception it failed with, for the caller to park or hand back."""
        by_order: dict[str, list[OrderEvent]] = defaultdict(list)
        for event in events:
            by_order[event.order_id].append(event)
        accepted = duplicates = 0
        failed: dict[str, Exception] = {}
        for order_id, group in by_order.items():
            try:
                done = await self.ingest(group, rules)
            except Exception as exc:  # handed to the caller, which logs it
                failed[order_id] = exc
                continue
            accepted += done.accepted
            duplicates += done.duplicates
        return Ingested(accepted, duplicates), failed

    async def park(self, source: str, rejected: Sequence[tuple[str | None, str, Any]]) -> None:
        """Keep events that could not be accepted where an operator can list and replay
        them (``dead_letters``), logged with their ids. The payload is kept as it came
        (bytes); an id or reason holding a character PostgreSQL cannot store is kept with
        it escaped, so parking never fails on what it parks."""
        rejected = [
            (None if event_id is None else storable(event_id[:200]), storable(reason), payload)
            for event_id, reason, payload in rejected
        ]
        for event_id, reason, _payload in rejected:
            log.warning("rejected order event %s from %s: %s", event_id, source, reason)
        ORDER_EVENTS.labels("rejected").inc(len(rejected))
        await self._dead_letters.park(
            [
                Rejected(
                    source,
                    event_id,
                    reason,
                    payload if isinstance(payload, bytes) else msgspec.json.encode(payload),
                )
                for event_id, reason, payload in rejected
            ]
        )

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return await self._dead_letters.list(limit)

    async def replay_dead_letters(self, limit: int = 1000) -> tuple[int, int]:
        """Validate parked events again (after a fix, or a corrected payload); ingest the
        ones that pass and drop them from the table. Returns (replayed, still invalid)."""
        replayed = still_invalid = 0
        for letter in await self.dead_letters(limit):
            try:
                rules = self.rules
                event = decode(letter.payload, rules)
            except InvalidEvent as exc:
                still_invalid += 1
                log.info("dead letter %s still invalid: %s", letter.id, exc)
                continue
            await self.ingest([event], rules)
            await self._dead_letters.delete(letter.id)
            replayed += 1
        return replayed, still_invalid

    async def fire_due(self, limit: int = 100) -> int:
        """Evaluate up to ``limit`` orders whose timer is due, in one transaction; how
        many were."""
        async with self._store.claim_due(self._clock.now(), limit) as batch:
            visits = [_visit_of(row, []) for row in batch.rows]
            await self._refold(batch, visits)
            await self._visit(batch, visits, self.rules)
        TIMERS.inc(len(visits))
        return len(visits)

    async def sweep(self, retention: Retention, *, batch: int = 1000) -> Swept:
        """Delete what is older than ``retention`` allows, ``batch`` rows per statement
        (short locks, replicas skip each other's rows). An event of a swept order that
        still comes is taken for a new order's."""
        watch = await self._store.sweep(
            orders=retention.orders, contacts=retention.contacts, batch=batch
        )
        dead = await self._dead_letters.sweep(older_than=retention.dead_letters, batch=batch)
        swept = Swept(watch.orders, watch.events, watch.contacts, dead)
        if any((swept.orders, swept.contacts, swept.dead_letters)):
            log.info("retention sweep: %s", swept)
        return swept

    async def _refold(self, batch: WatchBatch, visits: list[_Visit]) -> None:
        """Fold again, from all their events, the states marked for it (a late event, a
        new fold version, a row without state)."""
        due = {v.order_id: v for v in visits if v.refold and not v.broken}
        if not due:
            return
        REFOLDS.inc(len(due))
        stored: dict[str, list[OrderEvent]] = defaultdict(list)
        for row in await batch.events_of(list(due)):
            try:
                stored[row.order_id].append(validate(msgspec.json.decode(row.body), None))
            except (msgspec.DecodeError, InvalidEvent):
                # Stored only after validation: a corrupt row, say so loudly.
                log.exception("detector: a stored event of order %s is corrupt", row.order_id)
                due[row.order_id].broken = True
        for order_id, visit in due.items():
            if not visit.broken:
                visit.state = fold(stored[order_id])

    async def _visit(self, batch: WatchBatch, visits: list[_Visit], rules: RuleSet) -> None:
        """Evaluate and plan every visited order; record its customer contacts; send all
        their issue commands as one batch; write every watch row back."""
        now = self._clock.now()
        for visit in visits:
            self._evaluate(visit, now, rules)
        evaluated = [v for v in visits if v.outcome is None]
        current = await self._issues_of(
            batch, [issue_id for v in evaluated for issue_id in v.issue_ids.values()]
        )
        commands: list[tuple[_Visit, Action]] = []
        contact_rows: list[SupportContact] = []
        for visit in evaluated:
            assert visit.state is not None
            assert visit.checks is not None
            state = visit.state
            issues = {
                kind: issue
                for kind, issue_id in visit.issue_ids.items()
                if (issue := current.get(issue_id)) is not None
            }
            snapshots = {kind: self._snapshot(issue) for kind, issue in issues.items()}
            decided = decide(
                state,
                visit.checks,
                snapshots,
                visit.clear_since,
                now,
                rules.clear_for,
                rules.rules_for(state.vertical, state.country),
                backdate=not self.behind,
                pending=visit.pending,
                contacts=[c.event_id for c in visit.contacts],
            )
            open_issues = [i for i in issues.values() if i.status != "resolved"]
            for contact in visit.contacts:
                contact_rows.append(
                    SupportContact(
                        contact.event_id,
                        state.order_id,
                        contact.occurred_at,
                        bool(open_issues),
                        min((i.detected_at for i in open_issues), default=None),
                        state.vertical,
                        state.country,
                    )
                )
                if not open_issues:
                    log.info("missed detection: order %s contacted support", state.order_id)
            visit.pending = []
            visit.contacts_sent = decided.contacts
            commands += [(visit, action) for action in decided.actions]
            visit.outcome = (decided.clear_since, decided.next_at)
        await batch.record_contacts(contact_rows)
        if commands:
            for visit in await self._send(commands, current, rules):
                # A command that did not land (a conflict, the store unavailable): look at
                # the order again soon, from the issues as they will stand then.
                assert visit.outcome is not None
                visit.pending = visit.contacts_sent
                clear_since, next_at = visit.outcome
                soon = now + _RETRY_FAILED
                visit.outcome = (clear_since, soon if next_at is None else min(next_at, soon))
        await self._write_back(batch, visits)

    async def _issues_of(self, batch: WatchBatch, issue_ids: list[UUID]) -> dict[UUID, OrderIssue]:
        """The issues among ``issue_ids`` that exist, as they stand: their latest versions
        in one query, and only the ones not already known at that version read from the
        event store."""
        if not issue_ids:
            return {}
        found: dict[UUID, OrderIssue] = {}
        stale: set[UUID] = set()
        for issue_id, version in (await batch.issue_versions(issue_ids)).items():
            issue = self._known.get(issue_id)
            if issue is not None and issue.version == version:
                found[issue_id] = issue
            else:
                stale.add(issue_id)
        if stale:
            read = await anyio.to_thread.run_sync(self._issues.current, stale)
            found.update(read)
            self._known.update(read)
        return found

    def _snapshot(self, issue: OrderIssue) -> IssueSnapshot:
        """What the plan needs of an issue, kept per version (it is asked for on every
        look at the order)."""
        known = self._snapshots.get(issue.id)
        if known is not None and known[0] == issue.version:
            return known[1]
        counted = frozenset(issue.evidence.get("customer_contacts", ()))
        snapshot = IssueSnapshot(issue.status, issue.severity, issue.resolved_by, counted)
        self._snapshots[issue.id] = (issue.version, snapshot)
        return snapshot

    def _evaluate(self, visit: _Visit, now: datetime, rules: RuleSet) -> None:
        """The rules' checks of the order now, or its outcome when there is nothing to
        evaluate (a corrupt row, no events) or evaluating failed."""
        if visit.broken:
            visit.outcome = (visit.clear_since, now + _RETRY_BROKEN)
            return
        if visit.state is None:
            visit.outcome = ({}, None)
            return
        try:
            thresholds = rules.rules_for(visit.state.vertical, visit.state.country)
            visit.checks = evaluate(visit.state, now, thresholds)
        except (ArithmeticError, ValueError, KeyError, TypeError, AssertionError):
            # A bug: log it, keep the order's events, look again in a while.
            log.exception("detector: evaluating order %s failed", visit.order_id)
            visit.outcome = (visit.clear_since, now + _RETRY_BROKEN)
            return
        visit.issue_ids = _issue_ids(visit.order_id, rules.kinds)

    async def _send(
        self,
        commands: list[tuple[_Visit, Action]],
        current: dict[UUID, OrderIssue],
        rules: RuleSet,
    ) -> set[_Visit]:
        """Every command, on the issues as just read, in saves of at most
        ``command_batch_size`` commands (the library hangs on a very large insert) that
        never split one order's commands. Returns the visits whose commands did not all
        land. A crash between two saves leaves the watch rows unwritten: the next look
        derives the rest from the issues as they then stand."""
        failed: set[_Visit] = set()
        for chunk in _chunks(commands, self._command_batch_size):
            built = [self._command(visit, action, rules) for visit, action in chunk]
            # What this batch read, or None for an issue known not to exist; an issue
            # left out (its state unknown after a failed save) is read again.
            preloaded: dict[UUID, OrderIssue | None] = {}
            for command in built:
                if command.issue_id in current:
                    preloaded[command.issue_id] = current[command.issue_id]
                elif isinstance(command, Detect):
                    preloaded[command.issue_id] = None
            try:
                outcomes = await anyio.to_thread.run_sync(
                    self._issues.execute_batch, built, preloaded
                )
            finally:
                for issue_id in {command.issue_id for command in built}:
                    issue = preloaded.get(issue_id)
                    if issue is None:
                        self._known.pop(issue_id, None)
                        current.pop(issue_id, None)
                    else:
                        self._known[issue_id] = current[issue_id] = issue
            for (visit, action), outcome in zip(chunk, outcomes, strict=True):
                if isinstance(outcome, CommandResult):
                    ISSUE_ACTIONS.labels(action.kind, action.op).inc()
                else:
                    failed.add(visit)
                    log.info(
                        "detector %s on %s/%s: %s", action.op, visit.order_id, action.kind, outcome
                    )
        return failed

    async def _write_back(self, batch: WatchBatch, visits: list[_Visit]) -> None:
        """Write the visited rows back: the state, the clear-since times and the next
        timer. A broken order (a stored event unreadable) loses its state, so that it is
        folded again, from every event, once the event is repaired."""
        updates = []
        broken = []
        for visit in visits:
            if visit.outcome is None:
                continue
            clear_since, next_at = visit.outcome
            if visit.broken:
                broken.append(BrokenOrder(visit.order_id, next_at))
            else:
                updates.append(
                    WatchUpdate(visit.order_id, visit.state, clear_since, next_at, visit.pending)
                )
        await batch.store(updates, broken)

    def _command(self, visit: _Visit, action: Action, rules: RuleSet) -> Command:
        """The command of one planned action, recording the rule behind it: the rules
        version, the rule (the kind), the tier that fired and why (an auditor's answer to
        "which thresholds raised or resolved this issue")."""
        state = visit.state
        assert state is not None
        issue_id = issue_id_for(state.order_id, action.kind)
        rule = fired_rule(
            rules.version,
            action.kind,
            _reason(action),
            threshold=action.tier,
            severity=action.severity if action.tier is not None else None,
        )
        match action.op:
            case "detect":
                assert action.severity is not None
                spec = rules.vertical(state.vertical)
                return Detect(
                    actor=SYSTEM_ACTOR,
                    order_id=state.order_id,
                    kind=action.kind,
                    severity=action.severity or "low",
                    vertical=state.vertical,
                    country=state.country,
                    city=state.city,
                    evidence=action.evidence,
                    rule=rule,
                    sla_minutes=None if spec is None else dict(spec.sla_minutes),
                )
            case "escalate":
                return Escalate(
                    issue_id=issue_id,
                    actor=SYSTEM_ACTOR,
                    severity=action.severity or "low",
                    evidence=action.evidence,
                    rule=rule,
                )
            case "reopen":
                return Reopen(
                    issue_id=issue_id, actor=SYSTEM_ACTOR, reason=action.reason, rule=rule
                )
            case "resolve":
                return Resolve(
                    issue_id=issue_id,
                    actor=SYSTEM_ACTOR,
                    resolution="fixed",
                    note=action.reason,
                    resolved_by="system",
                    rule=rule,
                )
            case unknown:
                assert_never(unknown)


def _reason(action: Action) -> str:
    """Why the detector acts, as its rule record says: the tier a condition reached, a
    customer's contact, or the plan's own reason (a condition cleared or recurred, the
    order ended)."""
    if action.op in ("resolve", "reopen"):
        return action.reason
    if action.evidence.get("customer_contacted_support") is True and action.tier is None:
        return "customer contacted support"
    if action.tier is None:
        return "the condition holds"
    verb = "reached" if action.op == "detect" else "worsened to"
    return f"the condition {verb} the {action.severity} tier (threshold {action.tier:g})"


def _chunks(commands: list[tuple[_Visit, Action]], size: int) -> list[list[tuple[_Visit, Action]]]:
    """``commands`` (each order's together) cut into lists of about ``size``, only between
    orders: an order's commands on one issue then share one save and one read of it."""
    chunks: list[list[tuple[_Visit, Action]]] = [[]]
    for visit, group in itertools.groupby(commands, key=lambda pair: pair[0]):
        pairs = [(visit, action) for _, action in group]
        if chunks[-1] and len(chunks[-1]) + len(pairs) > size:
            chunks.append([])
        chunks[-1] += pairs
    return [chunk for chunk in chunks if chunk]
