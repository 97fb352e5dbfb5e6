"""The detector: order events in, issue commands out, durable timers in between.

For each order it keeps a watch row (``order_watch``): the state folded from the order's
events, since when each open issue's condition has been clear, and the order's next
timer; and its events (``order_events``, keyed by event id, so a repeated one changes
nothing; location pings that cannot matter are trimmed). Events that arrive after the
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
from typing import Any
from uuid import UUID

import anyio.to_thread
import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy
from cachetools import LRUCache
from prometheus_client import Counter

from adapters.clock import Clock
from app.commands import Command, Detect, Escalate, Reopen, Resolve
from app.ingest import InvalidEvent, decode, validate
from app.service import CommandResult, IssueService
from domain.detection import Action, IssueSnapshot, contact_escalations, plan
from domain.issue import OrderIssue, issue_id_for
from domain.order import (
    FOLD_VERSION,
    OrderEvent,
    OrderState,
    apply,
    fold,
    sort_key,
)
from domain.rules import RULES, evaluate, next_check
from domain.thresholds import Thresholds
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

_WATCH_COLUMNS = "order_id, state, fold_version, clear_since, pending_contacts"
# Decoders of the watch row's JSON columns, built once (not per row).
_CLEAR_SINCE = msgspec.json.Decoder(dict[str, datetime])
_PENDING = msgspec.json.Decoder(list[str])
_STATE = msgspec.json.Decoder(OrderState)

# Plan each statement of a detector transaction for the tables as they are now. A cached
# generic plan made while order_watch/order_events/inbox_events were nearly empty (a new
# deployment, a benchmark) scans whole tables once they have grown, until the next ANALYZE:
# a detector then ran at a third of its speed in about half of the runs. A batch runs a
# handful of statements, so planning each costs next to nothing.
_CUSTOM_PLANS = "SET LOCAL plan_cache_mode = force_custom_plan"


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


def _encode(event: OrderEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "type": event.type,
        "order_id": event.order_id,
        "occurred_at": event.occurred_at,
        "vertical": event.vertical,
        "country": event.country,
        "city": event.city,
        "data": event.data,
    }


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
def _issue_ids(order_id: str) -> Mapping[str, UUID]:
    """The id each kind's issue of the order has (or would have)."""
    return MappingProxyType({kind: issue_id_for(order_id, kind) for kind in RULES})


async def _lock_watch_rows(
    conn: asyncpg.Connection | PoolConnectionProxy, order_ids: list[str]
) -> tuple[list[asyncpg.Record], set[str]]:
    """The watch rows of ``order_ids`` (sorted), created where missing, all locked by one
    statement in that order (``DO UPDATE ... WHERE false`` locks a row it leaves alone),
    so that two batches never wait for each other in a circle; and the orders whose row
    was created here (a new order: nothing stored before this batch). A row the retention
    sweep deletes meanwhile is inserted afresh once the sweep commits."""
    created = await conn.fetch(
        "INSERT INTO order_watch (order_id)"
        " SELECT id FROM unnest($1::text[]) AS id ORDER BY id"
        " ON CONFLICT (order_id) DO UPDATE SET order_id = excluded.order_id WHERE false"
        " RETURNING order_id",
        order_ids,
    )
    rows = await conn.fetch(
        f"SELECT {_WATCH_COLUMNS} FROM order_watch WHERE order_id = ANY($1) ORDER BY order_id",
        order_ids,
    )
    return list(rows), {row["order_id"] for row in created}


def _visit_of(row: asyncpg.Record, new: list[OrderEvent], *, created: bool) -> _Visit:
    """The visit of a locked watch row: the ``new`` events (never seen before) applied to
    the stored state when they come after it, or the visit marked for a re-fold. A row
    that cannot be read is logged and started over: the state folded again from the
    events, the clear-for moments and pending contacts forgotten."""
    visit = _Visit(order_id=row["order_id"], clear_since={}, new=sorted(new, key=sort_key))
    try:
        visit.clear_since = _CLEAR_SINCE.decode(row["clear_since"])
        visit.pending = _PENDING.decode(row["pending_contacts"])
    except (msgspec.DecodeError, msgspec.ValidationError):
        log.exception("detector: order %s: unreadable watch row, starting over", row["order_id"])
    if created:  # a new order: its events are all in hand, nothing to read back
        visit.state = fold(visit.new)
        return visit
    if row["state"] is None or row["fold_version"] != FOLD_VERSION:
        visit.refold = True
        return visit
    try:
        state = _STATE.decode(row["state"])
    except (msgspec.DecodeError, msgspec.ValidationError):
        log.exception("detector: order %s: unreadable state, folding again", row["order_id"])
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
        pool: asyncpg.Pool,
        issues: IssueService,
        thresholds: Thresholds,
        clock: Clock,
        command_batch_size: int = 100,
        cached_issues: int = 100_000,
    ) -> None:
        self._pool = pool
        # Issues as last read or saved here: events never change, so an entry is right for
        # as long as the issue's latest stored version is the entry's version.
        self._known: LRUCache[UUID, OrderIssue] = LRUCache(maxsize=cached_issues)
        self._snapshots: LRUCache[UUID, tuple[int, IssueSnapshot]] = LRUCache(cached_issues)
        self._command_batch_size = command_batch_size
        self._issues = issues
        self._thresholds = thresholds
        self._clock = clock
        self._clear_for = timedelta(seconds=thresholds.clear_for_seconds)
        # The order-event consumer is behind on its stream (set by it from each fetch):
        # a condition found clear is not backdated meanwhile (domain/detection.py plan).
        self.behind = False
        # The thresholds of each (vertical, country), merged once.
        self._tiers = lru_cache(maxsize=4096)(thresholds.rules_for)

    async def ingest(self, events: list[OrderEvent]) -> Ingested:
        """Apply validated events in one transaction: every order they name is locked (in
        order-id order, so replicas never deadlock), evaluated, and its issue commands are
        sent in one batch."""
        by_order: dict[str, list[OrderEvent]] = defaultdict(list)
        for event in events:
            by_order[event.order_id].append(event)
        order_ids = sorted(by_order)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(_CUSTOM_PLANS)
            rows, created = await _lock_watch_rows(conn, order_ids)
            unique = list({(e.order_id, e.event_id): e for e in events}.values())
            # The rows are locked: whatever this insert finds already there was seen before.
            inserted = await conn.fetch(
                "INSERT INTO order_events (order_id, event_id, body)"
                " SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[])"
                " ON CONFLICT DO NOTHING RETURNING order_id, event_id",
                [e.order_id for e in unique],
                [e.event_id for e in unique],
                [msgspec.json.encode(_encode(e)).decode() for e in unique],
            )
            new: dict[str, list[OrderEvent]] = defaultdict(list)
            fresh = {(row["order_id"], row["event_id"]) for row in inserted}
            for event in unique:
                if (event.order_id, event.event_id) in fresh:
                    new[event.order_id].append(event)
            visits = [
                _visit_of(row, new[row["order_id"]], created=row["order_id"] in created)
                for row in rows
            ]
            await self._refold(conn, visits)
            await self._visit(conn, visits)
        accepted = len(fresh)
        duplicates = len(events) - accepted
        ORDER_EVENTS.labels("accepted").inc(accepted)
        ORDER_EVENTS.labels("duplicate").inc(duplicates)
        return Ingested(accepted, duplicates)

    async def ingest_each_order(
        self, events: Sequence[OrderEvent]
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
                done = await self.ingest(group)
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
        await self._pool.executemany(
            "INSERT INTO dead_letters (source, event_id, reason, payload) VALUES ($1, $2, $3, $4)",
            [
                (
                    source,
                    event_id,
                    reason,
                    payload if isinstance(payload, bytes) else msgspec.json.encode(payload),
                )
                for event_id, reason, payload in rejected
            ],
        )

    async def dead_letters(self, limit: int = 100) -> list[asyncpg.Record]:
        return list(
            await self._pool.fetch(
                "SELECT id, source, event_id, reason, received_at, payload FROM dead_letters"
                " ORDER BY id LIMIT $1",
                limit,
            )
        )

    async def replay_dead_letters(self, limit: int = 1000) -> tuple[int, int]:
        """Validate parked events again (after a fix, or a corrected payload); ingest the
        ones that pass and drop them from the table. Returns (replayed, still invalid)."""
        replayed = still_invalid = 0
        for letter in await self.dead_letters(limit):
            try:
                event = decode(letter["payload"])
            except InvalidEvent as exc:
                still_invalid += 1
                log.info("dead letter %s still invalid: %s", letter["id"], exc)
                continue
            await self.ingest([event])
            await self._pool.execute("DELETE FROM dead_letters WHERE id = $1", letter["id"])
            replayed += 1
        return replayed, still_invalid

    async def fire_due(self, limit: int = 100) -> int:
        """Evaluate up to ``limit`` orders whose timer is due, in one transaction; how
        many were."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(_CUSTOM_PLANS)
            rows = await conn.fetch(
                f"SELECT {_WATCH_COLUMNS} FROM order_watch"
                " WHERE next_check_at <= $1 ORDER BY next_check_at LIMIT $2"
                " FOR UPDATE SKIP LOCKED",
                self._clock.now(),
                limit,
            )
            visits = [_visit_of(row, [], created=False) for row in rows]
            await self._refold(conn, visits)
            await self._visit(conn, visits)
        TIMERS.inc(len(rows))
        return len(rows)

    async def sweep(self, retention: Retention, *, batch: int = 1000) -> Swept:
        """Delete what is older than ``retention`` allows, ``batch`` rows per statement
        (short locks, replicas skip each other's rows). An event of a swept order that
        still comes is taken for a new order's."""
        orders = events = 0
        async with self._pool.acquire() as conn:
            while True:
                row = await conn.fetchrow(
                    "WITH gone AS (DELETE FROM order_watch WHERE order_id IN ("
                    "  SELECT order_id FROM order_watch WHERE updated_at < now() - $1::interval"
                    "  ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING order_id),"
                    " dropped AS (DELETE FROM order_events AS e USING gone"
                    "  WHERE e.order_id = gone.order_id RETURNING 1)"
                    " SELECT (SELECT count(*) FROM gone) AS orders,"
                    " (SELECT count(*) FROM dropped) AS events",
                    retention.orders,
                    batch,
                )
                assert row is not None
                orders += row["orders"]
                events += row["events"]
                if row["orders"] < batch:
                    break
            deleted = {}
            for table, key, column, keep in (
                ("support_contacts", "event_id", "contacted_at", retention.contacts),
                ("dead_letters", "id", "received_at", retention.dead_letters),
            ):
                deleted[table] = 0
                while True:
                    status = await conn.execute(
                        f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table}"
                        f" WHERE {column} < now() - $1::interval LIMIT $2 FOR UPDATE SKIP LOCKED)",
                        keep,
                        batch,
                    )
                    count = int(status.split()[-1])  # "DELETE <n>"
                    deleted[table] += count
                    if count < batch:
                        break
        swept = Swept(orders, events, deleted["support_contacts"], deleted["dead_letters"])
        if any((swept.orders, swept.contacts, swept.dead_letters)):
            log.info("retention sweep: %s", swept)
        return swept

    async def _refold(
        self, conn: asyncpg.Connection | PoolConnectionProxy, visits: list[_Visit]
    ) -> None:
        """Fold again, from all their events, the states marked for it (a late event, a
        new fold version, a row without state)."""
        due = {v.order_id: v for v in visits if v.refold and not v.broken}
        if not due:
            return
        REFOLDS.inc(len(due))
        stored: dict[str, list[OrderEvent]] = defaultdict(list)
        for row in await conn.fetch(
            "SELECT order_id, body FROM order_events WHERE order_id = ANY($1)", list(due)
        ):
            try:
                stored[row["order_id"]].append(validate(msgspec.json.decode(row["body"])))
            except (msgspec.DecodeError, InvalidEvent):
                # Stored only after validation: a corrupt row, say so loudly.
                log.exception("detector: a stored event of order %s is corrupt", row["order_id"])
                due[row["order_id"]].broken = True
        for order_id, visit in due.items():
            if not visit.broken:
                visit.state = fold(stored[order_id])

    async def _visit(
        self, conn: asyncpg.Connection | PoolConnectionProxy, visits: list[_Visit]
    ) -> None:
        """Evaluate and plan every visited order; record its customer contacts; send all
        their issue commands as one batch; write every watch row back."""
        now = self._clock.now()
        for visit in visits:
            self._evaluate(visit, now)
        evaluated = [v for v in visits if v.outcome is None]
        current = await self._issues_of(
            conn, [issue_id for v in evaluated for issue_id in v.issue_ids.values()]
        )
        commands: list[tuple[_Visit, Action]] = []
        contact_rows: list[tuple[str, str, datetime, bool, datetime | None]] = []
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
            clear_for_kind = self._tiers(state.vertical, state.country).clear_for
            decided = plan(
                state,
                visit.checks,
                snapshots,
                visit.clear_since,
                now,
                self._clear_for,
                clear_for_kind,
                backdate=not self.behind,
            )
            actions = list(decided.actions)
            open_issues = [i for i in issues.values() if i.status != "resolved"]
            for contact in visit.contacts:
                contact_rows.append(
                    (
                        contact.event_id,
                        state.order_id,
                        contact.occurred_at,
                        bool(open_issues),
                        min((i.detected_at for i in open_issues), default=None),
                    )
                )
                if not open_issues:
                    log.info("missed detection: order %s contacted support", state.order_id)
            contacts = visit.pending + [c.event_id for c in visit.contacts if open_issues]
            if contacts:
                actions += contact_escalations(snapshots, contacts, decided.actions)
            visit.pending = []
            visit.contacts_sent = contacts
            commands += [(visit, action) for action in actions]
            times = [t for t in (next_check(visit.checks), decided.recheck_at) if t is not None]
            visit.outcome = (decided.clear_since, min(times) if times else None)
        if contact_rows:
            await conn.executemany(
                "INSERT INTO support_contacts (event_id, order_id, contacted_at, detected,"
                " first_detected_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                contact_rows,
            )
        if commands:
            for visit in await self._send(commands, current):
                # A command that did not land (a conflict, the store unavailable): look at
                # the order again soon, from the issues as they will stand then.
                assert visit.outcome is not None
                visit.pending = visit.contacts_sent
                clear_since, next_at = visit.outcome
                soon = now + _RETRY_FAILED
                visit.outcome = (clear_since, soon if next_at is None else min(next_at, soon))
        await self._store(conn, visits)

    async def _issues_of(
        self, conn: asyncpg.Connection | PoolConnectionProxy, issue_ids: list[UUID]
    ) -> dict[UUID, OrderIssue]:
        """The issues among ``issue_ids`` that exist, as they stand: their latest versions
        in one query, and only the ones not already known at that version read from the
        event store."""
        if not issue_ids:
            return {}
        latest = await conn.fetch(
            "SELECT originator_id, max(originator_version) AS version FROM inbox_events"
            " WHERE originator_id = ANY($1::uuid[]) GROUP BY originator_id",
            issue_ids,
        )
        found: dict[UUID, OrderIssue] = {}
        stale: set[UUID] = set()
        for row in latest:
            issue = self._known.get(row["originator_id"])
            if issue is not None and issue.version == row["version"]:
                found[row["originator_id"]] = issue
            else:
                stale.add(row["originator_id"])
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

    def _evaluate(self, visit: _Visit, now: datetime) -> None:
        """The rules' checks of the order now, or its outcome when there is nothing to
        evaluate (a corrupt row, no events) or evaluating failed."""
        if visit.broken:
            visit.outcome = (visit.clear_since, now + _RETRY_BROKEN)
            return
        if visit.state is None:
            visit.outcome = ({}, None)
            return
        try:
            thresholds = self._tiers(visit.state.vertical, visit.state.country)
            visit.checks = evaluate(visit.state, now, thresholds)
        except (ValueError, KeyError, TypeError, AssertionError):
            # A bug: log it, keep the order's events, look again in a while.
            log.exception("detector: evaluating order %s failed", visit.order_id)
            visit.outcome = (visit.clear_since, now + _RETRY_BROKEN)
            return
        visit.issue_ids = _issue_ids(visit.order_id)

    async def _send(
        self, commands: list[tuple[_Visit, Action]], current: dict[UUID, OrderIssue]
    ) -> set[_Visit]:
        """Every command, on the issues as just read, in saves of at most
        ``command_batch_size`` commands (the library hangs on a very large insert) that
        never split one order's commands. Returns the visits whose commands did not all
        land. A crash between two saves leaves the watch rows unwritten: the next look
        derives the rest from the issues as they then stand."""
        failed: set[_Visit] = set()
        for chunk in _chunks(commands, self._command_batch_size):
            built = [self._command(visit, action) for visit, action in chunk]
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

    async def _store(
        self, conn: asyncpg.Connection | PoolConnectionProxy, visits: list[_Visit]
    ) -> None:
        """Write the visited rows back, in one statement: the state, the clear-since times
        and the next timer. A broken order (a stored event unreadable) loses its state, so
        that it is folded again, from every event, once the event is repaired."""
        rows = []
        for visit in visits:
            if visit.broken or visit.outcome is None:
                continue
            clear_since, next_at = visit.outcome
            state = None if visit.state is None else msgspec.json.encode(visit.state).decode()
            rows.append(
                (
                    visit.order_id,
                    state,
                    msgspec.json.encode(clear_since).decode(),
                    next_at,
                    msgspec.json.encode(visit.pending).decode(),
                )
            )
        if rows:
            order_ids, states, clear, next_ats, pending = (
                list(column) for column in zip(*rows, strict=True)
            )
            await conn.execute(
                "UPDATE order_watch AS w SET state = u.state, fold_version = $6,"
                " clear_since = u.clear_since, next_check_at = u.next_at,"
                " pending_contacts = u.pending, updated_at = now()"
                " FROM unnest($1::text[], $2::jsonb[], $3::jsonb[], $4::timestamptz[],"
                " $5::jsonb[]) AS u(order_id, state, clear_since, next_at, pending)"
                " WHERE w.order_id = u.order_id",
                order_ids,
                states,
                clear,
                next_ats,
                pending,
                FOLD_VERSION,
            )
        broken = [v for v in visits if v.broken and v.outcome is not None]
        if broken:
            await conn.executemany(
                # No state: every later visit folds again (and says why it cannot).
                "UPDATE order_watch SET state = NULL, next_check_at = $2 WHERE order_id = $1",
                [(v.order_id, v.outcome[1]) for v in broken if v.outcome is not None],
            )

    def _command(self, visit: _Visit, action: Action) -> Command:
        state = visit.state
        assert state is not None
        issue_id = issue_id_for(state.order_id, action.kind)
        if action.op == "detect":
            assert action.severity is not None
            return Detect(
                actor=SYSTEM_ACTOR,
                order_id=state.order_id,
                kind=action.kind,
                severity=action.severity or "low",
                vertical=state.vertical,
                country=state.country,
                city=state.city,
                evidence=action.evidence,
            )
        if action.op == "escalate":
            return Escalate(
                issue_id=issue_id,
                actor=SYSTEM_ACTOR,
                severity=action.severity or "low",
                evidence=action.evidence,
            )
        if action.op == "reopen":
            return Reopen(issue_id=issue_id, actor=SYSTEM_ACTOR, reason=action.reason)
        return Resolve(
            issue_id=issue_id,
            actor=SYSTEM_ACTOR,
            resolution="fixed",
            note=action.reason,
            resolved_by="system",
        )


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
