"""The page of one issue, /issues/{id}, in Debian's chromium: its facts, the order's facts and
the evidence, the order's other issues, the history; acting on it with If-Match; a conflict;
the notice of someone else's change; an auditor stepping through its versions; text from
the API shown as text; axe at 1280 and 400 px."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
from playwright.async_api import BrowserContext, Dialog, Page, Route, expect

from app.principal import Role
from tests.conftest import wait_until
from tests.e2e.browser import NARROW, WIDE, describe, log_in, screenshot, serious_violations
from tests.e2e.orders import event
from tests.tokens import token_for

DEADLINE_MS = 10_000


def js_text(value: Any) -> str:
    """A JSON value as the page writes it (JavaScript's String of it)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def detected_issue(http: httpx.Client) -> dict[str, Any]:
    """An issue the detector raised from real order events: an order placed 20 minutes ago
    that no venue accepted (venue_acceptance_delayed, with the detector's evidence)."""
    order_id = f"ord-{uuid.uuid4().hex[:10]}"
    placed = event(
        order_id,
        "order_placed",
        20,
        venue_id="venue-1",
        customer_id="customer-1",
        promised_delivery_at=(datetime.now(UTC) + timedelta(minutes=30)).isoformat(),
        amount=2500,
        currency="EUR",
    )
    response = http.post("/api/order-events", json=placed)
    assert response.status_code == 202, response.text

    def found() -> dict[str, Any] | None:
        items: list[dict[str, Any]] = http.get("/api/issues", params={"order_id": order_id}).json()[
            "items"
        ]
        return items[0] if items else None

    return wait_until(found, timeout=15, what="the detected issue")


def raised_issue(
    http: httpx.Client, order_id: str | None = None, kind: str = "payment_failed"
) -> str:
    """An issue raised by hand (POST /api/issues as the admin); its id."""
    body = {
        "order_id": order_id or f"ord-{uuid.uuid4().hex[:10]}",
        "kind": kind,
        "severity": "high",
        "vertical": "restaurant",
        "country": "FI",
        "city": "Helsinki",
        "evidence": {"payment_attempts": 3, "gateway": {"code": "declined", "retry": False}},
    }
    response = http.post("/api/issues", json=body)
    assert response.status_code == 201, response.text
    issue_id: str = response.json()["issue_id"]
    return issue_id


def command(http: httpx.Client, issue_id: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """A command from another client (the `http` admin), with no If-Match."""
    response = http.post(f"/api/issues/{issue_id}/{name}", json=body)
    assert response.status_code == 200, response.text
    accepted: dict[str, Any] = response.json()
    return accepted


async def opened(
    context: BrowserContext,
    issue_id: str,
    sub: str,
    role: Role,
    *,
    name: str | None = None,
    page: Page | None = None,
) -> Page:
    """The issue's page, logged in through the login form it shows (GET /api/session, which
    would let `browser.log_in` before the page loads suffice, is not on this branch)."""
    page = page or await context.new_page()
    await page.goto(f"/issues/{issue_id}")
    await page.get_by_label("Access token").fill(token_for(sub, role, name=name))
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_test_id("version")).to_be_visible(timeout=DEADLINE_MS)
    return page


def timeline_entries(page: Page) -> Any:
    return page.get_by_test_id("timeline").locator("li")


async def test_an_issue_shows_its_evidence_the_order_its_other_issues_and_history(
    context: BrowserContext, http: httpx.Client
) -> None:
    issue = detected_issue(http)
    other = raised_issue(http, issue["order_id"])
    page = await opened(context, issue["issue_id"], "agent-pia", "agent", name="Pia Agent")

    await expect(page.get_by_role("heading", level=1)).to_contain_text("Venue acceptance delayed")
    facts = page.get_by_test_id("issue-facts")
    await expect(facts).to_contain_text("Helsinki")
    await expect(facts).to_contain_text("Restaurant")
    await expect(facts).to_contain_text("FI")
    await expect(facts).to_contain_text("Due in")  # a critical one: 5 minutes from detection
    await expect(page.get_by_test_id("assignee")).to_have_text("nobody")
    # The detector's evidence, each key a term of the list.
    evidence = page.get_by_test_id("evidence")
    assert issue["evidence"], "the detector gives evidence"
    terms = [key.replace("_", " ") for key in issue["evidence"]]
    values = [
        json.dumps(v, separators=(",", ":")) if isinstance(v, dict | list) else v
        for v in issue["evidence"].values()
    ]
    await expect(evidence.locator("dt")).to_have_text(terms)
    await expect(evidence.locator("dd")).to_have_text([js_text(value) for value in values])
    # What the detector knows of the order.
    order = page.get_by_test_id("order-facts")
    await expect(order.locator("dt", has_text=re.compile(r"^stage$"))).to_be_visible()
    await expect(order).to_contain_text("placed")
    # The order's other issue, a link to its page.
    link = page.get_by_test_id("other-issues").get_by_role("link", name="Payment failed")
    await expect(link).to_have_attribute("href", f"/issues/{other}")
    # Its history: detected by the system, with the detector's evidence.
    await expect(timeline_entries(page)).to_have_count(1)
    await expect(timeline_entries(page).first).to_contain_text("detected")
    await expect(timeline_entries(page).first).to_contain_text("by system")
    # An agent acts; an agent has no "Assign to someone".
    await expect(page.get_by_role("button", name="Assign to me")).to_be_visible()
    await expect(page.get_by_label("Agent id")).to_have_count(0)

    await link.click()
    await expect(page).to_have_url(re.compile(f"/issues/{other}$"))
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Payment failed")
    await expect(page.get_by_test_id("evidence")).to_contain_text(
        '{"code":"declined","retry":false}'
    )


async def test_acting_on_an_issue_grows_its_timeline(
    context: BrowserContext, http: httpx.Client
) -> None:
    issue_id = raised_issue(http)
    page = await opened(context, issue_id, "agent-pia", "agent", name="Pia Agent")
    entries = timeline_entries(page)
    await expect(entries).to_have_count(1)
    keys = page.get_by_role("region", name="Keys").locator("kbd")
    await expect(keys).to_have_text(["m", "a", "s", "r", "u / Esc"])

    await page.keyboard.press("m")  # assign to me
    await expect(page.get_by_test_id("assignee")).to_have_text("agent-pia")
    await expect(entries).to_have_count(2)
    await expect(entries.nth(1)).to_contain_text("assigned")
    await expect(entries.nth(1)).to_contain_text("by Pia Agent (agent-pia)")

    await page.get_by_label("Note text").fill("Called the venue, they are on it")
    await page.get_by_role("button", name="Add note").click()
    await expect(entries).to_have_count(3)
    await expect(entries.nth(2)).to_contain_text("Called the venue, they are on it")
    await expect(page.get_by_label("Note text")).to_have_value("")  # sent: cleared

    await page.keyboard.press("a")  # acknowledge
    await expect(page.get_by_test_id("status")).to_have_text("acknowledged")
    await expect(entries).to_have_count(4)
    await expect(page.get_by_role("button", name="Acknowledge")).to_have_count(0)

    await page.get_by_label("Action", exact=True).select_option("contact_venue")
    await page.get_by_label("Details (optional)").fill("asked for an ETA")
    await page.get_by_role("button", name="Record action").click()
    await expect(entries).to_have_count(5)
    await expect(entries.nth(4)).to_contain_text("contact venue")
    await expect(entries.nth(4)).to_contain_text("asked for an ETA")

    await page.keyboard.press("s")  # to the snooze presets
    await expect(page.get_by_role("button", name="1 h")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.get_by_test_id("status")).to_have_text("snoozed")
    await page.get_by_role("button", name="Wake now").click()
    await expect(page.get_by_test_id("status")).to_have_text("acknowledged")

    await page.keyboard.press("r")  # to the resolution
    await expect(page.get_by_label("Resolution", exact=True)).to_be_focused()
    await page.get_by_label("Resolution", exact=True).select_option("fixed")
    await page.get_by_label("Resolution note (optional)").fill("Venue accepted")
    await page.get_by_role("button", name="Resolve").click()
    await expect(page.get_by_test_id("status")).to_have_text("resolved")
    await expect(entries).to_have_count(8)
    await expect(entries.nth(7)).to_contain_text("Venue accepted")
    await expect(page.get_by_role("button", name="Assign to me")).to_have_count(0)
    await page.get_by_label("Reason").fill("The customer called again")
    await page.get_by_role("button", name="Reopen").click()
    await expect(page.get_by_test_id("status")).to_have_text("open")
    await expect(entries.nth(8)).to_contain_text("The customer called again")
    # The page's own commands are no one else's change.
    version = int(await page.get_by_test_id("version").inner_text())
    events = http.get(f"/api/issues/{issue_id}/events").json()["items"]
    assert version == len(events) == 9
    notice = page.get_by_test_id("changed-notice")
    await expect(notice).to_have_attribute("data-heard", str(events[-1]["position"]))
    await expect(notice).to_have_text("")

    await page.keyboard.press("u")
    await expect(page).to_have_url(re.compile(r"/$"))


async def test_a_conflict_shows_a_message_and_the_fresh_state_and_keeps_the_note(
    context: BrowserContext, http: httpx.Client
) -> None:
    issue_id = raised_issue(http)
    page = await opened(context, issue_id, "agent-pia", "agent")
    await expect(page.get_by_test_id("version")).to_have_text("1")
    # Typed key by key: its "a" and "m" are text, not the page's keys.
    await page.get_by_label("Note text").press_sequentially("My careful note")
    await expect(page.get_by_test_id("version")).to_have_text("1")
    assert len(http.get(f"/api/issues/{issue_id}/events").json()["items"]) == 1

    command(http, issue_id, "acknowledge", {})  # another client, after the page loaded

    await page.get_by_role("button", name="Add note").click()
    problem = page.get_by_test_id("outcome-problem")
    await expect(problem).to_contain_text("Someone else changed this issue")
    await expect(problem).to_contain_text("Nothing was saved")
    await expect(page.get_by_test_id("status")).to_have_text("acknowledged")  # fresh
    await expect(page.get_by_test_id("version")).to_have_text("2")
    await expect(page.get_by_label("Note text")).to_have_value("My careful note")
    notes = http.get(f"/api/issues/{issue_id}/events").json()["items"]
    assert [event["type"] for event in notes] == ["detected", "acknowledged"]  # not overwritten

    await page.get_by_role("button", name="Add note").click()  # sent again, on version 2
    await expect(timeline_entries(page)).to_have_count(3)
    await expect(timeline_entries(page).nth(2)).to_contain_text("My careful note")
    await expect(problem).to_have_text("")


async def test_a_refused_transition_shows_why_and_the_fresh_state(
    context: BrowserContext, http: httpx.Client
) -> None:
    """409: the page's command reaches an issue whose status refuses it. The page always
    sends If-Match (a 412 would come first), so this request goes out without it."""
    issue_id = raised_issue(http)
    page = await opened(context, issue_id, "agent-pia", "agent")

    async def without_if_match(route: Route) -> None:
        headers = {k: v for k, v in route.request.headers.items() if k.lower() != "if-match"}
        await route.continue_(headers=headers)

    await page.route(re.compile(r"/acknowledge$"), without_if_match)
    command(http, issue_id, "resolve", {"resolution": "duplicate", "note": ""})

    await page.get_by_role("button", name="Acknowledge").click()
    problem = page.get_by_test_id("outcome-problem")
    await expect(problem).to_contain_text("not allowed in the issue's current state")
    await expect(problem).to_contain_text("cannot acknowledge")
    await expect(page.get_by_test_id("status")).to_have_text("resolved")
    await expect(page.get_by_role("button", name="Reopen")).to_be_visible()
    await expect(page.get_by_role("button", name="Acknowledge")).to_have_count(0)


async def test_someone_elses_change_shows_a_notice(
    context: BrowserContext, http: httpx.Client
) -> None:
    issue_id = raised_issue(http)
    page = await opened(context, issue_id, "agent-pia", "agent")
    notice = page.get_by_test_id("changed-notice")
    await expect(notice).to_have_attribute("data-feed", "live", timeout=DEADLINE_MS)
    await expect(notice).to_have_text("")

    command(http, issue_id, "notes", {"text": "From the other desk"})

    await expect(notice).to_contain_text("Changed by someone else", timeout=DEADLINE_MS)
    await expect(
        page.get_by_role("status").filter(has_text="Changed by someone else")
    ).to_be_visible()
    await expect(timeline_entries(page)).to_have_count(1)  # nothing moved under the reader
    await notice.get_by_role("button", name="Reload").click()
    await expect(timeline_entries(page)).to_have_count(2)
    await expect(timeline_entries(page).nth(1)).to_contain_text("From the other desk")
    await expect(notice).to_have_text("")

    await page.keyboard.press("Escape")  # back to the inbox
    await expect(page).to_have_url(re.compile(r"/$"))


async def test_a_change_before_the_feed_opens_still_shows_the_notice(
    context: BrowserContext, http: httpx.Client
) -> None:
    """The page has read the issue; before its feed is open, another client changes it: the
    feed starts after the history the page loaded, so the change comes through it."""
    issue_id = raised_issue(http)
    held = asyncio.Event()
    changed = asyncio.Event()
    feeds: list[str] = []

    async def hold(route: Route) -> None:
        feeds.append(route.request.url)
        held.set()
        await changed.wait()
        await route.continue_()

    page = await context.new_page()
    await page.route("**/api/stream**", hold)
    await page.goto(f"/issues/{issue_id}")
    await page.get_by_label("Access token").fill(token_for("agent-pia", "agent"))
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_test_id("version")).to_have_text("1", timeout=DEADLINE_MS)
    await asyncio.wait_for(held.wait(), DEADLINE_MS / 1000)
    command(http, issue_id, "notes", {"text": "Before the feed was open"})
    changed.set()

    notice = page.get_by_test_id("changed-notice")
    await expect(notice).to_contain_text("Changed by someone else", timeout=DEADLINE_MS)
    await expect(timeline_entries(page)).to_have_count(1)
    history = http.get(f"/api/issues/{issue_id}/events").json()["items"]
    after = parse_qs(urlparse(feeds[0]).query)["after"]
    assert after == [str(history[0]["position"])], feeds


async def test_the_issue_pages_keys_follow_the_shortcuts_switch(
    context: BrowserContext, http: httpx.Client
) -> None:
    issue_id = raised_issue(http)
    page = await opened(context, issue_id, "agent-pia", "agent")
    await page.get_by_role("checkbox", name="Single-key shortcuts").uncheck()
    await page.get_by_role("heading", level=1).click()
    await page.keyboard.press("a")  # off: nothing is sent
    await page.keyboard.press("u")  # nor does it go back to the inbox
    await page.get_by_role("checkbox", name="Single-key shortcuts").check()
    await page.get_by_role("heading", level=1).click()
    await page.keyboard.press("m")
    await expect(page.get_by_test_id("outcome-ok")).to_have_text(
        "Assigned to you.", timeout=DEADLINE_MS
    )
    await expect(page).to_have_url(re.compile(rf"/issues/{issue_id}$"))
    seen = http.get(f"/api/issues/{issue_id}").json()
    assert (seen["status"], seen["version"]) == ("open", 2)


async def test_an_issue_path_that_is_not_an_issue_id_is_not_found(
    context: BrowserContext,
) -> None:
    """The id in /issues/{id} must be a UUID: anything else is the page's Not found, and
    never becomes a path of an API call (here, one that climbs out of /api/issues)."""
    await log_in(context, "agent-pia", "agent")
    page = await context.new_page()
    asked: list[str] = []
    page.on("request", lambda request: asked.append(urlparse(request.url).path))
    missing = page.get_by_role("heading", name="Not found", exact=True)
    await page.goto("/issues/not-a-uuid")  # the server serves the shell for any one segment
    await expect(missing).to_be_visible()
    await page.goto("/")
    await expect(page.get_by_role("heading", name="Inbox", exact=True)).to_be_visible()
    asked.clear()
    # An encoded slash the server would not route (404): reached by a link of the page.
    await page.evaluate(
        """(path) => {
          history.pushState(null, "", path);
          window.dispatchEvent(new PopStateEvent("popstate"));
        }""",
        "/issues/..%2F..%2Fapi%2Fevents",
    )
    await expect(missing).to_be_visible()
    # The inbox's own reads may still come (/api/issues, /api/stats); no issue's, no climb.
    assert not [one for one in asked if one.startswith("/api/issues/") or "events" in one], asked


async def test_a_lead_assigns_to_someone_else_and_takes_it_back(
    context: BrowserContext, http: httpx.Client
) -> None:
    issue_id = raised_issue(http)
    page = await opened(context, issue_id, "lead-lea", "lead", name="Lea Lead")
    await page.get_by_label("Agent id").fill("agent-zed")
    await page.get_by_role("button", name="Assign", exact=True).click()
    await expect(page.get_by_test_id("assignee")).to_have_text("agent-zed")
    await expect(timeline_entries(page).nth(1)).to_contain_text("by Lea Lead (lead-lea)")
    await page.get_by_role("button", name="Unassign").click()
    await expect(page.get_by_test_id("assignee")).to_have_text("nobody")
    await expect(page.get_by_role("button", name="Unassign")).to_have_count(0)
    await expect(timeline_entries(page)).to_have_count(3)


async def test_an_auditor_steps_through_the_versions(
    context: BrowserContext, http: httpx.Client
) -> None:
    issue_id = raised_issue(http)
    command(http, issue_id, "assign", {"assignee": "agent-pia"})
    command(http, issue_id, "notes", {"text": "first look"})
    command(http, issue_id, "acknowledge", {})
    page = await opened(context, issue_id, "auditor-aud", "auditor", name="Aud Itor")

    await expect(page.get_by_test_id("no-actions")).to_be_visible()
    keys = page.get_by_role("region", name="Keys").locator("kbd")
    await expect(keys).to_have_text(["u / Esc"])  # an auditor only reads
    await expect(page.get_by_role("button", name="Assign to me")).to_have_count(0)
    await expect(page.get_by_label("Note text")).to_have_count(0)
    await expect(page.get_by_role("button", name="Add note")).to_have_count(0)
    audit = page.get_by_test_id("audit")
    where = page.get_by_test_id("audit-version")
    await expect(where).to_have_text(re.compile(r"^Version 4 of 4 · acknowledged by agent-ann"))
    await expect(page.get_by_test_id("audit-changed")).to_have_text(re.compile("status"))

    await audit.get_by_role("button", name="Previous version").click()
    await expect(where).to_contain_text("Version 3 of 4 · note added")
    await expect(page.get_by_test_id("audit-changed")).to_have_text(re.compile("notes"))
    await expect(audit).to_contain_text("first look")
    await audit.get_by_role("button", name="Previous version").click()
    await expect(where).to_contain_text("Version 2 of 4 · assigned")
    await expect(audit.locator(".changed dt")).to_have_text(
        ["assignee (changed)", "updated at (changed)"]
    )
    await expect(audit.locator(".changed dd").first).to_contain_text("agent-pia (was —)")

    await page.get_by_role("button", name="State at version 1").click()
    await expect(where).to_contain_text("Version 1 of 4 · detected")
    await expect(audit.get_by_role("button", name="Previous version")).to_be_disabled()
    slider = page.get_by_label("Version", exact=True)
    await slider.focus()
    await page.keyboard.press("End")
    await expect(where).to_contain_text("Version 4 of 4")
    await expect(audit.get_by_role("button", name="Next version")).to_be_disabled()


def pharmacy_event(order_id: str, kind: str, ago_minutes: float, **data: Any) -> dict[str, Any]:
    """An event of a pharmacy order (the rules file's vertical, with its own event types)."""
    return {**event(order_id, kind, ago_minutes, **data), "vertical": "pharmacy"}


def rule_line(rule: dict[str, Any]) -> str:
    """What the history entry says of the rule behind it (issue-parts.js ``RuleRecord``)."""
    tier = rule.get("tier")
    version = str(rule["version"])
    shown = f"rule {rule['name']}"
    if tier:
        shown += f", tier ≥ {js_text(tier['threshold'])} min → {tier['severity']}"
    shown += f", rules {version[:7]}…" if len(version) > 7 else f", rules {version}"
    return shown + (f" · {rule['reason']}" if rule.get("reason") else "")


async def test_the_history_names_the_rule_and_tier_behind_the_detectors_events(
    context: BrowserContext, http: httpx.Client
) -> None:
    """A pharmacy order whose prescription has waited 11 minutes: the detector raises
    prescription_check_pending (tier 10 min, medium), and resolves it when the pharmacist
    approves. Each of those entries names the rule, the tier and the rules version (the
    `rule` of the event's data); an agent's entry names none. Where the API does not record
    the rule yet, its answer is given one on the way to the page (the rules' own version)."""
    order_id = f"ord-{uuid.uuid4().hex[:10]}"
    promise = (datetime.now(UTC) + timedelta(minutes=30)).isoformat()
    sent = http.post(
        "/api/order-events",
        json=[
            pharmacy_event(
                order_id,
                "order_placed",
                12,
                venue_id="pharmacy-1",
                customer_id="customer-1",
                promised_delivery_at=promise,
                amount=1800,
                currency="EUR",
            ),
            pharmacy_event(order_id, "venue_accepted", 11.5),
            pharmacy_event(order_id, "prescription_submitted", 11, prescription_id="rx-1"),
        ],
    )
    assert sent.status_code == 202, sent.text
    query = {"order_id": order_id, "kind": "prescription_check_pending"}

    def raised() -> dict[str, Any] | None:
        items: list[dict[str, Any]] = http.get("/api/issues", params=query).json()["items"]
        return items[0] if items else None

    issue = wait_until(raised, timeout=15, what="the prescription check's issue")
    issue_id = issue["issue_id"]
    assert issue["severity"] == "medium"
    command(http, issue_id, "assign", {"assignee": "agent-pia"})
    approved = pharmacy_event(
        order_id, "prescription_approved", 0, prescription_id="rx-1", pharmacist_id="ph-1"
    )
    assert http.post("/api/order-events", json=approved).status_code == 202

    def history() -> list[dict[str, Any]] | None:
        items: list[dict[str, Any]] = http.get(f"/api/issues/{issue_id}/events").json()["items"]
        return items if items[-1]["type"] == "resolved" else None

    events = wait_until(history, timeout=15, what="the issue resolved by the detector")
    assert [e["type"] for e in events] == ["detected", "assigned", "resolved"]
    version = http.get("/api/rules").json()["version"]
    for shown in events:
        if shown["type"] != "assigned":
            assert shown["data"]["rule"]["name"] == "prescription_check_pending"
            assert shown["data"]["rule"]["version"] == version

    page = await context.new_page()
    await opened(context, issue_id, "agent-pia", "agent", page=page)
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Prescription check pending")
    await expect(page.get_by_test_id("issue-facts")).to_contain_text("Pharmacy")
    await expect(page.get_by_test_id("evidence")).to_contain_text("rx-1")
    entries = timeline_entries(page)
    await expect(entries).to_have_count(3)
    for n, shown in enumerate(events):
        rule = shown["data"].get("rule")
        line = entries.nth(n).get_by_test_id("rule")
        if rule is None:  # the agent's assignment: no rule, and nothing in its place
            await expect(line).to_have_count(0)
            await expect(entries.nth(n)).not_to_contain_text("rules ")
            continue
        await expect(line).to_have_text(rule_line(rule))
        await expect(line).to_have_attribute("data-version", str(rule["version"]))
        await expect(entries.nth(n)).not_to_contain_text('"threshold"')  # not as raw JSON
    await expect(entries.nth(0).get_by_test_id("rule")).to_contain_text("tier ≥ 10 min → medium")
    await expect(entries.nth(2).get_by_test_id("rule")).not_to_contain_text("tier")
    # The SLA it was raised under, in words: the pharmacy's own table.
    await expect(entries.nth(0)).to_contain_text("low 30 min · medium 15 min · high 10 min")
    # The order's declared facts: the prescription events, when and what they said.
    facts = page.get_by_test_id("order-facts")
    await expect(facts).to_contain_text("pharmacist_id ph-1")
    await expect(facts).not_to_contain_text('{"')
    violations = await serious_violations(page)
    assert not violations, describe(violations)


async def test_text_from_the_api_is_shown_as_text(
    context: BrowserContext, http: httpx.Client
) -> None:
    issue_id = raised_issue(http)
    hostile = '<script>alert(1)</script> <img src=x onerror="window.__owned=1">'
    command(http, issue_id, "notes", {"text": hostile})
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)

    page = await context.new_page()
    page.on("dialog", on_dialog)
    await opened(context, issue_id, "agent-pia", "agent", page=page)
    said = page.get_by_test_id("said")
    await expect(said).to_have_text(hostile)
    assert await page.locator("img[src='x']").count() == 0
    assert await page.locator("main script").count() == 0
    assert await page.evaluate("window.__owned") is None
    assert dialogs == []


async def test_the_page_passes_axe_at_1280_and_400_px_and_is_screenshot(
    context: BrowserContext, http: httpx.Client
) -> None:
    issue = detected_issue(http)
    issue_id = issue["issue_id"]
    raised_issue(http, issue["order_id"])
    command(http, issue_id, "assign", {"assignee": "agent-pia"})
    command(http, issue_id, "acknowledge", {})
    command(http, issue_id, "notes", {"text": "Venue says the kitchen is overloaded."})
    command(
        http,
        issue_id,
        "actions",
        {"action": "contact_customer", "details": {"text": "offered a voucher"}},
    )
    command(http, issue_id, "notes", {"text": "Customer accepted; watching the pickup."})
    page = await opened(context, issue_id, "admin-ada", "admin", name="Ada Admin")
    await expect(timeline_entries(page)).to_have_count(6)
    await expect(page.get_by_test_id("audit-version")).to_contain_text("Version 6 of 6")
    violations = await serious_violations(page)
    assert not violations, describe(violations)
    await page.set_viewport_size({"width": WIDE["width"], "height": 1350})  # the history too
    await screenshot(page, "issue")

    await page.set_viewport_size(NARROW)  # type: ignore[arg-type]
    await expect(page.get_by_role("button", name="Add note")).to_be_visible()
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= NARROW["width"], f"the page scrolls sideways at 400 px ({width} px)"
    violations = await serious_violations(page)
    assert not violations, describe(violations)
