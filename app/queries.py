"""Reads of the read models: the inbox list with filters, sorts and keyset cursors, one
issue, one order, the counts, the detection KPI's contacts, the progress ``/ready`` reports;
and waiting for a projection to reach a position (read-your-writes). Every SQL the HTTP
layer needs is here."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Annotated, Any, Literal, get_args
from uuid import UUID

import asyncpg
import msgspec

from adapters import postgres
from app.edge import Name, QueryText
from app.scope import EVERYWHERE, Scope
from domain.order import OrderState
from domain.values import Severity, Status
from projections.follower import POSITIONS_CHANNEL
from projections.inbox import COLUMNS as INBOX_COLUMNS

log = logging.getLogger(__name__)

Sort = Literal["priority", "detected_at", "updated_at"]
# The dimensions the counts are given by (GET /api/stats: by_status, by_severity, ...).
COUNTED = ("status", "severity", "kind", "vertical", "country", "city")
_CHANGING = ("status", "severity", "assignee")


# The support contacts of a window (``$1`` ≤ contacted_at < ``$2``) as the detection KPI
# tells them apart (GET /api/detection/kpi, and the dashboard's timeline): an order has a
# problem when it has an issue agents did not resolve as a false positive; a contact on it
# was detected (an issue was open then) or missed; on any other order it is about nothing
# the inbox knows of. `lead`: minutes the inbox knew before the contact. The order's
# issues share its vertical and country: the contact's own bound them. Callers append
# ``AND <their conditions on c>``.
CONTACTS = (
    "SELECT c.contacted_at, c.detected,"
    " greatest(extract(epoch FROM c.contacted_at - c.first_detected_at) / 60, 0) AS lead,"
    " EXISTS (SELECT 1 FROM inbox_issues AS i WHERE i.order_id = c.order_id"
    "  AND i.resolution IS DISTINCT FROM 'false_positive') AS problem"
    " FROM support_contacts AS c WHERE c.contacted_at >= $1 AND c.contacted_at < $2"
)


class InvalidQuery(Exception):
    """A cursor that cannot be answered: 400 naming the parameter."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


@dataclass(frozen=True)
class Filters:
    """The inbox's filters (CONTRACT §5), the one declaration of them: each field is a
    column of ``inbox_issues`` matched against any of its values, and a repeatable query
    parameter of the same name taking values of its type (``app/http/reads.filters``).
    ``scope`` is the caller's (CONTRACT §6), from its token, not a query parameter: it
    bounds what the other filters can match (a filter outside it matches nothing)."""

    status: tuple[Status, ...] = ()
    severity: tuple[Severity, ...] = ()
    kind: tuple[Name, ...] = ()
    vertical: tuple[Name, ...] = ()
    country: tuple[QueryText, ...] = ()
    city: tuple[QueryText, ...] = ()
    assignee: tuple[QueryText, ...] = ()
    order_id: tuple[QueryText, ...] = ()
    scope: Scope = field(default=EVERYWHERE, metadata={"query": False})

    def where(self, params: list[Any]) -> str:
        """A SQL condition (appending its parameters). Without a status filter, resolved
        issues are left out (the inbox's default view)."""
        clauses = []
        if not self.status:
            clauses.append("status <> 'resolved'")
        for name in FILTER_NAMES:
            values = getattr(self, name)
            if values:
                params.append(list(values))
                clauses.append(f"{name} = ANY(${len(params)}::text[])")
        if not self.scope.everywhere:
            clauses.append(in_scope(self.scope, params))
        return " AND ".join(clauses) or "TRUE"

    def fixed_only(self) -> Filters:
        """These filters without the ones on fields that change (status, severity,
        assignee): what an issue matches once matches for good."""
        return Filters(**{**self.__dict__, **dict.fromkeys(_CHANGING, ())})

    def matches_changing(self, row: asyncpg.Record) -> bool:
        """Whether an issue's row passes the filters on fields that change (an empty one
        passes anything; the feed has no default status)."""
        return all(
            not getattr(self, name) or row[name] in getattr(self, name) for name in _CHANGING
        )

    @property
    def dimensions_only(self) -> bool:
        """True when the counts table alone can answer (no assignee or order filter)."""
        return not self.assignee and not self.order_id


# The filters a client gives (query parameters), in declaration order.
FILTER_NAMES = tuple(f.name for f in fields(Filters) if f.metadata.get("query", True))


def in_scope(
    scope: Scope, params: list[Any], *, vertical: str = "vertical", country: str = "country"
) -> str:
    """A SQL condition (appending its parameters) true for rows whose ``vertical`` and
    ``country`` (column names, or expressions) are in ``scope``. A NULL one is outside
    any bounded scope."""
    clauses = []
    for column, allowed in ((vertical, scope.verticals), (country, scope.countries)):
        if allowed is not None:
            params.append(sorted(allowed))
            clauses.append(f"{column} = ANY(${len(params)}::text[])")
    return " AND ".join(clauses) or "TRUE"


_SORTS: dict[str, tuple[str, str]] = {
    # sort: (ORDER BY, keyset condition on $a, $b, $c)
    "priority": (
        "priority DESC, detected_at ASC, issue_id ASC",
        "(priority < {a} OR (priority = {a} AND (detected_at, issue_id) > ({b}, {c})))",
    ),
    "detected_at": ("detected_at DESC, issue_id DESC", "(detected_at, issue_id) < ({b}, {c})"),
    "updated_at": ("updated_at DESC, issue_id DESC", "(updated_at, issue_id) < ({b}, {c})"),
}


class _Cursor(msgspec.Struct, array_like=True):
    sort: str
    priority: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
    at: datetime
    issue_id: UUID


def encode_cursor(sort: str, row: asyncpg.Record) -> str:
    at = row["detected_at"] if sort in ("priority", "detected_at") else row["updated_at"]
    raw = msgspec.json.encode(_Cursor(sort, row["priority"], at, row["issue_id"]))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> _Cursor:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        decoded = msgspec.json.decode(raw, type=_Cursor)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise InvalidQuery("cursor", "not a cursor this API gave out") from None
    if decoded.sort != sort:
        raise InvalidQuery("cursor", f"was given for sort={decoded.sort}, not sort={sort}")
    return decoded


# The columns the API shows (an issue's SLA minutes show as its due_at).
_SELECT = ", ".join(c for c in INBOX_COLUMNS if c not in ("status_before_snooze", "sla_minutes"))


@postgres.raises_unavailable
@dataclass
class ReadModels:
    """The read models' queries; each raises ``DatabaseUnavailable`` when the database is
    gone, never a driver's error."""

    pool: asyncpg.Pool

    async def issues(
        self, filters: Filters, sort: str, limit: int, cursor: str | None
    ) -> tuple[list[asyncpg.Record], str | None]:
        order_by, keyset = _SORTS[sort]
        params: list[Any] = []
        where = filters.where(params)
        if cursor is not None:
            after = decode_cursor(cursor, sort)
            if sort == "priority":
                params.append(after.priority)
            params += [after.at, after.issue_id]
            n = len(params)
            where += " AND " + keyset.format(a=f"${n - 2}", b=f"${n - 1}", c=f"${n}")
        params.append(limit + 1)
        records = await self.pool.fetch(
            f"SELECT {_SELECT} FROM inbox_issues WHERE {where}"
            f" ORDER BY {order_by} LIMIT ${len(params)}",
            *params,
        )
        rows = records[:limit]
        next_cursor = encode_cursor(sort, rows[-1]) if len(records) > limit else None
        return rows, next_cursor

    async def issue(self, issue_id: UUID, scope: Scope) -> asyncpg.Record | None:
        """The issue's row; None when there is none, or it is outside ``scope``."""
        params: list[Any] = [issue_id]
        where = in_scope(scope, params)
        return await self.pool.fetchrow(
            f"SELECT {_SELECT} FROM inbox_issues WHERE issue_id = $1 AND {where}", *params
        )

    async def changed_since(self, filters: Filters, after: int, limit: int) -> list[asyncpg.Record]:
        """Issues whose row changed after a position, in position order (the SSE feed),
        filtered on the fields that never change only: the feed tells a client when an
        issue leaves its view (resolved, reassigned), so it sees those changes too."""
        params: list[Any] = [after]
        where = _without_default(filters.fixed_only(), params)
        params.append(limit)
        records = await self.pool.fetch(
            f"SELECT {_SELECT} FROM inbox_issues WHERE position > $1 AND {where}"
            f" ORDER BY position LIMIT ${len(params)}",
            *params,
        )
        return list(records)

    async def order(self, order_id: str, scope: Scope) -> list[dict[str, Any]]:
        """The order's issues in ``scope``."""
        params: list[Any] = [order_id]
        where = in_scope(scope, params)
        records = await self.pool.fetch(
            "SELECT issue_id, order_id, kind, status, severity, vertical, country, city,"
            f" detected_at, updated_at, version FROM order_issues WHERE order_id = $1 AND {where}"
            " ORDER BY detected_at",
            *params,
        )
        return [dict(r) for r in records]

    async def watched_order(
        self, order_id: str, scope: Scope
    ) -> tuple[OrderState | None, datetime | None]:
        """The detector's folded state of the order and its next timer (None, None when
        it has not seen the order, has yet to fold it, or the order is outside ``scope``)."""
        params: list[Any] = [order_id]
        where = in_scope(scope, params, vertical="state->>'vertical'", country="state->>'country'")
        row = await self.pool.fetchrow(
            f"SELECT state, next_check_at FROM order_watch WHERE order_id = $1 AND {where}",
            *params,
        )
        if row is None or row["state"] is None:
            return None, None
        return msgspec.json.decode(row["state"], type=OrderState), row["next_check_at"]

    async def counts(self, filters: Filters) -> Counts:
        """The issues matching the filters counted in all and by each dimension of
        ``COUNTED``: from the counts model, or the inbox model when a filter is not one of
        its dimensions. One row per dimension value comes back (grouping sets), never one
        per combination of them, which would grow with every dimension."""
        params: list[Any] = []
        where = filters.where(params)
        dims = ", ".join(COUNTED)
        sets = ", ".join(f"({dimension})" for dimension in COUNTED)
        if filters.dimensions_only:
            source, n = "stats_counts", "sum(n)::bigint"
        else:
            source, n = "inbox_issues", "count(*)"
        rows = await self.pool.fetch(
            f"SELECT {dims}, {n} AS n, GROUPING({dims}) AS grouped FROM {source}"
            f" WHERE {where} GROUP BY GROUPING SETS ({sets}, ())",
            *params,
        )
        everything = (1 << len(COUNTED)) - 1
        counts = Counts(0, {dimension: {} for dimension in COUNTED})
        for row in rows:
            if row["grouped"] == everything:
                counts.total = int(row["n"] or 0)
                continue
            # GROUPING sets a column's bit (the first column the highest) when the row
            # is not grouped by it: the one clear bit names the row's dimension.
            for index, dimension in enumerate(COUNTED):
                if not row["grouped"] & (1 << (len(COUNTED) - 1 - index)):
                    counts.by[dimension][row[dimension]] = int(row["n"])
        return counts

    async def position(self, name: str) -> int:
        position = await self.pool.fetchval(
            "SELECT position FROM projection_positions WHERE name = $1", name
        )
        return int(position or 0)

    async def contacts(self, since: datetime, until: datetime, scope: Scope) -> Contacts:
        """The support contacts of ``[since, until)`` about orders in ``scope``, told
        apart as the detection KPI counts them (``GET /api/detection/kpi``)."""
        params: list[Any] = [since, until]
        where = in_scope(scope, params, vertical="c.vertical", country="c.country")
        row = await self.pool.fetchrow(
            f"WITH c AS ({CONTACTS} AND {where})"
            " SELECT count(*) AS contacts,"
            " count(*) FILTER (WHERE problem AND detected) AS detected,"
            " count(*) FILTER (WHERE problem AND NOT detected) AS missed,"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY lead)"
            "  FILTER (WHERE problem AND detected) AS lead FROM c",
            *params,
        )
        assert row is not None
        return Contacts(row["contacts"], row["detected"], row["missed"], row["lead"])

    async def progress(self, stream: str, latest_skipped: int) -> Progress:
        """How far the relay and the projections have come (``GET /ready``)."""
        newest = await self.pool.fetchval(
            "SELECT coalesce(max(notification_id), 0) FROM inbox_events"
        )
        relay = await self.pool.fetchrow(
            "SELECT position, status, halted_at, error FROM relay_state WHERE stream = $1",
            stream,
        )
        applied = await self.pool.fetch(
            "SELECT name, position, checked_at, last_error, failed_at,"
            " extract(epoch FROM now() - checked_at)::float8 AS checked_ago"
            " FROM projection_positions"
        )
        skipped = await self.pool.fetch(
            "SELECT projection, count(*) AS n FROM projection_failures GROUP BY projection"
        )
        latest = await self.pool.fetch(
            "SELECT projection, position, issue_id, version, error, failed_at FROM"
            " (SELECT *, row_number() OVER (PARTITION BY projection"
            "  ORDER BY failed_at DESC, position DESC) AS n FROM projection_failures) f"
            " WHERE n <= $1 ORDER BY projection, failed_at DESC, position DESC",
            latest_skipped,
        )
        return Progress(int(newest), relay, list(applied), list(skipped), list(latest))


@dataclass
class Counts:
    """``GET /api/stats``: the issues in all, and per value of each counted dimension."""

    total: int
    by: dict[str, dict[str, int]]


@dataclass(frozen=True)
class Contacts:
    """Support contacts of a window: all of them, those about an order with a problem the
    inbox had an issue open for (detected) or not (missed), and the median minutes the
    inbox knew before the customer called, of the detected ones (None: none)."""

    contacts: int
    detected: int
    missed: int
    median_lead_minutes: float | None


@dataclass(frozen=True)
class Progress:
    """The rows ``/ready`` judges: the newest stored event's position, the relay's row of
    its stream (None: never started), each projection's position row, the count of events
    each skipped, and the latest few skipped."""

    newest: int
    relay: asyncpg.Record | None
    projections: list[asyncpg.Record]
    skipped: list[asyncpg.Record]
    latest_skipped: list[asyncpg.Record]


def _without_default(filters: Filters, params: list[Any]) -> str:
    every_status = Filters(**{**filters.__dict__, "status": get_args(Status)})
    return every_status.where(params)


@dataclass
class Positions:
    """What position each projection has reached, kept current by its NOTIFY; readers wait
    here for read-your-writes (with a database poll as the fallback)."""

    database_url: str
    read_models: ReadModels
    _known: dict[str, int] = field(default_factory=dict)
    _changed: dict[str, asyncio.Event] = field(default_factory=dict)
    _conn: asyncpg.Connection | None = None

    async def start(self) -> None:
        try:
            self._conn = await postgres.connect(self.database_url, name="inbox-api-positions")
            await self._conn.add_listener(POSITIONS_CHANNEL, self._on_notify)
            # What the models had reached before this process listened (after LISTEN, so
            # no position between the two is missed).
            try:
                rows = await self._conn.fetch("SELECT name, position FROM projection_positions")
            except asyncpg.UndefinedTableError:
                log.warning("no projection_positions table (not migrated): positions start at 0")
                rows = []
            for row in rows:
                self._advance(row["name"], row["position"])
        except postgres.CONNECTION_ERRORS as exc:
            # Readers still poll; they just wake a little later.
            log.warning("cannot listen for projection positions (%s); polling instead", exc)

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(*postgres.CONNECTION_ERRORS):
                await self._conn.close(timeout=2)

    def known(self, name: str) -> int:
        """The newest position of projection ``name`` this process has heard of."""
        return self._known.get(name, 0)

    @property
    def live(self) -> bool:
        """Whether positions are being followed as projections announce them (LISTEN)."""
        return self._conn is not None and not self._conn.is_closed()

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        name, _, position = str(payload).rpartition(":")
        self._advance(name, int(position))

    def _advance(self, name: str, position: int) -> None:
        if position > self._known.get(name, 0):
            self._known[name] = position
            event = self._changed.pop(name, None)
            if event is not None:
                event.set()

    async def wait_for(self, name: str, position: int, seconds: float) -> bool:
        """True once projection ``name`` reached ``position``; False after ``seconds``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        if self._known.get(name, 0) < position:
            self._advance(name, await self.read_models.position(name))
        while self._known.get(name, 0) < position:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            changed = self._changed.setdefault(name, asyncio.Event())
            try:
                await asyncio.wait_for(changed.wait(), min(remaining, 0.25))
            except TimeoutError:
                self._advance(name, await self.read_models.position(name))
        return True
