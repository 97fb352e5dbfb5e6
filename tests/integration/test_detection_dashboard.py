"""The leads' dashboard reads (GET /api/detection/rules, /timeline, /overdue) against real
PostgreSQL: issues raised, escalated and resolved through the issue service at set times,
projected by the real followers, contacts as the detector records them; the numbers, the
caller's scope and the parameters' validation through the HTTP app."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from adapters.eventstore import eventstore_env
from app import bootstrap
from app.bootstrap import Endpoints
from app.commands import Escalate, Report, Resolve
from app.detection_queries import DetectionFilters, DetectionQueries
from app.http.app import create_app
from app.scope import Scope
from app.service import IssueApplication, IssueService
from app.settings import Settings
from tests.integration.projecting import running_projections, wait_projected
from tests.tokens import headers_for

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=6)  # the clock of the reads


class SetClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


def _minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


class Scenario:
    """Issues written through the issue service at the times its clock is set to."""

    def __init__(self, service: IssueService, clock: SetClock) -> None:
        self.service, self.clock = service, clock
        self.orders: dict[str, str] = {}

    def raise_(
        self, name: str, at: float, kind: str, country: str = "FI", vertical: str = "restaurant"
    ) -> uuid.UUID:
        self.clock.at = _minutes(at)
        order_id = f"{name}-{uuid.uuid4().hex[:8]}"
        self.orders[name] = order_id
        raised = self.service.execute(
            Report(
                actor="system",
                order_id=order_id,
                kind=kind,
                severity="medium",
                vertical=vertical,
                country=country,
                city="X",
                evidence={},
            )
        )
        return raised.issue_id

    def escalate(self, issue_id: uuid.UUID, at: float) -> None:
        self.clock.at = _minutes(at)
        self.service.execute(
            Escalate(issue_id=issue_id, actor="system", severity="high", evidence={})
        )

    def resolve(self, issue_id: uuid.UUID, at: float, resolution: str, by: str) -> None:
        self.clock.at = _minutes(at)
        actor = "system" if by == "system" else "ann"
        self.service.execute(
            Resolve(
                issue_id=issue_id,
                actor=actor,
                resolution=resolution,
                note="",
                resolved_by="system" if by == "system" else "agent",
            )
        )


async def _contact(
    pool: asyncpg.Pool, order_id: str, at: float, first: float | None, country: str = "FI"
) -> None:
    """A contact as the detector records it: detected when an issue was open then."""
    await pool.execute(
        "INSERT INTO support_contacts (event_id, order_id, contacted_at, detected,"
        " first_detected_at, vertical, country) VALUES ($1, $2, $3, $4, $5, 'restaurant', $6)",
        uuid.uuid4().hex,
        order_id,
        _minutes(at),
        first is not None,
        None if first is None else _minutes(first),
        country,
    )


@pytest.fixture
async def scenario(db: str, pool: asyncpg.Pool) -> Scenario:
    clock = SetClock(T0)
    service = IssueService(app=IssueApplication(env=eventstore_env(db, pool_size=2)), clock=clock)
    story = Scenario(service, clock)
    flap = story.raise_("flap", 0, "venue_acceptance_delayed")  # escalated, cleared at once
    story.escalate(flap, 2)
    story.resolve(flap, 3, "fixed", "system")
    wrong = story.raise_("wrong", 10, "venue_acceptance_delayed")  # agents: not a problem
    story.resolve(wrong, 30, "false_positive", "agent")
    fixed = story.raise_("fixed", 20, "venue_acceptance_delayed")  # agents fixed it
    story.resolve(fixed, 50, "fixed", "agent")
    cleared = story.raise_("cleared", 65, "payment_failed", "SE")  # cleared after 20 min
    story.resolve(cleared, 85, "fixed", "system")
    story.raise_("open", 70, "payment_failed", "DE", "parcel")  # open, past its SLA by NOW
    story.raise_("before", -120, "eta_slipped")  # before the window, open
    async with running_projections(db, service):
        await wait_projected(db)
    service.app.close()
    await _contact(pool, story.orders["flap"], 1, 0)  # 1 minute after the issue
    await _contact(pool, story.orders["open"], 110, 70, "DE")  # 40 minutes after
    await _contact(pool, story.orders["wrong"], 20, 10)  # a false positive: no problem
    await _contact(pool, "healthy", 30, None)  # no issue at all
    await _contact(pool, story.orders["cleared"], 100, None, "SE")  # after it cleared: missed
    return story


WINDOW = (T0, T0 + timedelta(hours=3))


async def test_each_rule_s_outcomes(scenario: Scenario, pool: asyncpg.Pool) -> None:
    report = await DetectionQueries(pool).rules(*WINDOW, DetectionFilters())
    total = report.total
    assert (total.raised, total.escalated, total.flaps) == (5, 1, 1)
    assert (total.resolved_by_system, total.resolved_by_agents, total.false_positive) == (2, 2, 1)
    assert total.false_positive_share == 0.5
    venue = report.by_kind["venue_acceptance_delayed"]
    assert (venue.raised, venue.resolved_by_system, venue.resolved_by_agents) == (3, 1, 2)
    assert (venue.false_positive, venue.flaps, venue.escalated) == (1, 1, 1)
    # the flap's contact 1 minute in and the false positive's 10 minutes in
    assert (venue.contacted, venue.median_lead_minutes) == (2, 5.5)
    payment = report.by_kind["payment_failed"]
    assert (payment.raised, payment.resolved_by_system, payment.flaps) == (2, 1, 0)
    assert payment.false_positive_share is None  # agents resolved none
    assert (payment.contacted, payment.median_lead_minutes) == (1, 40)  # not after it cleared
    assert list(report.by_kind) == ["venue_acceptance_delayed", "payment_failed"]  # most first
    assert {k: v.raised for k, v in report.by_country.items()} == {"FI": 3, "DE": 1, "SE": 1}
    assert {k: v.raised for k, v in report.by_vertical.items()} == {"restaurant": 4, "parcel": 1}

    wider = await DetectionQueries(pool).rules(
        T0 - timedelta(hours=3), WINDOW[1], DetectionFilters()
    )
    assert wider.by_kind["eta_slipped"].raised == 1
    only = DetectionFilters(kind=("payment_failed",), country=("SE", "DE"))
    assert (await DetectionQueries(pool).rules(*WINDOW, only)).total.raised == 2
    high = DetectionFilters(severity=("high",))  # the flap, escalated
    assert (await DetectionQueries(pool).rules(*WINDOW, high)).total.raised == 1
    elsewhere = DetectionFilters(city=("Y",))
    assert (await DetectionQueries(pool).rules(*WINDOW, elsewhere)).total.raised == 0
    here = DetectionFilters(city=("X",), vertical=("parcel",))
    assert (await DetectionQueries(pool).rules(*WINDOW, here)).total.raised == 1
    empty = await DetectionQueries(pool).rules(T0 + timedelta(hours=4), NOW, DetectionFilters())
    assert (empty.total.raised, empty.by_kind, empty.total.median_lead_minutes) == (0, {}, None)


async def test_the_timeline_per_hour_and_the_lead_times(
    scenario: Scenario, pool: asyncpg.Pool
) -> None:
    found = await DetectionQueries(pool).timeline(*WINDOW, "hour", DetectionFilters())
    assert found.starts == [T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2)]
    assert found.raised == {"payment_failed": [0, 2, 0], "venue_acceptance_delayed": [3, 0, 0]}
    kpi = [(p.contacts, p.detected, p.missed) for p in found.contacts]
    # hour 0: the flap's (detected), the false positive's, the healthy order's (neither);
    # hour 1: the cleared payment's (missed: no issue open then); the open one's (detected)
    assert kpi == [(3, 1, 0), (2, 1, 1), (0, 0, 0)]
    assert found.lead_counts == [1, 0, 0, 0, 1, 0, 0]  # 1 minute; 40 minutes
    days = await DetectionQueries(pool).timeline(
        T0 - timedelta(hours=13), WINDOW[1], "day", DetectionFilters()
    )
    assert days.starts == [T0 - timedelta(hours=36), T0 - timedelta(hours=12)]  # UTC days
    assert days.raised == {
        "eta_slipped": [0, 1],
        "payment_failed": [0, 2],
        "venue_acceptance_delayed": [0, 3],
    }
    finland = DetectionFilters(scope=Scope(countries=frozenset({"FI"})))
    scoped = await DetectionQueries(pool).timeline(*WINDOW, "hour", finland)
    assert scoped.raised == {"venue_acceptance_delayed": [3, 0, 0]}
    assert [p.contacts for p in scoped.contacts] == [3, 0, 0]
    assert scoped.lead_counts == [1, 0, 0, 0, 0, 0, 0]


async def test_open_issues_past_their_sla(scenario: Scenario, pool: asyncpg.Pool) -> None:
    found = await DetectionQueries(pool).overdue(NOW, DetectionFilters())
    assert found.by_country == {"DE": 1, "FI": 1}  # the open payment, the eta before
    assert found.by_severity == {"medium": 2}
    early = await DetectionQueries(pool).overdue(_minutes(-100), DetectionFilters())
    assert early.by_country == {}  # neither was due yet
    parcel = DetectionFilters(vertical=("parcel",))
    assert (await DetectionQueries(pool).overdue(NOW, parcel)).by_country == {"DE": 1}


@pytest.fixture
async def http_app(
    db: str, scenario: Scenario, settings: Settings, endpoints: Endpoints
) -> AsyncIterator[Any]:
    async with bootstrap.container(
        settings, Endpoints(db, endpoints.nats_url), clock=SetClock(NOW)
    ) as built:
        app = create_app(built)
        app.state.container = built
        yield app


def _client(app: Any, role: str = "lead", **scope: list[str]) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://inbox",
        headers=headers_for(f"dash-{role}", role, **scope),  # type: ignore[arg-type]
    )


async def test_the_routes_answer_in_the_caller_s_scope(http_app: Any) -> None:
    window = {"since": WINDOW[0].isoformat(), "until": WINDOW[1].isoformat()}
    async with _client(http_app) as lead, _client(http_app, countries=["DE"]) as germany:
        rules = (await lead.get("/api/detection/rules", params=window)).json()
        assert rules["flap_minutes"] == 5
        assert rules["total"]["raised"] == 5
        assert rules["by_kind"]["venue_acceptance_delayed"]["false_positive_share"] == 0.5
        scoped = (await germany.get("/api/detection/rules", params=window)).json()
        assert (scoped["total"]["raised"], list(scoped["by_country"])) == (1, ["DE"])
        # a filter outside the scope matches nothing
        outside = await germany.get("/api/detection/rules", params={**window, "country": "FI"})
        assert outside.json()["total"]["raised"] == 0

        timeline = (await lead.get("/api/detection/timeline", params=window)).json()
        assert timeline["bucket"] == "hour"
        assert len(timeline["starts"]) == len(timeline["kpi"]) == 3
        assert timeline["kpi"][1]["detected_share"] == 0.5
        assert timeline["lead_minutes"][0] == {"from_minutes": 0, "to_minutes": 5, "contacts": 1}
        assert timeline["lead_minutes"][-1]["to_minutes"] is None
        theirs = (await germany.get("/api/detection/timeline", params=window)).json()
        assert theirs["raised"] == {"payment_failed": [0, 1, 0]}

        overdue = (await lead.get("/api/detection/overdue")).json()
        assert (overdue["total"], overdue["by_country"]) == (2, {"DE": 1, "FI": 1})
        assert (await germany.get("/api/detection/overdue")).json()["by_country"] == {"DE": 1}

        # The default window: the day before the clock's now (nothing raised then).
        default = (await lead.get("/api/detection/rules")).json()
        assert default["until"].startswith("2026-11-25T18:00")
        assert default["since"].startswith("2026-11-24T18:00")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-11-25T12:00:00"}, "until"),  # no offset
        ({"since": "2026-11-25T13:00:00Z", "until": "2026-11-25T12:00:00Z"}, "since"),
        ({"since": "2026-10-01T00:00:00Z", "until": "2026-11-25T12:00:00Z"}, "since"),  # > 31 d
        ({"kind": "Non-sense"}, "kind"),
        ({"vertical": "space ship"}, "vertical"),
        ({"bucket": "minute"}, "bucket"),
    ],
)
async def test_bad_parameters_are_400_naming_the_field(
    http_app: Any, params: dict[str, str], field: str
) -> None:
    path = "/api/detection/timeline"  # every parameter; rules takes all but bucket
    async with _client(http_app) as lead:
        answer = await lead.get(path, params=params)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    named = body.get("field") or [e.get("key") for e in body.get("errors", [])]
    assert field in (named if isinstance(named, list) else [named]), body


async def test_agents_may_not_read_the_dashboard(http_app: Any) -> None:
    async with _client(http_app, "agent") as agent, _client(http_app, "auditor") as auditor:
        for path in ("rules", "timeline", "overdue"):
            assert (await agent.get(f"/api/detection/{path}")).status_code == 403
            assert (await auditor.get(f"/api/detection/{path}")).status_code == 200
