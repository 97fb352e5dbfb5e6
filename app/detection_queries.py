"""Reads of how detection is doing (the leads' dashboard, ``GET /api/detection/rules``,
``/timeline``, ``/overdue``): each rule's outcomes, issues raised and the detection KPI
over time, the lead time distribution, open issues past their SLA. Every read is bounded
by the caller's scope (``app/scope.py``) in its SQL, as the inbox's are.

The issues of a window are those *raised* in it (``detected_at`` in ``[since, until)``),
judged by what became of them since: a cohort, so that the shares of one window do not
change meaning as its issues age (an issue raised on Monday and resolved on Tuesday counts
for Monday's window)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg
from eventsourcing.utils import get_topic

from adapters import postgres
from app.edge import Name, QueryText
from app.queries import CONTACTS, in_scope
from app.scope import EVERYWHERE, Scope
from domain.issue import OrderIssue
from domain.values import Severity

# An issue the system resolved within this long of raising it flapped: its condition
# cleared almost at once, which says the rule fires on noise (or its clear-for is short).
FLAP_MINUTES = 5
# The lead time histogram's edges in minutes: [0, 5), [5, 10), ..., [120, ∞).
LEAD_EDGES: tuple[int, ...] = (0, 5, 10, 15, 30, 60, 120)
# The longest window any of these reads takes (31 days of hour buckets: 744).
MAX_WINDOW = timedelta(days=31)

Bucket = Literal["hour", "day"]
_STEP: dict[str, timedelta] = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
# How an escalation is stored in the event store (its topic column).
_ESCALATED = get_topic(OrderIssue.Escalated)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class DetectionFilters:
    """The inbox's filters the dashboard takes (a repeatable query parameter each, as
    ``GET /api/issues`` names them), and the caller's scope. ``kind``, ``severity`` (the
    issue's severity now) and ``city`` filter issues only: a support contact has none."""

    kind: tuple[Name, ...] = ()
    vertical: tuple[Name, ...] = ()
    country: tuple[QueryText, ...] = ()
    city: tuple[QueryText, ...] = ()
    severity: tuple[Severity, ...] = ()
    scope: Scope = field(default=EVERYWHERE, metadata={"query": False})

    def issues(self, params: list[Any], alias: str = "i") -> str:
        """A SQL condition on ``inbox_issues AS alias`` (appending its parameters)."""
        return self._where(params, alias, ("kind", "vertical", "country", "city", "severity"))

    def contacts(self, params: list[Any], alias: str = "c") -> str:
        """A SQL condition on ``support_contacts AS alias``: its vertical and country."""
        return self._where(params, alias, ("vertical", "country"))

    def _where(self, params: list[Any], alias: str, names: tuple[str, ...]) -> str:
        clauses = []
        for name in names:
            values = getattr(self, name)
            if values:
                params.append(list(values))
                clauses.append(f"{alias}.{name} = ANY(${len(params)}::text[])")
        if not self.scope.everywhere:
            columns = {"vertical": f"{alias}.vertical", "country": f"{alias}.country"}
            clauses.append(in_scope(self.scope, params, **columns))
        return " AND ".join(clauses) or "TRUE"


@dataclass(frozen=True)
class Outcomes:
    """What became of the issues a rule raised in a window (see ``rules``)."""

    raised: int
    escalated: int
    resolved_by_system: int
    resolved_by_agents: int
    false_positive: int
    flaps: int
    contacted: int  # issues whose order's customer contacted support while it was open
    median_lead_minutes: float | None  # ... how long after it was raised, the median

    @property
    def false_positive_share(self) -> float | None:
        """Of the issues agents resolved, the share they judged false positives (1 less
        it: the rule's precision as agents judge it); None when agents resolved none."""
        if not self.resolved_by_agents:
            return None
        return self.false_positive / self.resolved_by_agents


@dataclass(frozen=True)
class RuleReport:
    """Outcomes in all, and by kind, by vertical and by country."""

    total: Outcomes
    by_kind: dict[str, Outcomes]
    by_vertical: dict[str, Outcomes]
    by_country: dict[str, Outcomes]


@dataclass(frozen=True)
class ContactPoint:
    """The detection KPI of one bucket (as ``GET /api/detection/kpi`` counts it)."""

    at: datetime
    contacts: int
    detected: int
    missed: int


@dataclass(frozen=True)
class Timeline:
    """Bucket starts, issues raised per kind in each (a count per start), the KPI per
    bucket, and the detected contacts' lead times as counts per ``LEAD_EDGES`` bucket."""

    starts: list[datetime]
    raised: dict[str, list[int]]
    contacts: list[ContactPoint]
    lead_counts: list[int]


@dataclass(frozen=True)
class Overdue:
    """Open issues past their SLA: by country and by severity."""

    by_country: dict[str, int]
    by_severity: dict[str, int]


def bucket_starts(since: datetime, until: datetime, bucket: Bucket) -> list[datetime]:
    """The starts of the UTC hours (or days) that ``[since, until)`` touches."""
    start = since.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if bucket == "day":
        start = start.replace(hour=0)
    starts = []
    while start < until:
        starts.append(start)
        start += _STEP[bucket]
    return starts


@postgres.raises_unavailable
@dataclass
class DetectionQueries:
    """The dashboard's queries; each raises ``DatabaseUnavailable`` when the database is
    gone, never a driver's error."""

    pool: asyncpg.Pool

    async def rules(
        self, since: datetime, until: datetime, filters: DetectionFilters
    ) -> RuleReport:
        """What became of the issues raised in ``[since, until)``: how many were raised,
        escalated at least once, resolved now by the system (the detector: the condition
        cleared) or by agents, resolved by agents as ``false_positive``, flapped (resolved by
        the system within ``FLAP_MINUTES`` of being raised), and the median minutes from
        an issue to its order's first customer contact while it was open."""
        # resolved_by is who resolved it (domain.values.ResolvedBy): the system or an agent.
        params: list[Any] = [since, until, _ESCALATED, FLAP_MINUTES * 60]
        where = filters.issues(params)
        rows = await self.pool.fetch(
            "WITH i AS (SELECT i.kind, i.vertical, i.country, i.resolution,"
            "  i.status = 'resolved' AND i.resolved_by = 'system' AS by_system,"
            "  i.status = 'resolved' AND i.resolved_by = 'agent' AS by_agents,"
            "  extract(epoch FROM i.resolved_at - i.detected_at) AS took,"
            "  EXISTS (SELECT 1 FROM inbox_events AS e"
            "   WHERE e.originator_id = i.issue_id AND e.topic = $3) AS escalated,"
            "  (SELECT extract(epoch FROM c.contacted_at - i.detected_at) / 60"
            "   FROM support_contacts AS c WHERE c.order_id = i.order_id"
            "   AND c.contacted_at >= i.detected_at"
            "   AND (i.resolved_at IS NULL OR c.contacted_at <= i.resolved_at)"
            "   ORDER BY c.contacted_at LIMIT 1) AS lead"
            "  FROM inbox_issues AS i WHERE i.detected_at >= $1 AND i.detected_at < $2"
            f"  AND {where})"
            " SELECT kind, vertical, country, GROUPING(kind) AS all_kinds,"
            " GROUPING(vertical) AS all_verticals, GROUPING(country) AS all_countries,"
            " count(*) AS raised,"
            " count(*) FILTER (WHERE escalated) AS escalated,"
            " count(*) FILTER (WHERE by_system) AS resolved_by_system,"
            " count(*) FILTER (WHERE by_agents) AS resolved_by_agents,"
            " count(*) FILTER (WHERE by_agents AND resolution = 'false_positive')"
            "  AS false_positive,"
            " count(*) FILTER (WHERE by_system AND took <= $4) AS flaps,"
            " count(lead) AS contacted,"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY lead) AS median_lead_minutes"
            " FROM i GROUP BY GROUPING SETS ((), (kind), (vertical), (country))",
            *params,
        )
        total = Outcomes(0, 0, 0, 0, 0, 0, 0, None)
        by_kind: dict[str, Outcomes] = {}
        by_vertical: dict[str, Outcomes] = {}
        by_country: dict[str, Outcomes] = {}
        for row in rows:  # GROUPING(x) is 0 in the rows grouped by x
            if not row["all_kinds"]:
                by_kind[row["kind"]] = _outcomes(row)
            elif not row["all_verticals"]:
                by_vertical[row["vertical"]] = _outcomes(row)
            elif not row["all_countries"]:
                by_country[row["country"]] = _outcomes(row)
            else:
                total = _outcomes(row)
        return RuleReport(total, _sorted(by_kind), _sorted(by_vertical), _sorted(by_country))

    async def timeline(
        self, since: datetime, until: datetime, bucket: Bucket, filters: DetectionFilters
    ) -> Timeline:
        """Per bucket of ``[since, until)`` (UTC hours or days): the issues raised by
        kind, and the KPI's contacts; and the detected contacts' lead times."""
        starts = bucket_starts(since, until, bucket)
        params: list[Any] = [since, until, bucket]
        where = filters.issues(params)
        raised_rows = await self.pool.fetch(
            "SELECT date_trunc($3, i.detected_at, 'UTC') AS at, i.kind, count(*) AS n"
            " FROM inbox_issues AS i WHERE i.detected_at >= $1 AND i.detected_at < $2"
            f" AND {where} GROUP BY 1, 2",
            *params,
        )
        params = [since, until, bucket]
        where = filters.contacts(params)
        contact_rows = await self.pool.fetch(
            f"WITH c AS ({CONTACTS} AND {where})"
            " SELECT date_trunc($3, contacted_at, 'UTC') AS at, count(*) AS contacts,"
            " count(*) FILTER (WHERE problem AND detected) AS detected,"
            " count(*) FILTER (WHERE problem AND NOT detected) AS missed"
            " FROM c GROUP BY 1",
            *params,
        )
        params = [since, until, [float(edge) for edge in LEAD_EDGES]]
        where = filters.contacts(params)
        lead_rows = await self.pool.fetch(
            f"WITH c AS ({CONTACTS} AND {where})"
            " SELECT width_bucket(lead, $3::float8[]) AS b, count(*) AS n"
            " FROM c WHERE problem AND detected AND lead IS NOT NULL GROUP BY 1",
            *params,
        )
        index = {start: n for n, start in enumerate(starts)}
        raised: dict[str, list[int]] = {}
        for row in raised_rows:
            raised.setdefault(row["kind"], [0] * len(starts))[index[row["at"]]] = row["n"]
        per_bucket = {row["at"]: row for row in contact_rows}
        contacts = [
            ContactPoint(at, *(_count(per_bucket.get(at), n) for n in _KPI)) for at in starts
        ]
        lead_counts = [0] * len(LEAD_EDGES)
        for row in lead_rows:  # 1 for [edge 0, edge 1), ... (lead is never below 0)
            lead_counts[row["b"] - 1] = row["n"]
        return Timeline(starts, dict(sorted(raised.items())), contacts, lead_counts)

    async def overdue(self, now: datetime, filters: DetectionFilters) -> Overdue:
        """The issues not resolved whose SLA (``due_at``) has passed by ``now``."""
        params: list[Any] = [now]
        where = filters.issues(params)
        rows = await self.pool.fetch(
            "SELECT i.country, i.severity, count(*) AS n FROM inbox_issues AS i"
            f" WHERE i.status <> 'resolved' AND i.due_at < $1 AND {where}"
            " GROUP BY 1, 2",
            *params,
        )
        by_country: dict[str, int] = {}
        by_severity: dict[str, int] = {}
        for row in rows:
            by_country[row["country"]] = by_country.get(row["country"], 0) + row["n"]
            by_severity[row["severity"]] = by_severity.get(row["severity"], 0) + row["n"]
        ordered = sorted(by_country.items(), key=lambda item: (-item[1], item[0]))
        return Overdue(dict(ordered), by_severity)


_KPI = ("contacts", "detected", "missed")


def _sorted(outcomes: dict[str, Outcomes]) -> dict[str, Outcomes]:
    """Most raised first (then by name)."""
    return dict(sorted(outcomes.items(), key=lambda item: (-item[1].raised, item[0])))


def _count(row: asyncpg.Record | None, name: str) -> int:
    return int(row[name]) if row is not None else 0


def _outcomes(row: asyncpg.Record) -> Outcomes:
    lead = row["median_lead_minutes"]
    return Outcomes(
        raised=row["raised"],
        escalated=row["escalated"],
        resolved_by_system=row["resolved_by_system"],
        resolved_by_agents=row["resolved_by_agents"],
        false_positive=row["false_positive"],
        flaps=row["flaps"],
        contacted=row["contacted"],
        median_lead_minutes=round(lead, 2) if lead is not None else None,
    )
