"""The page on the server's clock: an ``inbox up`` whose order time runs 30 times faster
than the wall clock (INBOX_DEMO_SPEED, as ``inbox up``'s demo runs), already hours ahead of
the browser's. A snooze the page sends (a key in the inbox, a preset on the issue page)
is in the future on the server's clock, and the ages and SLAs it shows are the server's."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, expect

from app.bootstrap import Endpoints
from app.settings import Settings
from tests.e2e.browser import WIDE, log_in
from tests.e2e.conftest import inbox_up
from tests.tokens import headers_for

SPEED = 30
# The order time's anchor, five wall minutes ago: the server is 2 h 25 min ahead at once.
AHEAD = timedelta(minutes=5)
DEADLINE_MS = 10_000


@pytest.fixture(scope="module")
def fast_api(
    endpoints: Endpoints, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An ``inbox up`` of its own on compressed order time, for this module only."""
    anchor = datetime.now(UTC) - AHEAD
    env = {"INBOX_DEMO_SPEED": str(SPEED), "INBOX_DEMO_ANCHOR": anchor.isoformat()}
    folder = tmp_path_factory.mktemp("fastclock")
    with inbox_up(endpoints, settings, folder, streams_suffix="_CLOCK", env=env) as base_url:
        yield base_url


@pytest.fixture
def fast_http(fast_api: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fast_api, timeout=10, headers=headers_for()) as client:
        yield client


@pytest_asyncio.fixture
async def fast_context(browser: Browser, fast_api: str) -> AsyncIterator[BrowserContext]:
    opened = await browser.new_context(base_url=fast_api, viewport=WIDE)  # type: ignore[arg-type]
    problems: list[str] = []
    opened.on("page", lambda page: page.on("pageerror", lambda e: problems.append(str(e))))
    yield opened
    await opened.close()
    assert not problems, "\n".join(problems)


def raise_issue(http: httpx.Client, where: str, severity: str) -> dict[str, Any]:
    body = {
        "order_id": f"ord-{uuid.uuid4().hex[:10]}",
        "kind": "payment_failed",
        "severity": severity,
        "vertical": "restaurant",
        "country": "FI",
        "city": where,
        "evidence": {"payment_attempts": 3},
    }
    response = http.post("/api/issues", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    seen = http.get(
        f"/api/issues/{created['issue_id']}", params={"min_position": created["position"]}
    )
    assert seen.status_code == 200, seen.text
    shown: dict[str, Any] = seen.json()
    return shown


def server_now(http: httpx.Client) -> datetime:
    response = http.get("/api/session")
    assert response.status_code == 200, response.text
    return datetime.fromisoformat(response.json()["now"])


def test_the_session_says_the_servers_clock_and_its_speed(fast_http: httpx.Client) -> None:
    body = fast_http.get("/api/session").json()
    assert body["clock_speed"] == SPEED
    ahead = datetime.fromisoformat(body["now"]) - datetime.now(UTC)
    assert ahead > timedelta(hours=2), ahead


async def test_snoozes_ages_and_slas_on_the_servers_clock(
    fast_context: BrowserContext, fast_http: httpx.Client
) -> None:
    here = f"Clockville-{uuid.uuid4().hex[:8]}"
    issue = raise_issue(fast_http, here, "critical")  # due 5 order minutes on: 10 s here
    await log_in(fast_context, "agent-cleo", "agent", countries=["FI"])
    page: Page = await fast_context.new_page()
    await page.goto(f"/?city={here}")
    line = page.locator(f'table.issues tbody tr[data-issue="{issue["issue_id"]}"]')
    # Seconds old and minutes to go on the server's clock (the browser's would say hours).
    await expect(line.locator("td.when").first).to_have_text(re.compile(r"^(\d+s|1min( \d+s)?)$"))
    await expect(line.locator(".sla")).to_have_text(re.compile(r"^in [1-5]min|^in \d+s"))
    # Past due within seconds of real time: breached, never "in".
    await expect(line.locator(".sla")).to_have_text(
        re.compile(r"^⚠ Breached \d"), timeout=DEADLINE_MS * 2
    )
    # "s" snoozes for an hour of order time: accepted.
    await page.keyboard.press("j")
    await page.keyboard.press("s")
    await expect(page.get_by_test_id("message")).to_have_text(
        f"{issue['order_id']}: snoozed for 1 h", timeout=DEADLINE_MS
    )
    until = datetime.fromisoformat(
        fast_http.get(f"/api/issues/{issue['issue_id']}").json()["snoozed_until"]
    )
    assert timedelta(minutes=50) < until - server_now(fast_http) < timedelta(minutes=61)

    # The issue page: its SLA breached on the server's clock, a preset snooze accepted.
    other = raise_issue(fast_http, here, "critical")
    await page.goto(f"/issues/{other['issue_id']}")
    sla = page.get_by_test_id("sla")
    await expect(sla).to_have_text(re.compile(r"^Due in [1-5]min|^Due in \d+s"))
    await expect(sla).to_have_text(re.compile(r"^Breached \d"), timeout=DEADLINE_MS * 2)
    await page.get_by_role("group", name="Snooze for").get_by_role("button", name="4 h").click()
    await expect(page.get_by_test_id("outcome-ok")).to_have_text(
        "Snoozed (4 h).", timeout=DEADLINE_MS
    )
    until = datetime.fromisoformat(
        fast_http.get(f"/api/issues/{other['issue_id']}").json()["snoozed_until"]
    )
    assert timedelta(hours=3, minutes=50) < until - server_now(fast_http) < timedelta(hours=4)
