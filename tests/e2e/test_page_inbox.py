"""The inbox page in Debian's chromium: the table in priority order, filters in the URL and
in the controls, counts, paging, live changes from another client, the keys, bulk commands
with a per-item result, what an agent sees, accessibility at 1280 and 400 px, text from the
API shown as text. Each test works in a city of its own, so other tests' issues stay out."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
from playwright.async_api import BrowserContext, Locator, Page, Route, expect

from app.principal import Role
from tests.e2e.browser import (
    NARROW,
    describe,
    humanised,
    log_in,
    screenshot,
    serious_violations,
)
from tests.tokens import AGENT, headers_for

# A live change (another client's command) must show within this (issue 14: 1 s; a shared
# machine's slack on top).
LIVE_MS = 5000
LEAD = "lead-lea"


def city() -> str:
    return f"Testville-{uuid.uuid4().hex[:8]}"


def raise_issue(
    http: httpx.Client, where: str, severity: str = "medium", **fields: Any
) -> dict[str, Any]:
    """An issue raised by hand (an admin may), in city ``where``; the read model has it
    when this returns."""
    body = {
        "order_id": f"ord-{uuid.uuid4().hex[:10]}",
        "kind": "venue_acceptance_delayed",
        "severity": severity,
        "vertical": "restaurant",
        "country": "FI",
        "city": where,
        "evidence": {"minutes_waiting": 7},
    } | fields
    response = http.post("/api/issues", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    seen = http.get(
        f"/api/issues/{created['issue_id']}", params={"min_position": created["position"]}
    )
    assert seen.status_code == 200, seen.text
    return {**created, "order_id": body["order_id"]}


def send(
    http: httpx.Client, issue_id: str, name: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    response = http.post(f"/api/issues/{issue_id}/{name}", json=body or {})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def rows(page: Page) -> Locator:
    return page.locator("table.issues tbody tr[data-issue]")


def row(page: Page, issue_id: str) -> Locator:
    return page.locator(f'table.issues tbody tr[data-issue="{issue_id}"]')


async def order(page: Page) -> list[str]:
    return [str(await r.get_attribute("data-issue")) for r in await rows(page).all()]


async def opened(
    context: BrowserContext,
    path: str,
    sub: str = AGENT,
    role: Role = "admin",
    *,
    page: Page | None = None,
    **claims: Any,
) -> Page:
    """``path`` opened by a browser logged in (its session cookie, set anew: a page
    already open changes who it is) as ``sub`` in ``role``."""
    page = page or await context.new_page()
    await log_in(context, sub, role, **claims)
    await page.goto(path)
    await expect(page.get_by_role("heading", name="Inbox", exact=True)).to_be_visible()
    return page


async def test_the_table_in_priority_order_filtered_by_the_url_and_the_controls(
    context: BrowserContext, http: httpx.Client
) -> None:
    here, there = city(), city()
    low = raise_issue(http, here, "low")
    critical = raise_issue(http, here, "critical", kind="payment_failed", vertical="grocery")
    high = raise_issue(http, there, "high", country="SE")
    page = await opened(context, f"/?city={here}")
    await expect(rows(page)).to_have_count(2)
    assert await order(page) == [critical["issue_id"], low["issue_id"]]
    first = row(page, critical["issue_id"])
    for text in (
        "critical",
        "Payment failed",
        critical["order_id"],
        "Grocery",
        here,
        "FI",
        "open",
        "unassigned",
    ):
        await expect(first).to_contain_text(text)
    await expect(first.locator("td").nth(7)).to_have_text(
        re.compile(r"^in \d")
    )  # the SLA countdown
    # Counts from /api/stats with the same filters, by_city among them.
    await expect(page.get_by_test_id("total")).to_have_text("2 issues in this view")
    await expect(
        page.get_by_role("group", name="Severity").get_by_label("critical")
    ).to_have_accessible_name("critical 1")
    await expect(page.locator(".frequent").filter(has_text="Cities")).to_contain_text(f"{here} 2")

    # A control changes the URL (the API's names), and the table follows.
    await page.get_by_role("group", name="Severity").get_by_label("critical").check()
    await expect(page).to_have_url(re.compile(rf"/\?severity=critical&city={here}$"))
    await expect(rows(page)).to_have_count(1)
    await page.get_by_role("group", name="Severity").get_by_label("critical").uncheck()
    await page.get_by_label("City").fill(f"{here}, {there}")
    await page.get_by_role("button", name="Apply").click()
    await expect(page).to_have_url(re.compile(rf"/\?city={here}&city={there}$"))
    await expect(rows(page)).to_have_count(3)
    assert await order(page) == [critical["issue_id"], high["issue_id"], low["issue_id"]]
    # Back is the previous view; a link opened afresh is the same view.
    await page.go_back()
    await expect(rows(page)).to_have_count(2)
    await opened(context, f"/?city={there}&country=SE&status=open", page=page)
    await expect(rows(page)).to_have_count(1)
    await expect(page.get_by_role("group", name="Status").get_by_label("open")).to_be_checked()
    await expect(page.get_by_label("Country")).to_have_value("SE")


async def test_a_declared_vertical_and_kind_show_in_words_and_filter_the_table(
    context: BrowserContext, http: httpx.Client
) -> None:
    """The pharmacy and its prescription check are the rules file's, not the page's: the
    filters offer what GET /api/rules declares (read once per page load), a pharmacy issue
    shows its kind and vertical in words, and each filters the table."""
    here = city()
    pharmacy = raise_issue(
        http,
        here,
        "medium",
        kind="prescription_check_pending",
        vertical="pharmacy",
        evidence={"prescription_id": "rx-1", "waiting_for": "prescription_approved"},
    )
    venue = raise_issue(http, here, "high")
    rules = http.get("/api/rules").json()
    page = await context.new_page()
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/api/rules" in r.url else None)
    await opened(context, f"/?city={here}", page=page)
    await expect(rows(page)).to_have_count(2)
    shown = row(page, pharmacy["issue_id"])
    await expect(shown.locator("td").nth(2)).to_have_text("Prescription check pending")
    await expect(shown.locator("td").nth(3)).to_have_text("Pharmacy")

    # The choices are the rules' verticals and kinds, in their order, in words.
    verticals = page.get_by_role("group", name="Vertical").get_by_role("checkbox")
    await expect(verticals).to_have_count(len(rules["verticals"]))
    names = [humanised(v["name"]) for v in rules["verticals"]]
    labels = page.get_by_role("group", name="Vertical").locator("label")
    await expect(labels).to_have_text([re.compile(rf"^{name}( \d+)?$") for name in names])
    await expect(
        page.get_by_role("group", name="Vertical").get_by_label("Pharmacy")
    ).to_have_accessible_name("Pharmacy 1")
    await page.get_by_role("group", name="Vertical").get_by_label("Pharmacy").check()
    await expect(page).to_have_url(re.compile(rf"/\?vertical=pharmacy&city={here}$"))
    await expect(rows(page)).to_have_count(1)
    await expect(row(page, pharmacy["issue_id"])).to_be_visible()
    await page.get_by_role("group", name="Vertical").get_by_label("Pharmacy").uncheck()
    await expect(rows(page)).to_have_count(2)

    await page.locator("details.kinds > summary").click()
    kinds = page.get_by_role("group", name="Kind").get_by_role("checkbox")
    await expect(kinds).to_have_count(len(rules["kinds"]))
    check = page.get_by_role("group", name="Kind").get_by_label("Prescription check pending")
    await expect(check).to_have_accessible_name("Prescription check pending 1")
    await check.check()
    await expect(page).to_have_url(re.compile(rf"/\?kind=prescription_check_pending&city={here}$"))
    await expect(rows(page)).to_have_count(1)
    await expect(row(page, pharmacy["issue_id"])).to_be_visible()
    await expect(row(page, venue["issue_id"])).to_have_count(0)
    violations = await serious_violations(page)
    assert not violations, describe(violations)
    # One read of the rules for the page load, however often the filters changed.
    assert len(asked) == 1, asked


async def test_a_bookmarked_filter_the_rules_no_longer_declare_still_shows(
    context: BrowserContext, http: httpx.Client
) -> None:
    """A vertical taken out of the rules file (here: never in it) stays a choice while the
    URL names it, checked and marked; a vertical the rules add shows without a release
    (the answer of GET /api/rules changed on its way to the page)."""
    here = city()
    raise_issue(http, here)

    async def with_a_bakery(route: Route) -> None:
        answer = await route.fetch()
        body = await answer.json()
        body["verticals"].append({**body["verticals"][0], "name": "bakery"})
        await route.fulfill(response=answer, json=body)

    page = await context.new_page()
    await page.route("**/api/rules", with_a_bakery)
    await opened(context, f"/?city={here}&vertical=bookshop&kind=shelf_empty", page=page)
    await expect(rows(page)).to_have_count(0)
    group = page.get_by_role("group", name="Vertical")
    await expect(group.get_by_label("Bakery")).not_to_be_checked()
    await expect(group.get_by_label("Bakery")).to_have_accessible_name("Bakery")
    bookshop = group.get_by_label("Bookshop")
    await expect(bookshop).to_be_checked()
    await expect(bookshop).to_have_accessible_name("Bookshop (not in the rules)")
    kind = page.get_by_role("group", name="Kind").get_by_label("Shelf empty")
    await expect(kind).to_be_checked()
    await bookshop.click()  # unchecked, it is gone: neither declared nor counted
    await expect(page).to_have_url(re.compile(rf"/\?kind=shelf_empty&city={here}$"))
    await expect(group.get_by_label("Bookshop")).to_have_count(0)  # no longer chosen


async def test_assigned_to_me_is_the_assignee_filter(
    context: BrowserContext, http: httpx.Client
) -> None:
    here = city()
    mine = raise_issue(http, here)
    raise_issue(http, here)
    send(http, mine["issue_id"], "assign")  # the http client's sub is AGENT
    page = await opened(context, f"/?city={here}")
    await expect(rows(page)).to_have_count(2)
    await page.get_by_label("Assigned to me").check()
    await expect(page).to_have_url(re.compile(rf"city={here}&assignee={AGENT}$"))
    await expect(rows(page)).to_have_count(1)
    await expect(row(page, mine["issue_id"])).to_contain_text(AGENT)


async def test_paging_through_the_cursor(context: BrowserContext, http: httpx.Client) -> None:
    here = city()
    for n in range(53):
        raise_issue(http, here, "high" if n < 2 else "low")
    page = await opened(context, f"/?city={here}")
    await expect(rows(page)).to_have_count(50)
    await expect(page.get_by_role("table")).to_contain_text("50 shown, more to load")
    await page.get_by_role("button", name="Load more").click()
    await expect(rows(page)).to_have_count(53)
    await expect(page.get_by_role("button", name="Load more")).to_have_count(0)
    assert len(set(await order(page))) == 53


async def test_live_changes_from_another_client_appear_move_and_leave(
    context: BrowserContext, http: httpx.Client
) -> None:
    here = city()
    medium = raise_issue(http, here, "medium")
    page = await opened(context, f"/?city={here}")
    await expect(page.get_by_test_id("live")).to_have_text("Live")
    await expect(rows(page)).to_have_count(1)

    other = httpx.Client(
        base_url=http.base_url, timeout=10, headers=headers_for("agent-bob", "lead")
    )
    with other:
        # Raised elsewhere: it appears, above the medium one.
        created = other.post(
            "/api/issues",
            json={
                "order_id": f"ord-{uuid.uuid4().hex[:10]}",
                "kind": "eta_slipped",
                "severity": "high",
                "vertical": "parcel",
                "country": "FI",
                "city": here,
            },
        )
        assert created.status_code == 201, created.text
        high = created.json()["issue_id"]
        await expect(rows(page)).to_have_count(2, timeout=LIVE_MS)
        assert await order(page) == [high, medium["issue_id"]]
        # The counts follow (asked for again a moment after a live change).
        await expect(page.get_by_test_id("total")).to_have_text("2 issues in this view")
        # Escalated: it moves to the top, changed in place.
        escalated = other.post(
            f"/api/issues/{medium['issue_id']}/escalate",
            json={"severity": "critical", "reason": "customer waiting"},
        )
        assert escalated.status_code == 200, escalated.text
        await expect(row(page, medium["issue_id"])).to_contain_text("critical", timeout=LIVE_MS)
        assert await order(page) == [medium["issue_id"], high]
        # Resolved: it leaves.
        resolved = other.post(f"/api/issues/{high}/resolve", json={"resolution": "fixed"})
        assert resolved.status_code == 200, resolved.text
        await expect(row(page, high)).to_have_count(0, timeout=LIVE_MS)
        await expect(rows(page)).to_have_count(1)


async def test_the_counts_asked_after_a_live_change_wait_for_it(
    context: BrowserContext, http: httpx.Client
) -> None:
    # The counts model is written by another follower than the inbox's: asked without
    # min_position, the counts after a change can still miss it (seen in a demo: 5 rows,
    # "3 issues") and nothing asks again.
    here = city()
    raise_issue(http, here, "medium")
    page = await opened(context, f"/?city={here}")
    await expect(page.get_by_test_id("live")).to_have_text("Live")
    async with page.expect_request(
        lambda request: "/api/stats" in request.url and "min_position" in request.url
    ) as asked:
        raised = raise_issue(http, here, "high")
    query = httpx.URL((await asked.value).url).params
    assert int(query["min_position"]) >= raised["position"]
    await expect(rows(page)).to_have_count(2)


async def test_no_change_is_lost_while_the_feed_is_down(
    context: BrowserContext, http: httpx.Client
) -> None:
    """The feed opens after the page's position and drops at once (a response with one
    event, its id that position); while the browser reconnects, another client raises an
    issue; once the feed is back (from Last-Event-ID, or the page's position) it arrives."""
    here = city()
    first = raise_issue(http, here, "low")
    feeds: list[str] = []
    back = asyncio.Event()

    async def feed(route: Route) -> None:
        feeds.append(route.request.url)
        if len(feeds) == 1:
            after = parse_qs(urlparse(route.request.url).query)["after"][0]
            body = f"retry: 200\nevent: hello\nid: {after}\ndata: {{}}\n\n"
            await route.fulfill(
                status=200, headers={"Content-Type": "text/event-stream"}, body=body
            )
            return
        await back.wait()
        await route.continue_()

    page = await context.new_page()
    await page.route("**/api/stream**", feed)
    await opened(context, f"/?city={here}", page=page)
    await expect(rows(page)).to_have_count(1)
    await expect(page.get_by_test_id("live")).to_have_text("Reconnecting…")
    second = raise_issue(http, here, "critical")
    back.set()
    await expect(page.get_by_test_id("live")).to_have_text("Live", timeout=LIVE_MS)
    await expect(row(page, second["issue_id"])).to_be_visible(timeout=LIVE_MS)
    assert await order(page) == [second["issue_id"], first["issue_id"]]
    # The feed began at the page's position, and resumed from it.
    after = parse_qs(urlparse(feeds[0]).query)["after"][0]
    assert int(after) >= first["position"]
    assert len(feeds) == 2, feeds


async def test_the_keys_move_open_assign_and_acknowledge(
    context: BrowserContext, http: httpx.Client
) -> None:
    here = city()
    top = raise_issue(http, here, "high")
    second = raise_issue(http, here, "low")
    page = await opened(context, f"/?city={here}", "agent-kim", "agent", countries=["FI"])
    await expect(rows(page)).to_have_count(2)
    await page.keyboard.press("j")
    await expect(row(page, top["issue_id"])).to_have_class(re.compile(r"\bactive\b"))
    await expect(row(page, top["issue_id"]).get_by_role("link")).to_be_focused()
    await page.keyboard.press("j")
    await expect(row(page, second["issue_id"])).to_have_class(re.compile(r"\bactive\b"))
    await page.keyboard.press("k")
    # Two commands in quick succession: the second goes with the version the first made.
    await page.keyboard.press("m")
    await page.keyboard.press("a")
    await expect(row(page, top["issue_id"])).to_contain_text("agent-kim", timeout=LIVE_MS)
    await expect(row(page, top["issue_id"])).to_contain_text("acknowledged", timeout=LIVE_MS)
    await expect(page.get_by_test_id("message")).to_have_text(f"{top['order_id']}: acknowledged")
    seen = http.get(f"/api/issues/{top['issue_id']}").json()
    assert (seen["assignee"], seen["status"]) == ("agent-kim", "acknowledged")
    await page.keyboard.press("s")  # snoozed for an hour: still in the default view
    await expect(row(page, top["issue_id"])).to_contain_text("snoozed", timeout=LIVE_MS)
    snoozed = http.get(f"/api/issues/{top['issue_id']}").json()["snoozed_until"]
    assert datetime.fromisoformat(snoozed) > datetime.now(UTC) + timedelta(minutes=55)
    # Keys typed into a field are text, not commands.
    await page.get_by_label("City").focus()
    await page.keyboard.press("j")
    await expect(page.get_by_label("City")).to_have_value(f"{here}j")
    await page.get_by_label("City").fill(here)
    # ? shows the keys in a dialog; Esc closes it.
    await row(page, top["issue_id"]).get_by_role("link").focus()
    await page.keyboard.press("?")
    help_dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    await expect(help_dialog).to_be_visible()
    await expect(help_dialog).to_contain_text("assign to me")
    await page.keyboard.press("Escape")
    await expect(help_dialog).to_have_count(0)
    # r asks for the resolution, then resolves: the issue leaves the view.
    await page.keyboard.press("j")
    await expect(row(page, second["issue_id"])).to_have_class(re.compile(r"\bactive\b"))
    await page.keyboard.press("r")
    resolve = page.get_by_role("dialog", name="Resolve this issue")
    await resolve.get_by_label("Resolution").select_option("false_positive")
    await resolve.get_by_role("button", name="Resolve").click()
    await expect(row(page, second["issue_id"])).to_have_count(0, timeout=LIVE_MS)
    # Enter opens the active issue, client-side.
    await row(page, top["issue_id"]).get_by_role("link").focus()
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(rf"/issues/{top['issue_id']}$"))


async def test_single_key_shortcuts_can_be_switched_off(
    context: BrowserContext, http: httpx.Client
) -> None:
    """WCAG 2.1.4: a switch in the header turns the character keys off (kept across a
    reload); then "a" is just a key. On again, "m" assigns: "a" had sent nothing."""
    here = city()
    issue = raise_issue(http, here, "high")
    page = await opened(context, f"/?city={here}", "agent-kim", "agent", countries=["FI"])
    switch = page.get_by_role("checkbox", name="Single-key shortcuts")
    await expect(switch).to_be_checked()
    await switch.uncheck()
    await page.reload()
    await expect(rows(page)).to_have_count(1)
    await expect(switch).not_to_be_checked()
    await row(page, issue["issue_id"]).get_by_role("link").focus()
    await expect(row(page, issue["issue_id"])).to_have_class(re.compile(r"\bactive\b"))
    await page.keyboard.press("a")
    await page.keyboard.press("?")
    await expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_have_count(0)
    await switch.check()
    await row(page, issue["issue_id"]).get_by_role("link").focus()
    await page.keyboard.press("m")
    await expect(page.get_by_test_id("message")).to_have_text(
        f"{issue['order_id']}: assigned to you", timeout=LIVE_MS
    )
    seen = http.get(f"/api/issues/{issue['issue_id']}").json()
    assert (seen["assignee"], seen["status"], seen["version"]) == ("agent-kim", "open", 2)


async def test_the_rows_forget_the_issues_that_left_once_no_older_row_can_come(
    context: BrowserContext,
) -> None:
    """inbox-model.js in the browser: `gone` (where each issue left the view, so that an
    older row cannot bring it back) stays bounded over a long-open tab, and still refuses
    an older row of an issue that left after the page being read was asked for."""
    page = await context.new_page()
    await page.goto("/")
    result = await page.evaluate(
        """async () => {
          const m = await import("/static/js/inbox-model.js");
          const filters = m.parseFilters("");
          const rows = m.emptyRows();
          const row = (id, position) => ({ issue_id: id, position, status: "open",
            severity: "low", assignee: null, priority: 100, detected_at: "2026-01-01T00:00:00Z" });
          let position = 10;
          m.fedTo?.(rows, position);
          for (let n = 0; n < 5000; n += 1) {  // the feed: issues leave, one after another
            position += 1;
            m.fedTo?.(rows, position);
            m.drop(rows, { issue_id: `gone-${n}`, position });
          }
          const bounded = rows.gone.size;
          // A page is asked for now; while it is on its way, more leave.
          m.reading?.(rows, true);
          for (let n = 0; n < 5000; n += 1) {
            position += 1;
            m.fedTo?.(rows, position);
            m.drop(rows, { issue_id: `late-${n}`, position });
          }
          // The page was read before the last of them left: its older rows stay out.
          const items = [row("late-0", position - 6000), row("late-4999", position - 1)];
          const page = { items, next_cursor: null };
          m.addPage(rows, page, filters);
          m.reading?.(rows, false);
          return { bounded, kept: rows.byId.size };
        }"""
    )
    assert result["bounded"] <= 2000, result
    assert result["kept"] == 0, result


async def test_bulk_acknowledge_shows_each_items_result_with_a_conflict(
    context: BrowserContext, http: httpx.Client
) -> None:
    here = city()
    one = raise_issue(http, here, "high")
    two = raise_issue(http, here, "medium")
    page = await context.new_page()
    # No live feed: the page keeps the versions it loaded, so a change made elsewhere
    # meanwhile is a conflict for its If-Match.
    await page.route("**/api/stream**", lambda route: route.abort())
    await opened(context, f"/?city={here}", LEAD, "lead", page=page)
    await expect(rows(page)).to_have_count(2)
    await page.get_by_label("Select all visible issues").check()
    await expect(page.get_by_test_id("selected-count")).to_have_text("2 selected")
    send(http, two["issue_id"], "escalate", {"severity": "high", "reason": "changed elsewhere"})
    await expect(row(page, two["issue_id"])).to_contain_text("medium")  # as the page loaded it
    await (
        page.get_by_role("region", name="Bulk actions")
        .get_by_role("button", name="Acknowledge")
        .click()
    )
    results = page.get_by_test_id("results")
    await expect(results.locator("li")).to_have_count(2)
    await expect(results.locator("li", has_text=one["order_id"])).to_contain_text("acknowledged")
    await expect(results.locator("li", has_text=two["order_id"])).to_contain_text("conflict (412)")
    assert http.get(f"/api/issues/{one['issue_id']}").json()["status"] == "acknowledged"
    assert http.get(f"/api/issues/{two['issue_id']}").json()["status"] == "open"
    # The conflicting row shows its fresh state; sent again, it goes through.
    await expect(row(page, two["issue_id"])).to_contain_text("high")
    await page.get_by_label(f"Select {one['order_id']}").uncheck()
    await page.get_by_label("Agent id").fill("agent-zoe")
    await page.get_by_role("button", name="Assign to agent").click()
    await expect(results.locator("li", has_text=two["order_id"])).to_contain_text(
        "assigned to agent-zoe"
    )
    assert http.get(f"/api/issues/{two['issue_id']}").json()["assignee"] == "agent-zoe"


async def test_an_agent_sees_its_scope_and_no_bulk_controls(
    context: BrowserContext, http: httpx.Client
) -> None:
    here = city()
    finnish = raise_issue(http, here, "high", country="FI")
    raise_issue(http, here, "critical", country="SE")
    page = await opened(context, f"/?city={here}", "agent-kim", "agent", countries=["FI"])
    await expect(rows(page)).to_have_count(1)
    await expect(row(page, finnish["issue_id"])).to_be_visible()
    await expect(page.get_by_role("region", name="Bulk actions")).to_have_count(0)
    await expect(page.get_by_role("checkbox", name=re.compile("^Select"))).to_have_count(0)


async def test_a_breached_sla_says_so_in_text(context: BrowserContext, http: httpx.Client) -> None:
    here = city()
    issue = raise_issue(http, here, "critical")  # due in 5 minutes
    page = await opened(context, f"/?city={here}")
    # An hour on for the page (the server's clock, as the session told it, plus the hour
    # the browser's clock moves after it).
    await page.clock.set_fixed_time(datetime.now(UTC) + timedelta(hours=1))
    sla = row(page, issue["issue_id"]).locator(".sla")
    await expect(sla).to_have_text(re.compile(r"Breached 5\dmin"))


async def test_text_from_the_api_is_shown_as_text(
    context: BrowserContext, http: httpx.Client
) -> None:
    here = f"<img src=x onerror=alert(1)>{uuid.uuid4().hex[:6]}"
    issue = raise_issue(
        http,
        here,
        "high",
        order_id=f"<script>alert(2)</script>{uuid.uuid4().hex[:6]}",
        evidence={"note": "<script>alert(3)</script>"},
    )
    page = await opened(context, "/?" + str(httpx.QueryParams({"city": here})))
    shown = row(page, issue["issue_id"])
    await expect(shown).to_contain_text(here)
    await expect(shown.get_by_role("link")).to_have_text(issue["order_id"])
    assert await page.locator("table.issues img, table.issues script").count() == 0


async def test_accessible_at_1280_and_400_px_with_a_screenshot(
    context: BrowserContext, http: httpx.Client
) -> None:
    here = city()
    for severity, kind, vertical in (
        ("critical", "payment_failed", "restaurant"),
        ("high", "no_courier_assigned", "grocery"),
        ("high", "eta_slipped", "parcel"),
        ("medium", "courier_stationary", "restaurant"),
        ("low", "order_stale", "retail"),
        ("medium", "prescription_check_pending", "pharmacy"),
    ):
        raise_issue(http, here, severity, kind=kind, vertical=vertical)
    listed = http.get("/api/issues", params={"city": here}).json()["items"]
    send(http, listed[1]["issue_id"], "assign", {"assignee": "agent-zoe"})
    send(http, listed[3]["issue_id"], "acknowledge")
    page = await opened(context, f"/?city={here}", LEAD, "lead", name="Lea Lead")
    # Twelve minutes on: the critical issue is past its SLA, the others count down.
    await page.clock.set_fixed_time(datetime.now(UTC) + timedelta(minutes=12))
    await expect(rows(page)).to_have_count(6)
    await expect(row(page, listed[0]["issue_id"])).to_contain_text("Breached")
    await expect(page.get_by_test_id("live")).to_have_text("Live")
    await page.get_by_label(f"Select {listed[0]['order_id']}").check()
    await page.keyboard.press("k")  # the row of the checkbox is the active one; it stays
    await expect(row(page, listed[0]["issue_id"])).to_have_class(re.compile(r"\bactive\b"))
    violations = await serious_violations(page)
    assert not violations, describe(violations)
    await screenshot(page, "inbox")
    await page.keyboard.press("?")
    await expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_visible()
    violations = await serious_violations(page)
    assert not violations, describe(violations)
    await page.keyboard.press("Escape")
    await page.set_viewport_size(NARROW)  # type: ignore[arg-type]
    await page.locator(".filter-panel > summary").click()  # closed: the table comes first
    await expect(page.get_by_label("City")).to_be_hidden()
    violations = await serious_violations(page)
    assert not violations, describe(violations)
    await screenshot(page, "inbox-narrow")
