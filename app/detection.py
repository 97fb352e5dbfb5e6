"""The detector: order events in, issue commands out, durable timers in between.

For each order it keeps a watch row (``order_watch``): the state folded from the order's
events, the ids of every event seen (a repeated one changes nothing), the events
themselves (location pings trimmed) for when the state must be folded again, since when
each open issue's condition has been clear, and the order's next timer. Events that arrive
after the last one applied are applied to the stored state; an event that belongs before
it (late, out of order) makes the detector fold the state again from all the events, in
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

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import anyio.to_thread
import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy
from cachetools import LRUCache
from prometheus_client import Counter

from adapters.clock import Clock
from app.ingest import InvalidEvent, validate
from app.service import Command, CommandResult, IssueService, Outcome
from domain.detection import Action, IssueSnapshot, contact_escalations, plan
from domain.issue import OrderIssue, issue_id_for
from domain.order import (
    FOLD_VERSION,
    OrderEvent,
    OrderState,
    apply,
    fold,
    sort_key,
    trim,
)
from domain.rules import RULES, evaluate, next_check
from domain.thresholds import Thresholds

log = logging.getLogger(__name__)

ORDER_EVENTS = Counter("inbox_order_events_total", "Order events by outcome", ["outcome"])
ISSUE_ACTIONS = Counter(
    "inbox_detector_actions_total", "Issue actions by kind and op", ["kind", "op"]
)
TIMERS = Counter("inbox_detector_timers_total", "Durable timers fired")
REFOLDS = Counter("inbox_detector_refolds_total", "States folded again from all events")

# How long a timer that failed with a bug waits before it is tried again.
_RETRY_BROKEN = timedelta(minutes=5)

# Location pings that moved the courier kept per order when the events are trimmed.
_KEEP_LOCATIONS = 20
# Events stored per order past which the next visit folds again and trims.
_TRIM_AT = 3 * _KEEP_LOCATIONS

_WATCH_COLUMNS = "order_id, state, fold_version, event_ids, stored_events, clear_since"


@dataclass(frozen=True)
class Ingested:
    accepted: int
    duplicates: int


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


def _decode(raw: bytes | str) -> list[OrderEvent]:
    events = []
    for stored in msgspec.json.decode(raw):
        try:
            events.append(validate(stored))
        except InvalidEvent:  # stored only after validation: corrupt row, say so loudly
            log.exception("a stored order event no longer validates: %s", stored)
            raise
    return events


@dataclass(frozen=True)
class _Seen:
    """An issue as the detector needs it, at one version of it."""

    version: int
    snapshot: IssueSnapshot
    detected_at: datetime

    @property
    def open(self) -> bool:
        return self.snapshot.status != "resolved"


@dataclass
class _Visit:
    """One order looked at in a batch: its watch row as locked, what the batch brought,
    and what the detector decided."""

    order_id: str
    clear_since: dict[str, datetime]
    event_ids: list[str]  # every event id seen, new ones included
    stored_events: int  # events in the row's list, before this visit
    new: list[OrderEvent] = field(default_factory=list)  # unseen events, in sort_key order
    state: OrderState | None = None
    refold: bool = False  # the state must be folded again from all the events
    events: list[OrderEvent] | None = None  # after a re-fold: the whole (trimmed) list
    broken: bool = False  # the row could not be read: only its timer is moved
    issue_ids: dict[str, UUID] = field(default_factory=dict)
    checks: dict[str, Any] | None = None
    outcome: tuple[dict[str, datetime], datetime | None] | None = None

    @property
    def contacts(self) -> list[OrderEvent]:
        return [e for e in self.new if e.type == "customer_contacted_support"]


def _visit_of(row: asyncpg.Record, incoming: list[OrderEvent]) -> _Visit:
    """The visit of a locked watch row: new events applied to the stored state when they
    come after it, or marked for a re-fold."""
    known = set(row["event_ids"])
    unseen = {e.event_id: e for e in incoming if e.event_id not in known}
    visit = _Visit(
        order_id=row["order_id"],
        clear_since={},
        event_ids=[*row["event_ids"], *unseen],
        stored_events=row["stored_events"],
        new=sorted(unseen.values(), key=sort_key),
    )
    try:
        visit.clear_since = msgspec.json.decode(row["clear_since"], type=dict[str, datetime])
        if row["state"] is None or row["fold_version"] != FOLD_VERSION:
            visit.refold = True
        else:
            state = msgspec.json.decode(row["state"], type=OrderState)
            last = state.last_event_at
            if visit.new and last is not None and visit.new[0].occurred_at <= last:
                visit.refold = True  # a late event: it belongs before some applied ones
            elif visit.stored_events + len(visit.new) > _TRIM_AT:
                visit.refold = True  # time to trim the pings
            else:
                for event in visit.new:
                    state = apply(state, event)
                visit.state = state
    except (msgspec.DecodeError, msgspec.ValidationError):
        log.exception("detector: the watch row of order %s is corrupt", row["order_id"])
        visit.broken = True
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
        # Issue states by id, each at a version: events never change, so an entry is
        # right for as long as the issue's latest version is the one it names.
        self._seen: LRUCache[UUID, _Seen] = LRUCache(maxsize=cached_issues)
        self._command_batch_size = command_batch_size
        self._issues = issues
        self._thresholds = thresholds
        self._clock = clock
        self._clear_for = timedelta(seconds=thresholds.clear_for_seconds)

    async def ingest(self, events: list[OrderEvent]) -> Ingested:
        """Apply validated events in one transaction: every order they name is locked (in
        order-id order, so replicas never deadlock), evaluated, and its issue commands are
        sent in one batch."""
        by_order: dict[str, list[OrderEvent]] = defaultdict(list)
        for event in events:
            by_order[event.order_id].append(event)
        order_ids = sorted(by_order)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO order_watch (order_id, events)"
                " SELECT id, '[]' FROM unnest($1::text[]) AS id ORDER BY id"
                " ON CONFLICT DO NOTHING",
                order_ids,
            )
            rows = await conn.fetch(
                f"SELECT {_WATCH_COLUMNS} FROM order_watch"
                " WHERE order_id = ANY($1) ORDER BY order_id FOR UPDATE",
                order_ids,
            )
            visits = [_visit_of(row, by_order[row["order_id"]]) for row in rows]
            await self._refold(conn, visits)
            await self._visit(conn, visits)
        corrupt = [
            (e.event_id, f"the watch row of order {e.order_id} is corrupt", _encode(e))
            for visit in visits
            if visit.broken
            for e in by_order[visit.order_id]
        ]
        if corrupt:  # kept aside until an operator repairs the row and replays them
            await self.park("detector", corrupt)
        accepted = sum(len(visit.new) for visit in visits if not visit.broken)
        duplicates = len(events) - accepted - len(corrupt)
        ORDER_EVENTS.labels("accepted").inc(accepted)
        ORDER_EVENTS.labels("duplicate").inc(duplicates)
        return Ingested(accepted, duplicates)

    async def park(self, source: str, rejected: Sequence[tuple[str | None, str, Any]]) -> None:
        """Keep events that could not be accepted where an operator can list and replay
        them (``dead_letters``), logged with their ids."""
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
                event = validate(msgspec.json.decode(letter["payload"]))
            except (msgspec.DecodeError, InvalidEvent) as exc:
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
            rows = await conn.fetch(
                f"SELECT {_WATCH_COLUMNS} FROM order_watch"
                " WHERE next_check_at <= $1 ORDER BY next_check_at LIMIT $2"
                " FOR UPDATE SKIP LOCKED",
                self._clock.now(),
                limit,
            )
            visits = [_visit_of(row, []) for row in rows]
            await self._refold(conn, visits)
            await self._visit(conn, visits)
        TIMERS.inc(len(rows))
        return len(rows)

    async def _refold(
        self, conn: asyncpg.Connection | PoolConnectionProxy, visits: list[_Visit]
    ) -> None:
        """Fold again, from all their events, the states marked for it (late events, a
        new fold version, a list due for trimming)."""
        due = [v for v in visits if v.refold and not v.broken]
        if not due:
            return
        REFOLDS.inc(len(due))
        stored: dict[str, list[OrderEvent]] = {}
        with_events = [v.order_id for v in due if v.stored_events]
        if with_events:
            for row in await conn.fetch(
                "SELECT order_id, events FROM order_watch WHERE order_id = ANY($1)", with_events
            ):
                try:
                    stored[row["order_id"]] = _decode(row["events"])
                except (msgspec.DecodeError, InvalidEvent):
                    log.exception("detector: the events of order %s are corrupt", row["order_id"])
        for visit in due:
            if visit.stored_events and visit.order_id not in stored:
                visit.broken = True
                continue
            visit.events = trim([*stored.get(visit.order_id, []), *visit.new], _KEEP_LOCATIONS)
            visit.state = fold(visit.events)

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
        commands: list[tuple[OrderState, Action]] = []
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
            snapshots = {kind: seen.snapshot for kind, seen in issues.items()}
            decided = plan(state, visit.checks, snapshots, visit.clear_since, now, self._clear_for)
            actions = list(decided.actions)
            open_issues = [seen for seen in issues.values() if seen.open]
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
                if open_issues:
                    actions += contact_escalations(snapshots)
                else:
                    log.info("missed detection: order %s contacted support", state.order_id)
            commands += [(state, action) for action in actions]
            times = [t for t in (next_check(visit.checks), decided.recheck_at) if t is not None]
            visit.outcome = (decided.clear_since, min(times) if times else None)
        if contact_rows:
            await conn.executemany(
                "INSERT INTO support_contacts (event_id, order_id, contacted_at, detected,"
                " first_detected_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                contact_rows,
            )
        if commands:
            await self._send(commands)
        await self._store(conn, visits)

    async def _issues_of(
        self, conn: asyncpg.Connection | PoolConnectionProxy, issue_ids: list[UUID]
    ) -> dict[UUID, _Seen]:
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
        found: dict[UUID, _Seen] = {}
        stale: set[UUID] = set()
        for row in latest:
            seen = self._seen.get(row["originator_id"])
            if seen is not None and seen.version == row["version"]:
                found[row["originator_id"]] = seen
            else:
                stale.add(row["originator_id"])
        if stale:
            for issue_id, issue in (
                await anyio.to_thread.run_sync(self._issues.current, stale)
            ).items():
                snapshot = IssueSnapshot(issue.status, issue.severity, issue.resolved_by)
                found[issue_id] = self._seen[issue_id] = _Seen(
                    issue.version, snapshot, issue.detected_at
                )
        return found

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
            thresholds = self._thresholds.for_order(visit.state.vertical, visit.state.country)
            visit.checks = evaluate(visit.state, now, thresholds)
        except (ValueError, KeyError, TypeError, AssertionError):
            # A bug: log it, keep the order's events, look again in a while.
            log.exception("detector: evaluating order %s failed", visit.order_id)
            visit.outcome = (visit.clear_since, now + _RETRY_BROKEN)
            return
        visit.issue_ids = {kind: issue_id_for(visit.order_id, kind) for kind in RULES}

    async def _send(self, commands: list[tuple[OrderState, Action]]) -> None:
        """Every command, at most ``command_batch_size`` per ``save()`` (the library hangs
        on a very large insert). A crash between two saves leaves the watch rows
        unwritten: the next look derives the rest from the issues as they then stand."""
        outcomes: list[Outcome] = []
        size = self._command_batch_size
        for start in range(0, len(commands), size):
            outcomes += await anyio.to_thread.run_sync(
                self._issues.execute_batch,
                [self._command(s, a) for s, a in commands[start : start + size]],
            )
        for (state, action), outcome in zip(commands, outcomes, strict=True):
            if isinstance(outcome, CommandResult):
                ISSUE_ACTIONS.labels(action.kind, action.op).inc()
            else:
                # An agent acted in between, or a replica did: the next evaluation
                # starts from the issue as it now stands.
                log.info(
                    "detector %s on %s/%s: %s", action.op, state.order_id, action.kind, outcome
                )

    async def _store(
        self, conn: asyncpg.Connection | PoolConnectionProxy, visits: list[_Visit]
    ) -> None:
        """Write the visited rows back: the state, the new event ids, the events (the new
        ones appended, or the whole list after a re-fold), the clear-since times and the
        next timer. A broken row keeps everything but its timer."""
        rows = []
        retries = []
        for visit in visits:
            assert visit.outcome is not None
            clear_since, next_at = visit.outcome
            if visit.broken:
                retries.append((visit.order_id, next_at))
                continue
            if visit.events is not None:
                mode, events, count = "replace", visit.events, len(visit.events)
            else:
                mode = "append" if visit.new else "keep"
                events, count = visit.new, visit.stored_events + len(visit.new)
            rows.append(
                (
                    visit.order_id,
                    mode,
                    msgspec.json.encode([_encode(e) for e in events]).decode(),
                    count,
                    visit.event_ids,
                    None if visit.state is None else msgspec.json.encode(visit.state).decode(),
                    FOLD_VERSION,
                    msgspec.json.encode(clear_since).decode(),
                    next_at,
                )
            )
        if rows:
            await conn.executemany(
                "UPDATE order_watch SET"
                " events = CASE $2::text WHEN 'replace' THEN $3::jsonb"
                " WHEN 'append' THEN events || $3::jsonb ELSE events END,"
                " stored_events = $4, event_ids = $5, state = $6::jsonb, fold_version = $7,"
                " clear_since = $8::jsonb, next_check_at = $9, updated_at = now()"
                " WHERE order_id = $1",
                rows,
            )
        if retries:
            await conn.executemany(
                "UPDATE order_watch SET next_check_at = $2 WHERE order_id = $1", retries
            )

    def _command(self, state: OrderState, action: Action) -> Command:
        issue_id = issue_id_for(state.order_id, action.kind)
        if action.op == "detect":
            assert action.severity is not None

            def create(at: datetime) -> OrderIssue:
                return OrderIssue.detect(
                    order_id=state.order_id,
                    kind=action.kind,
                    severity=action.severity or "low",
                    vertical=state.vertical,
                    country=state.country,
                    city=state.city,
                    evidence=action.evidence,
                    at=at,
                )

            return Command(issue_id, "detect", create=create)
        if action.op == "escalate":
            return Command(
                issue_id,
                "escalate",
                act=lambda issue, at: issue.escalate(
                    severity=action.severity or "low", evidence=action.evidence, at=at, by="system"
                ),
            )
        if action.op == "reopen":
            return Command(
                issue_id,
                "reopen",
                act=lambda issue, at: issue.reopen(reason=action.reason, at=at, by="system"),
            )
        return Command(
            issue_id,
            "resolve",
            act=lambda issue, at: issue.resolve(
                resolution="fixed", note=action.reason, at=at, by="system", resolved_by="system"
            ),
        )


def _clear_since(raw: bytes | str) -> dict[str, datetime]:
    return msgspec.json.decode(raw, type=dict[str, datetime])
