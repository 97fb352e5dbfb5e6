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
from app.service import Command, CommandResult, IssueService
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


class Detector:
    def __init__(
        self, *, pool: asyncpg.Pool, issues: IssueService, thresholds: Thresholds, clock: Clock
    ) -> None:
        self._pool = pool
        self._issues = issues
        self._thresholds = thresholds
        self._clock = clock
        self._clear_for = timedelta(seconds=thresholds.clear_for_seconds)

    async def ingest(self, events: list[OrderEvent]) -> Ingested:
        """Apply validated events; each order in a transaction of its own."""
        by_order: dict[str, list[OrderEvent]] = defaultdict(list)
        for event in events:
            by_order[event.order_id].append(event)
        accepted = duplicates = 0
        for order_id in sorted(by_order):
            new, repeated = await self._ingest_order(order_id, by_order[order_id])
            accepted += new
            duplicates += repeated
        ORDER_EVENTS.labels("accepted").inc(accepted)
        ORDER_EVENTS.labels("duplicate").inc(duplicates)
        return Ingested(accepted, duplicates)

    async def _ingest_order(self, order_id: str, incoming: list[OrderEvent]) -> tuple[int, int]:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO order_watch (order_id, events) VALUES ($1, '[]')"
                " ON CONFLICT DO NOTHING",
                order_id,
            )
            row = await conn.fetchrow(
                "SELECT events, clear_since FROM order_watch WHERE order_id = $1 FOR UPDATE",
                order_id,
            )
            assert row is not None
            stored = _decode(row["events"])
            known = {e.event_id for e in stored}
            new: list[OrderEvent] = []
            for event in incoming:
                if event.event_id not in known:
                    known.add(event.event_id)
                    new.append(event)
            events = _trim(stored + new)
            state = fold(events)
            assert state is not None
            contacts = [e for e in new if e.type == "customer_contacted_support"]
            clear_since, next_at = await self._evaluate(
                conn, state, _clear_since(row["clear_since"]), contacts
            )
            await conn.execute(
                "UPDATE order_watch SET events = $2::jsonb, clear_since = $3::jsonb,"
                " next_check_at = $4, updated_at = now() WHERE order_id = $1",
                order_id,
                msgspec.json.encode([_encode(e) for e in events]).decode(),
                msgspec.json.encode(clear_since).decode(),
                next_at,
            )
        return len(new), len(incoming) - len(new)

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
        """Evaluate up to ``limit`` orders whose timer is due; how many were."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT order_id, events, clear_since FROM order_watch"
                " WHERE next_check_at <= $1 ORDER BY next_check_at LIMIT $2"
                " FOR UPDATE SKIP LOCKED",
                self._clock.now(),
                limit,
            )
            for row in rows:
                try:
                    async with conn.transaction():  # a savepoint: one bad order stays alone
                        await self._fire(conn, row)
                except (InvalidEvent, ValueError, KeyError, AssertionError):
                    # A bug or a corrupt row: log it, look again in a while, keep going.
                    log.exception("detector: timer of order %s failed", row["order_id"])
                    await conn.execute(
                        "UPDATE order_watch SET next_check_at = $2 WHERE order_id = $1",
                        row["order_id"],
                        self._clock.now() + _RETRY_BROKEN,
                    )
        TIMERS.inc(len(rows))
        return len(rows)

    async def _fire(self, conn: asyncpg.Connection | PoolConnectionProxy, row: Any) -> None:
        state = fold(_decode(row["events"]))
        next_at = None
        clear_since: dict[str, datetime] = {}
        if state is not None:
            clear_since, next_at = await self._evaluate(
                conn, state, _clear_since(row["clear_since"]), []
            )
        await conn.execute(
            "UPDATE order_watch SET clear_since = $2::jsonb, next_check_at = $3,"
            " updated_at = now() WHERE order_id = $1",
            row["order_id"],
            msgspec.json.encode(clear_since).decode(),
            next_at,
        )

    async def _evaluate(
        self,
        conn: asyncpg.Connection | PoolConnectionProxy,
        state: OrderState,
        clear_since: dict[str, datetime],
        contacts: list[OrderEvent],
    ) -> tuple[dict[str, datetime], datetime | None]:
        now = self._clock.now()
        checks = evaluate(state, now, self._thresholds.for_order(state.vertical, state.country))
        ids = {kind: issue_id_for(state.order_id, kind) for kind in RULES}
        current = await anyio.to_thread.run_sync(self._issues.current, set(ids.values()))
        issues = {kind: current[i] for kind, i in ids.items() if i in current}
        snapshots = {
            k: IssueSnapshot(i.status, i.severity, i.resolved_by) for k, i in issues.items()
        }
        decided = plan(state, checks, snapshots, clear_since, now, self._clear_for)
        actions = list(decided.actions)
        for contact in contacts:
            open_issues = [i for i in issues.values() if i.status != "resolved"]
            await conn.execute(
                "INSERT INTO support_contacts (event_id, order_id, contacted_at, detected,"
                " first_detected_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                contact.event_id,
                state.order_id,
                contact.occurred_at,
                bool(open_issues),
                min((i.detected_at for i in open_issues), default=None),
            )
            if open_issues:
                actions += contact_escalations(snapshots)
            else:
                log.info("missed detection: order %s contacted support", state.order_id)
        if actions:
            commands = [self._command(state, action) for action in actions]
            outcomes = await anyio.to_thread.run_sync(self._issues.execute_batch, commands)
            for action, outcome in zip(actions, outcomes, strict=True):
                if isinstance(outcome, CommandResult):
                    ISSUE_ACTIONS.labels(action.kind, action.op).inc()
                else:
                    # An agent acted in between, or a replica did: the next evaluation
                    # starts from the issue as it now stands.
                    log.info(
                        "detector %s on %s/%s: %s", action.op, state.order_id, action.kind, outcome
                    )
        times = [t for t in (next_check(checks), decided.recheck_at) if t is not None]
        return decided.clear_since, min(times) if times else None

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
