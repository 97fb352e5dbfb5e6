"""The detector: order events in, issue commands out, durable timers in between.

For each order it keeps a watch row (``order_watch``): the order's events, deduplicated by
event id, from which the state is folded in ``occurred_at`` order; since when each open
issue's condition has been clear; and the order's next timer. Ingesting events and firing
a timer both end the same way: fold, run the rules (``domain/rules.py``), plan the issue
actions (``domain/detection.py``) against the issues as they stand, send the commands,
store the new watch row. The row is locked (``FOR UPDATE``) meanwhile, so replicas never
work on one order at once; due timers are claimed with ``SKIP LOCKED``, so replicas share
them. Everything is derived from state, so a redelivered event or a re-fired timer asks
for nothing twice.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio.to_thread
import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy
from prometheus_client import Counter

from adapters.clock import Clock
from app.ingest import InvalidEvent, validate
from app.service import Command, CommandResult, IssueService, Outcome
from domain.detection import Action, IssueSnapshot, contact_escalations, plan
from domain.issue import OrderIssue, issue_id_for
from domain.order import STATIONARY_RADIUS_METRES, OrderEvent, OrderState, fold, metres
from domain.rules import RULES, evaluate, next_check
from domain.thresholds import Thresholds

log = logging.getLogger(__name__)

ORDER_EVENTS = Counter("inbox_order_events_total", "Order events by outcome", ["outcome"])
ISSUE_ACTIONS = Counter(
    "inbox_detector_actions_total", "Issue actions by kind and op", ["kind", "op"]
)
TIMERS = Counter("inbox_detector_timers_total", "Durable timers fired")

# How long a timer that failed with a bug waits before it is tried again.
_RETRY_BROKEN = timedelta(minutes=5)

# Location pings kept per order: enough to tell a stationary courier, bounded in size.
_KEEP_LOCATIONS = 20


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


def _trim(events: list[OrderEvent]) -> list[OrderEvent]:
    """Bound the location pings kept: the ones that moved the courier (the last
    ``_KEEP_LOCATIONS`` of them) and the newest. A ping that did not move changes nothing
    but the newest position, so a courier standing still for an hour is still seen as
    standing still since the last ping that moved them."""
    pings = sorted((e for e in events if e.type == "courier_location"), key=_when)
    moved: list[OrderEvent] = []
    last: tuple[float, float] | None = None
    for ping in pings:
        position = (float(ping.data["lat"]), float(ping.data["lon"]))
        if last is None or metres(last, position) >= STATIONARY_RADIUS_METRES:
            moved.append(ping)
            last = position
    keep = {e.event_id for e in moved[-_KEEP_LOCATIONS:]}
    if pings:
        keep.add(pings[-1].event_id)
    return [e for e in events if e.type != "courier_location" or e.event_id in keep]


def _when(event: OrderEvent) -> tuple[datetime, str]:
    return (event.occurred_at, event.event_id)


@dataclass
class _Visit:
    """One order looked at in a batch: its row as locked, and what the batch brought."""

    order_id: str
    events: list[OrderEvent]
    clear_since: dict[str, datetime]
    contacts: list[OrderEvent]  # customer contacts new in this batch
    store_events: bool  # the event list changed and must be written back
    state: OrderState | None = None
    checks: dict[str, Any] | None = None
    outcome: tuple[dict[str, datetime], datetime | None] | None = None


class Detector:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        issues: IssueService,
        thresholds: Thresholds,
        clock: Clock,
        command_batch_size: int = 100,
    ) -> None:
        self._pool = pool
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
        accepted = 0
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO order_watch (order_id, events)"
                " SELECT id, '[]' FROM unnest($1::text[]) AS id ORDER BY id"
                " ON CONFLICT DO NOTHING",
                order_ids,
            )
            rows = await conn.fetch(
                "SELECT order_id, events, clear_since FROM order_watch"
                " WHERE order_id = ANY($1) ORDER BY order_id FOR UPDATE",
                order_ids,
            )
            visits = []
            corrupt: list[tuple[str | None, str, Any]] = []
            for row in rows:
                try:
                    stored = _decode(row["events"])
                except InvalidEvent:  # logged by _decode; the order's new events wait aside
                    corrupt += [
                        (e.event_id, f"watch row of order {e.order_id} is corrupt", _encode(e))
                        for e in by_order[row["order_id"]]
                    ]
                    continue
                known = {e.event_id for e in stored}
                new: list[OrderEvent] = []
                for event in by_order[row["order_id"]]:
                    if event.event_id not in known:
                        known.add(event.event_id)
                        new.append(event)
                accepted += len(new)
                visits.append(
                    _Visit(
                        order_id=row["order_id"],
                        events=_trim(stored + new) if new else stored,
                        clear_since=_clear_since(row["clear_since"]),
                        contacts=[e for e in new if e.type == "customer_contacted_support"],
                        store_events=bool(new),
                    )
                )
            await self._visit(conn, visits)
        if corrupt:
            await self.park("detector", corrupt)
        duplicates = len(events) - accepted - len(corrupt)
        ORDER_EVENTS.labels("accepted").inc(accepted)
        ORDER_EVENTS.labels("duplicate").inc(duplicates)
        return Ingested(accepted, duplicates)

    async def park(self, source: str, rejected: list[tuple[str | None, str, Any]]) -> None:
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
                "SELECT order_id, events, clear_since FROM order_watch"
                " WHERE next_check_at <= $1 ORDER BY next_check_at LIMIT $2"
                " FOR UPDATE SKIP LOCKED",
                self._clock.now(),
                limit,
            )
            visits = []
            for row in rows:
                try:
                    events = _decode(row["events"])
                except InvalidEvent:  # logged by _decode: a corrupt row; look again later
                    broken = _Visit(row["order_id"], [], {}, [], store_events=False)
                    broken.outcome = ({}, self._clock.now() + _RETRY_BROKEN)
                    visits.append(broken)
                    continue
                visits.append(
                    _Visit(
                        order_id=row["order_id"],
                        events=events,
                        clear_since=_clear_since(row["clear_since"]),
                        contacts=[],
                        store_events=False,
                    )
                )
            await self._visit(conn, visits)
        TIMERS.inc(len(rows))
        return len(rows)

    async def _visit(
        self, conn: asyncpg.Connection | PoolConnectionProxy, visits: list[_Visit]
    ) -> None:
        """Fold, evaluate and plan every visited order; record its customer contacts; send
        all their issue commands as one batch; write every watch row back."""
        now = self._clock.now()
        for visit in visits:
            if visit.outcome is None:
                self._evaluate(visit, now)
        evaluated = [v for v in visits if v.outcome is None]
        ids = {issue_id_for(v.order_id, kind) for v in evaluated for kind in RULES}
        current = await anyio.to_thread.run_sync(self._issues.current, ids) if ids else {}
        commands: list[tuple[OrderState, Action]] = []
        contact_rows: list[tuple[str, str, datetime, bool, datetime | None]] = []
        for visit in evaluated:
            assert visit.state is not None
            assert visit.checks is not None
            state = visit.state
            issues = {
                kind: issue
                for kind in RULES
                if (issue := current.get(issue_id_for(state.order_id, kind))) is not None
            }
            snapshots = {
                k: IssueSnapshot(i.status, i.severity, i.resolved_by) for k, i in issues.items()
            }
            decided = plan(state, visit.checks, snapshots, visit.clear_since, now, self._clear_for)
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

    def _evaluate(self, visit: _Visit, now: datetime) -> None:
        try:
            visit.state = fold(visit.events)
            if visit.state is None:
                visit.outcome = ({}, None)
                return
            thresholds = self._thresholds.for_order(visit.state.vertical, visit.state.country)
            visit.checks = evaluate(visit.state, now, thresholds)
        except (ValueError, KeyError, TypeError, AssertionError):
            # A bug or a corrupt row: log it, keep its events, look again in a while.
            log.exception("detector: evaluating order %s failed", visit.order_id)
            visit.outcome = (visit.clear_since, now + _RETRY_BROKEN)

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
        rows = []
        for visit in visits:
            assert visit.outcome is not None
            clear_since, next_at = visit.outcome
            events = (
                msgspec.json.encode([_encode(e) for e in visit.events]).decode()
                if visit.store_events
                else None
            )
            rows.append(
                (visit.order_id, events, msgspec.json.encode(clear_since).decode(), next_at)
            )
        await conn.executemany(
            "UPDATE order_watch SET events = coalesce($2::jsonb, events),"
            " clear_since = $3::jsonb, next_check_at = $4, updated_at = now()"
            " WHERE order_id = $1",
            rows,
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
