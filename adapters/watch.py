"""The detector's storage in PostgreSQL: watch rows and durable timers (``order_watch``),
each order's events (``order_events``), support contacts, the issues' current versions
(``inbox_events``) and the retention sweep.

A batch is one transaction: :meth:`PostgresWatchStore.lock` locks the watch rows of the
orders a batch of events names (created where missing), :meth:`PostgresWatchStore.claim_due`
claims the rows whose timer is due (``SKIP LOCKED``, so replicas share them); everything
the batch reads and writes goes through the :class:`PostgresWatchBatch` it yields, on that
transaction, and is committed when the block ends (rolled back when it raises). The values
in and out are plain: the watch row's JSON columns are encoded and decoded here.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

from adapters.postgres import raises_unavailable
from domain.order import FOLD_VERSION, OrderEvent, OrderState

log = logging.getLogger(__name__)


class WatchRow(msgspec.Struct, frozen=True):
    """An order's watch row as locked. ``state`` is None when it must be folded again
    from the order's events (none stored, another fold version, unreadable); a row whose
    ``clear_since`` or ``pending`` cannot be read comes back without them (logged)."""

    order_id: str
    state: OrderState | None
    clear_since: dict[str, datetime]
    # Customer contacts whose escalations have not all landed yet.
    pending: list[str]
    created: bool = False  # created by this batch: the order had nothing stored before


class WatchUpdate(msgspec.Struct, frozen=True):
    """What a batch writes back to an order's watch row."""

    order_id: str
    state: OrderState | None
    clear_since: dict[str, datetime]
    next_check_at: datetime | None
    pending: list[str]


class BrokenOrder(msgspec.Struct, frozen=True):
    """An order with a stored event that cannot be read: its state is dropped (so that
    every later look folds again) and it is looked at again at ``next_check_at``."""

    order_id: str
    next_check_at: datetime | None


class StoredEvent(msgspec.Struct, frozen=True):
    order_id: str
    body: str  # the event as JSON, as it was stored (see event_body)


class SupportContact(msgspec.Struct, frozen=True):
    """A customer's contact with support, and whether an issue of the order was open."""

    event_id: str
    order_id: str
    contacted_at: datetime
    detected: bool
    first_detected_at: datetime | None
    # The order's: who may count it (the KPI in a caller's scope).
    vertical: str | None = None
    country: str | None = None


class SweptWatch(msgspec.Struct, frozen=True):
    orders: int
    events: int
    contacts: int


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


def event_body(event: OrderEvent) -> str:
    """An order event as JSON, the way ``order_events`` keeps it."""
    return msgspec.json.encode(
        {
            "event_id": event.event_id,
            "type": event.type,
            "order_id": event.order_id,
            "occurred_at": event.occurred_at,
            "vertical": event.vertical,
            "country": event.country,
            "city": event.city,
            "data": event.data,
        }
    ).decode()


def _row(record: asyncpg.Record, *, created: bool) -> WatchRow:
    order_id = record["order_id"]
    clear_since: dict[str, datetime] = {}
    pending: list[str] = []
    try:
        clear_since = _CLEAR_SINCE.decode(record["clear_since"])
        pending = _PENDING.decode(record["pending_contacts"])
    except (msgspec.DecodeError, msgspec.ValidationError):
        log.exception("detector: order %s: unreadable watch row, starting over", order_id)
    state = None
    if not created and record["state"] is not None and record["fold_version"] == FOLD_VERSION:
        try:
            state = _STATE.decode(record["state"])
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.exception("detector: order %s: unreadable state, folding again", order_id)
    return WatchRow(order_id, state, clear_since, pending, created)


@raises_unavailable
class PostgresWatchBatch:
    """One detector transaction on locked watch rows (see the module docstring)."""

    def __init__(self, conn: asyncpg.Connection | PoolConnectionProxy, rows: list[WatchRow]):
        self._conn = conn
        self.rows = rows

    async def insert_events(self, events: Sequence[OrderEvent]) -> set[tuple[str, str]]:
        """Store ``events`` (each (order, event id) once); the (order id, event id) of
        those not stored before."""
        inserted = await self._conn.fetch(
            "INSERT INTO order_events (order_id, event_id, body)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[])"
            " ON CONFLICT DO NOTHING RETURNING order_id, event_id",
            [e.order_id for e in events],
            [e.event_id for e in events],
            [event_body(e) for e in events],
        )
        return {(row["order_id"], row["event_id"]) for row in inserted}

    async def events_of(self, order_ids: Collection[str]) -> list[StoredEvent]:
        """Every stored event of ``order_ids``, in no particular order."""
        rows = await self._conn.fetch(
            "SELECT order_id, body FROM order_events WHERE order_id = ANY($1)", list(order_ids)
        )
        return [StoredEvent(row["order_id"], row["body"]) for row in rows]

    async def issue_versions(self, issue_ids: Sequence[UUID]) -> dict[UUID, int]:
        """The latest stored version of each issue among ``issue_ids`` that exists."""
        if not issue_ids:
            return {}
        latest = await self._conn.fetch(
            "SELECT originator_id, max(originator_version) AS version FROM inbox_events"
            " WHERE originator_id = ANY($1::uuid[]) GROUP BY originator_id",
            issue_ids,
        )
        return {row["originator_id"]: row["version"] for row in latest}

    async def record_contacts(self, contacts: Sequence[SupportContact]) -> None:
        """Keep each contact once (a contact seen again changes nothing)."""
        if contacts:
            await self._conn.executemany(
                "INSERT INTO support_contacts (event_id, order_id, contacted_at, detected,"
                " first_detected_at, vertical, country) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                " ON CONFLICT DO NOTHING",
                [
                    (
                        c.event_id,
                        c.order_id,
                        c.contacted_at,
                        c.detected,
                        c.first_detected_at,
                        c.vertical,
                        c.country,
                    )
                    for c in contacts
                ],
            )

    async def store(self, updates: Sequence[WatchUpdate], broken: Sequence[BrokenOrder]) -> None:
        """Write the watch rows back (one statement), then drop the state of the broken."""
        if updates:
            await self._conn.execute(
                "UPDATE order_watch AS w SET state = u.state, fold_version = $6,"
                " clear_since = u.clear_since, next_check_at = u.next_at,"
                " pending_contacts = u.pending, updated_at = now()"
                " FROM unnest($1::text[], $2::jsonb[], $3::jsonb[], $4::timestamptz[],"
                " $5::jsonb[]) AS u(order_id, state, clear_since, next_at, pending)"
                " WHERE w.order_id = u.order_id",
                [u.order_id for u in updates],
                [
                    None if u.state is None else msgspec.json.encode(u.state).decode()
                    for u in updates
                ],
                [msgspec.json.encode(u.clear_since).decode() for u in updates],
                [u.next_check_at for u in updates],
                [msgspec.json.encode(u.pending).decode() for u in updates],
                FOLD_VERSION,
            )
        if broken:
            await self._conn.executemany(
                # No state: every later visit folds again (and says why it cannot).
                "UPDATE order_watch SET state = NULL, next_check_at = $2 WHERE order_id = $1",
                [(b.order_id, b.next_check_at) for b in broken],
            )


@raises_unavailable
class PostgresWatchStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @asynccontextmanager
    async def lock(self, order_ids: Sequence[str]) -> AsyncIterator[PostgresWatchBatch]:
        """A transaction holding the watch rows of ``order_ids`` (sorted), created where
        missing, all locked by one statement in that order (``DO UPDATE ... WHERE false``
        locks a row it leaves alone), so that two batches never wait for each other in a
        circle. A row the retention sweep deletes meanwhile is inserted afresh once the
        sweep commits."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(_CUSTOM_PLANS)
            created = await conn.fetch(
                "INSERT INTO order_watch (order_id)"
                " SELECT id FROM unnest($1::text[]) AS id ORDER BY id"
                " ON CONFLICT (order_id) DO UPDATE SET order_id = excluded.order_id WHERE false"
                " RETURNING order_id",
                order_ids,
            )
            new = {row["order_id"] for row in created}
            rows = await conn.fetch(
                f"SELECT {_WATCH_COLUMNS} FROM order_watch WHERE order_id = ANY($1)"
                " ORDER BY order_id",
                order_ids,
            )
            yield PostgresWatchBatch(
                conn, [_row(row, created=row["order_id"] in new) for row in rows]
            )

    @asynccontextmanager
    async def claim_due(self, now: datetime, limit: int) -> AsyncIterator[PostgresWatchBatch]:
        """A transaction holding up to ``limit`` watch rows whose timer is due at ``now``,
        earliest first, skipping rows another transaction holds."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(_CUSTOM_PLANS)
            rows = await conn.fetch(
                f"SELECT {_WATCH_COLUMNS} FROM order_watch"
                " WHERE next_check_at <= $1 ORDER BY next_check_at LIMIT $2"
                " FOR UPDATE SKIP LOCKED",
                now,
                limit,
            )
            yield PostgresWatchBatch(conn, [_row(row, created=False) for row in rows])

    async def sweep(self, *, orders: timedelta, contacts: timedelta, batch: int) -> SweptWatch:
        """Delete the watch rows and events of orders unchanged for ``orders`` and the
        support contacts older than ``contacts``, ``batch`` rows per statement (short
        locks, replicas skip each other's rows)."""
        swept_orders = swept_events = 0
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
                    orders,
                    batch,
                )
                assert row is not None
                swept_orders += row["orders"]
                swept_events += row["events"]
                if row["orders"] < batch:
                    break
            swept_contacts = await delete_older(
                conn, "support_contacts", "event_id", "contacted_at", contacts, batch
            )
        return SweptWatch(swept_orders, swept_events, swept_contacts)


async def delete_older(
    conn: asyncpg.Connection | PoolConnectionProxy,
    table: str,
    key: str,
    column: str,
    keep: timedelta,
    batch: int,
) -> int:
    """Delete the rows of ``table`` whose ``column`` is older than ``keep``, ``batch`` rows
    per statement, skipping rows others hold; how many."""
    deleted = 0
    while True:
        status = await conn.execute(
            f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table}"
            f" WHERE {column} < now() - $1::interval LIMIT $2 FOR UPDATE SKIP LOCKED)",
            keep,
            batch,
        )
        count = int(status.split()[-1])  # "DELETE <n>"
        deleted += count
        if count < batch:
            return deleted
