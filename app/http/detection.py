"""``/api/detection``: how well the inbox detects problems before customers report them:
the KPI (``/kpi``), and the leads' dashboard's reads (``/rules``, ``/timeline``,
``/overdue``; ``app/detection_queries.py`` says how each is counted)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency, Provide
from litestar.params import QueryParameter, SkipValidation

from adapters.clock import Clock
from app.detection_queries import (
    FLAP_MINUTES,
    LEAD_EDGES,
    MAX_WINDOW,
    Bucket,
    DetectionFilters,
    DetectionQueries,
    Outcomes,
)
from app.edge import TIME_PATTERN, Aware
from app.http import openapi
from app.http.errors import BadRequest
from app.http.reads import from_query
from app.principal import Principal
from app.queries import ReadModels
from app.scope import Scope
from domain.errors import InvalidValue
from domain.values import check_time

# A time in a query: taken as text and converted strictly, as RFC 3339 (Litestar converts
# query values leniently, and took a number for seconds since 1970).
_QueryTime = Annotated[
    str | None, QueryParameter(schema_extra={"format": "date-time", "pattern": TIME_PATTERN})
]


def _time(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        at = msgspec.convert(value, Aware, strict=True)
        check_time(name, at)
    except msgspec.ValidationError as exc:
        raise BadRequest(name, f"must be an RFC 3339 time with an offset ({exc})") from None
    except InvalidValue as exc:
        raise BadRequest(exc.field, exc.reason) from None
    return at


def _window(
    since: str | None, until: str | None, clock: Clock, *, bounded: bool = True
) -> tuple[datetime, datetime]:
    """``[since, until)`` from the query: until defaults to now, since to a day before it;
    since must not be after until, nor (``bounded``) more than ``MAX_WINDOW`` before it."""
    # The system's clock: in a demo, order time, like the events it counts.
    until_at = _time("until", until) or clock.now()
    since_at = _time("since", since) or until_at - timedelta(days=1)
    if since_at > until_at:
        raise BadRequest("since", "must not be after until")
    if bounded and until_at - since_at > MAX_WINDOW:
        raise BadRequest("since", f"must be at most {MAX_WINDOW.days} days before until")
    return since_at, until_at


class DetectionKpi(msgspec.Struct):
    since: datetime
    until: datetime
    contacts: int  # customers who contacted support about an order in the window
    detected: int  # ... whose order had a problem and an open issue then
    # ... whose order had none open then, but has a problem: an issue raised before or
    # after the contact that agents did not resolve as a false positive
    missed: int
    # ... about an order the inbox knows no problem of (a question on a healthy order):
    # neither detected nor missed
    no_problem: int
    detected_share: float | None  # detected / (detected + missed): contacts about problems
    median_lead_minutes: float | None  # how much earlier the inbox knew, for detected ones


class RuleStats(msgspec.Struct, kw_only=True):
    """What became of the issues raised in the window (by now)."""

    raised: int
    escalated: int  # ... escalated at least once
    resolved_by_system: int  # ... resolved by the detector (their condition cleared)
    resolved_by_agents: int  # ... resolved by a person
    false_positive: int  # ... resolved by a person as false_positive
    # false_positive / resolved_by_agents (1 less it: the rule's precision as agents judge
    # it); null when agents resolved none
    false_positive_share: float | None
    flaps: int  # ... resolved by the system within flap_minutes of being raised
    contacted: int  # ... whose order's customer contacted support while it was open
    median_lead_minutes: float | None  # ... how long after the issue, the median


def _stats(outcomes: Outcomes) -> RuleStats:
    return RuleStats(
        raised=outcomes.raised,
        escalated=outcomes.escalated,
        resolved_by_system=outcomes.resolved_by_system,
        resolved_by_agents=outcomes.resolved_by_agents,
        false_positive=outcomes.false_positive,
        false_positive_share=_share(outcomes.false_positive_share),
        flaps=outcomes.flaps,
        contacted=outcomes.contacted,
        median_lead_minutes=outcomes.median_lead_minutes,
    )


def _share(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None


class RuleQuality(msgspec.Struct, kw_only=True):
    since: datetime
    until: datetime
    flap_minutes: int
    total: RuleStats
    # Each of the issues' kinds, verticals and countries, most raised first.
    by_kind: dict[str, RuleStats]
    by_vertical: dict[str, RuleStats]
    by_country: dict[str, RuleStats]


class KpiPoint(msgspec.Struct, kw_only=True):
    """The detection KPI of one bucket, counted as ``GET /api/detection/kpi`` counts."""

    at: datetime  # the bucket's start
    contacts: int
    detected: int
    missed: int
    detected_share: float | None


class LeadBucket(msgspec.Struct, kw_only=True):
    """Detected contacts whose order had an issue open for [from_minutes, to_minutes)."""

    from_minutes: int
    to_minutes: int | None  # null: no upper bound
    contacts: int


class DetectionTimeline(msgspec.Struct, kw_only=True):
    since: datetime
    until: datetime
    bucket: str
    starts: list[datetime]  # each bucket's start (UTC hours or days)
    raised: dict[str, list[int]]  # per kind: issues raised in each bucket (as ``starts``)
    kpi: list[KpiPoint]
    lead_minutes: list[LeadBucket]  # the window's detected contacts' lead times


class OverdueIssues(msgspec.Struct, kw_only=True):
    at: datetime
    total: int
    by_country: dict[str, int]  # most first
    by_severity: dict[str, int]


def _queries(read_models: NamedDependency[ReadModels]) -> DetectionQueries:
    return DetectionQueries(read_models.pool)


class DetectionController(Controller):
    path = "/api/detection"
    tags = ["order events"]
    dependencies = {
        "detection_filters": Provide(from_query(DetectionFilters), sync_to_thread=False),
        "detection_queries": Provide(_queries, sync_to_thread=False),
    }

    @get(
        "/kpi",
        summary="Share of support contacts the inbox had already detected",
        responses=openapi.read(),
    )
    async def kpi(
        self,
        caller: NamedDependency[Principal],
        read_models: NamedDependency[ReadModels],
        clock: NamedDependency[SkipValidation[Clock]],  # a Protocol: no isinstance()
        since: _QueryTime = None,
        until: _QueryTime = None,
    ) -> DetectionKpi:
        """Counts only the contacts about orders in the caller's scope."""
        since_at, until_at = _window(since, until, clock, bounded=False)
        counted = await read_models.contacts(since_at, until_at, Scope.of(caller))
        about_problems = counted.detected + counted.missed
        lead = counted.median_lead_minutes
        return DetectionKpi(
            since=since_at,
            until=until_at,
            contacts=counted.contacts,
            detected=counted.detected,
            missed=counted.missed,
            no_problem=counted.contacts - about_problems,
            detected_share=counted.detected / about_problems if about_problems else None,
            median_lead_minutes=round(lead, 2) if lead is not None else None,
        )

    @get(
        "/rules",
        summary="Each rule's outcomes: raised, escalated, resolved, false positives, flaps",
        responses=openapi.read(),
    )
    async def rules(
        self,
        detection_filters: NamedDependency[DetectionFilters],
        detection_queries: NamedDependency[DetectionQueries],
        clock: NamedDependency[SkipValidation[Clock]],
        since: _QueryTime = None,
        until: _QueryTime = None,
    ) -> RuleQuality:
        """The issues raised in ``[since, until)`` (at most 31 days; default the last day),
        in the caller's scope and the filters, and what became of them by now: in all, by
        kind, by vertical and by country. A flap is an issue the system resolved within
        ``flap_minutes`` of raising it; the lead time runs from an issue to its order's
        first customer contact while it was open."""
        since_at, until_at = _window(since, until, clock)
        report = await detection_queries.rules(since_at, until_at, detection_filters)
        return RuleQuality(
            since=since_at,
            until=until_at,
            flap_minutes=FLAP_MINUTES,
            total=_stats(report.total),
            by_kind={k: _stats(v) for k, v in report.by_kind.items()},
            by_vertical={k: _stats(v) for k, v in report.by_vertical.items()},
            by_country={k: _stats(v) for k, v in report.by_country.items()},
        )

    @get(
        "/timeline",
        summary="Issues raised by kind and the detection KPI per hour or day; lead times",
        responses=openapi.read(),
    )
    async def timeline(
        self,
        detection_filters: NamedDependency[DetectionFilters],
        detection_queries: NamedDependency[DetectionQueries],
        clock: NamedDependency[SkipValidation[Clock]],
        since: _QueryTime = None,
        until: _QueryTime = None,
        bucket: Annotated[Bucket, QueryParameter()] = "hour",
    ) -> DetectionTimeline:
        """Per UTC hour (or day) of ``[since, until)`` (at most 31 days; default the last
        day): the issues raised by kind, the detection KPI of the support contacts; and
        the window's detected contacts by how long the inbox knew before (minutes). The
        contacts honour ``vertical`` and ``country``; ``kind`` filters the issues only."""
        since_at, until_at = _window(since, until, clock)
        found = await detection_queries.timeline(since_at, until_at, bucket, detection_filters)
        kpi = [
            KpiPoint(
                at=point.at,
                contacts=point.contacts,
                detected=point.detected,
                missed=point.missed,
                detected_share=_share(
                    point.detected / (point.detected + point.missed)
                    if point.detected + point.missed
                    else None
                ),
            )
            for point in found.contacts
        ]
        edges = [*LEAD_EDGES, None]
        lead = [
            LeadBucket(from_minutes=edges[n] or 0, to_minutes=edges[n + 1], contacts=count)
            for n, count in enumerate(found.lead_counts)
        ]
        return DetectionTimeline(
            since=since_at,
            until=until_at,
            bucket=bucket,
            starts=found.starts,
            raised=found.raised,
            kpi=kpi,
            lead_minutes=lead,
        )

    @get(
        "/overdue",
        summary="Open issues past their SLA, by country and severity",
        responses=openapi.read(),
    )
    async def overdue(
        self,
        detection_filters: NamedDependency[DetectionFilters],
        detection_queries: NamedDependency[DetectionQueries],
        clock: NamedDependency[SkipValidation[Clock]],
    ) -> OverdueIssues:
        """The issues in the caller's scope and the filters that are not resolved (open,
        acknowledged or snoozed) and whose ``due_at`` has passed."""
        now = clock.now()
        found = await detection_queries.overdue(now, detection_filters)
        return OverdueIssues(
            at=now,
            total=sum(found.by_country.values()),
            by_country=found.by_country,
            by_severity=found.by_severity,
        )
