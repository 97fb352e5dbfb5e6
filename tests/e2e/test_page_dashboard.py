"""The detection dashboard (/dashboard) in Debian's chromium: a lead sees issues raised per
hour, the KPI over time and its lead times, each rule's outcomes and open issues past their
SLA, as charts drawn by the vendored Chart.js and as tables whose numbers are the API's;
the window is kept in the URL; an agent is told it may not look."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from playwright.async_api import BrowserContext, Page, expect

from app.principal import Role
from app.settings import Settings
from tests.conftest import wait_until
from tests.e2e.browser import (
    NARROW,
    WIDE,
    describe,
    humanised,
    log_in,
    screenshot,
    serious_violations,
)
from tests.e2e.orders import event, placed
from tests.e2e.test_issue_api import report
from tests.tokens import headers_for

# Markets no other test uses: the lead's scope holds only this test's issues.
MARKETS = ["IS", "LU"]
# Where the detector's orders of this test are (in the lead's scope, away from other tests).
MARKET = {"country": "IS", "city": "Reykjavik"}
CHARTS = ["chart-raised", "chart-kpi", "chart-lead", "chart-overdue", "chart-rules"]


def _raise(http: httpx.Client, kind: str, country: str, severity: str = "high") -> str:
    city = {"IS": "Reykjavik", "LU": "Luxembourg"}[country]
    raised = report(http, kind=kind, country=country, city=city, severity=severity)
    return str(raised["issue_id"])


def _resolve(http: httpx.Client, issue_id: str, resolution: str) -> None:
    answer = http.post(
        f"/api/issues/{issue_id}/resolve", json={"resolution": resolution, "note": "dashboard"}
    )
    assert answer.status_code == 200, answer.text


def _window() -> dict[str, str]:
    now = datetime.now(UTC)
    return {"since": (now - timedelta(hours=24)).isoformat(), "until": now.isoformat()}


async def _setup(http: httpx.Client, settings: Settings, lead: httpx.Client) -> dict[str, Any]:
    """Issues of several kinds in the two markets: some resolved by agents (one as a false
    positive), two the detector raised and cleared at once (flaps), a customer contact it had
    detected; the open ones made older than their SLA."""
    raised = [
        _raise(http, "payment_failed", "IS"),
        _raise(http, "payment_failed", "IS"),
        _raise(http, "payment_failed", "LU"),
        _raise(http, "eta_slipped", "LU", "low"),
        _raise(http, "courier_stationary", "IS", "medium"),
        _raise(http, "courier_stationary", "LU", "medium"),
    ]
    _resolve(http, raised[0], "false_positive")
    _resolve(http, raised[1], "fixed")
    _resolve(http, raised[4], "no_action_needed")
    orders = [f"ord-dash-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    http.post(
        "/api/order-events",
        json=[placed(order, 20, **MARKET) for order in orders],
    )

    def detected() -> bool:
        rules = lead.get("/api/detection/rules", params=_window()).json()
        venue: dict[str, int] = rules["by_kind"].get("venue_acceptance_delayed", {})
        return venue.get("raised") == 2

    wait_until(detected, timeout=20, what="the detector's issues")
    contact = event(orders[0], "customer_contacted_support", 0, **MARKET, channel="chat")
    http.post("/api/order-events", json=contact)
    wait_until(
        lambda: lead.get("/api/detection/kpi").json()["detected"] == 1,
        timeout=20,
        what="the detected contact",
    )
    http.post(
        "/api/order-events",
        json=[event(o, "venue_accepted", 0, **MARKET) for o in orders],
    )

    def settled() -> dict[str, Any] | None:
        rules: dict[str, Any] = lead.get("/api/detection/rules", params=_window()).json()
        total = rules["total"]
        done = (total["raised"], total["resolved_by_system"], total["resolved_by_agents"])
        return rules if done == (8, 2, 3) else None

    wait_until(settled, timeout=30, what="the detector's resolutions")
    # No API backdates an issue: the open ones are made as if raised two hours ago, past
    # their SLA (the read model's due_at, which GET /api/detection/overdue reads).
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(
            "UPDATE inbox_issues SET due_at = due_at - interval '2 hours'"
            " WHERE status <> 'resolved' AND country = ANY($1::text[])",
            MARKETS,
        )
    finally:
        await conn.close()
    overdue: dict[str, Any] = lead.get("/api/detection/overdue").json()
    assert overdue["by_country"] == {"LU": 3}, overdue
    return overdue


async def _log_in_on(
    page: Page, path: str, sub: str, role: Role, countries: list[str] | None = None
) -> None:
    """Log the page's browser in (its session cookie) and open ``path``."""
    await log_in(page.context, sub, role, name=sub.title(), countries=countries)
    await page.goto(path)
    await expect(page.get_by_test_id("who")).to_contain_text(role)


async def _drawn(page: Page, test_id: str) -> dict[str, Any]:
    """The chart's Chart.js instance as drawn: its type, data points and canvas size."""
    canvas = page.get_by_test_id(test_id).locator("canvas")
    await expect(canvas).to_have_attribute("role", "img")
    drawn: dict[str, Any] = await canvas.evaluate(
        """(canvas) => {
            const chart = window.Chart && window.Chart.getChart(canvas);
            return chart && {
                type: chart.config.type,
                points: chart.data.datasets.map((d) => d.data.reduce((a, b) => a + (b || 0), 0)),
                width: canvas.width,
                height: canvas.height,
            };
        }"""
    )
    assert drawn, f"{test_id}: no chart on the canvas"
    assert drawn["width"] > 0, drawn
    assert drawn["height"] > 0, drawn
    return drawn


async def _rows(page: Page, test_id: str) -> list[list[str]]:
    table = page.get_by_test_id(test_id).locator("table tbody tr")
    rows: list[list[str]] = await table.evaluate_all(
        "(rows) => rows.map((row) => [...row.cells].map((cell) => cell.textContent.trim()))"
    )
    return rows


async def test_a_lead_sees_how_detection_is_doing(
    context: BrowserContext, http: httpx.Client, api: str, settings: Settings
) -> None:
    lead_headers = headers_for("lead-dash", "lead", countries=MARKETS)
    with httpx.Client(base_url=api, timeout=10, headers=lead_headers) as lead:
        await _setup(http, settings, lead)
        page = await context.new_page()
        await _log_in_on(page, "/dashboard", "lead-dash", "lead", countries=MARKETS)
        await expect(page.get_by_role("heading", name="Detection", exact=True)).to_be_visible()
        await expect(page.get_by_test_id("chart-rules")).to_be_visible()
        drawn = {test_id: await _drawn(page, test_id) for test_id in CHARTS}
        rules = lead.get("/api/detection/rules", params=_window()).json()

        # Each rule's bar: raised, resolved by the system, by agents, false positives.
        assert drawn["chart-rules"]["type"] == "bar"
        t = rules["total"]
        sums = [t["raised"], t["resolved_by_system"], t["resolved_by_agents"], t["false_positive"]]
        assert drawn["chart-rules"]["points"] == sums == [8, 2, 3, 1]
        assert sum(drawn["chart-raised"]["points"]) == 8  # per hour, stacked by kind
        assert drawn["chart-overdue"]["points"] == [3]
        assert drawn["chart-lead"]["points"] == [1]  # the one detected contact
        assert drawn["chart-kpi"]["type"] == "line"

        # The tables hold the API's numbers.
        by_kind = {row[0]: row[1:] for row in await _rows(page, "chart-rules")}
        for kind, stats in rules["by_kind"].items():
            shown = by_kind[humanised(kind)]
            expected = [
                stats["raised"],
                stats["escalated"],
                stats["resolved_by_system"],
                stats["resolved_by_agents"],
                stats["false_positive"],
            ]
            assert shown[:5] == [str(n) for n in expected], (kind, shown)
        assert by_kind["Payment failed"][5] == "50%"  # one of two agents resolved
        assert by_kind["Venue acceptance delayed"][6] == "2"  # two flaps
        assert await _rows(page, "chart-overdue") == [["LU", "3"]]
        summary = (
            await page.get_by_test_id("chart-overdue").locator("canvas").get_attribute("aria-label")
        )
        assert summary is not None
        assert "3 open issues past their SLA: LU 3" in summary

        violations = await serious_violations(page)
        assert not violations, describe(violations)
        await screenshot(page, "dashboard")

        # The window is kept in the URL, and a link to it opens it.
        await page.get_by_label("Window").select_option("7d")
        await expect(page).to_have_url(re.compile(r"/dashboard\?window=7d$"))
        await _drawn(page, "chart-raised")
        shared = await context.new_page()
        await _log_in_on(shared, "/dashboard?window=7d", "lead-dash", "lead", countries=MARKETS)
        await expect(shared.get_by_label("Window")).to_have_value("7d")
        await _drawn(shared, "chart-raised")
        await shared.close()

        await page.set_viewport_size(NARROW)  # type: ignore[arg-type]
        await expect(page.get_by_test_id("chart-rules")).to_be_visible()
        await _drawn(page, "chart-rules")
        violations = await serious_violations(page)
        assert not violations, describe(violations)
        await page.set_viewport_size(WIDE)  # type: ignore[arg-type]


async def test_the_rules_files_kinds_and_verticals_show_in_the_tables(
    context: BrowserContext, http: httpx.Client
) -> None:
    """A kind and verticals that only the rules file declares (the pharmacy's prescription
    check, the pharmacy, the own-staff florist) get their rows, in words, like any other."""
    where = {"country": "MT", "city": "Valletta"}  # a market of this test alone
    report(http, kind="prescription_check_pending", vertical="pharmacy", **where)
    report(http, kind="prescription_check_pending", vertical="pharmacy", **where)
    report(http, kind="venue_acceptance_delayed", vertical="florist", **where)
    page = await context.new_page()
    await _log_in_on(page, "/dashboard", "lead-malta", "lead", countries=["MT"])
    await expect(page.get_by_test_id("chart-rules")).to_be_visible()
    by_kind = {row[0]: row[1:] for row in await _rows(page, "chart-rules")}
    assert by_kind == {
        "Prescription check pending": ["2", "0", "0", "0", "0", "—", "0", "—"],
        "Venue acceptance delayed": ["1", "0", "0", "0", "0", "—", "0", "—"],
    }, by_kind
    by_vertical = {row[0]: row[1] for row in await _rows(page, "table-verticals")}
    assert by_vertical == {"Pharmacy": "2", "Florist": "1"}, by_vertical
    heads = page.get_by_test_id("table-verticals").locator("thead th")
    await expect(heads.first).to_have_text("Vertical")
    violations = await serious_violations(page)
    assert not violations, describe(violations)


async def test_an_agent_is_told_the_dashboard_is_not_for_it(context: BrowserContext) -> None:
    page = await context.new_page()
    await _log_in_on(page, "/dashboard", "agent-dash", "agent")
    await expect(page.get_by_test_id("not-allowed")).to_contain_text("not allowed")
    await expect(page.locator("canvas")).to_have_count(0)
    violations = await serious_violations(page)
    assert not violations, describe(violations)
