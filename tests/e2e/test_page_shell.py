"""The web page's shell: the login form, logging in and out, the headers that keep the page
safe, the files it ships (tests/e2e/browser.py drives Debian's chromium)."""

from __future__ import annotations

import http.client
import posixpath
import re
import uuid

import httpx
from playwright.async_api import Browser, BrowserContext, Page, expect

from app import bootstrap
from app.web.pages import STATIC
from tests.e2e.browser import NARROW, describe, log_in, serious_violations
from tests.tokens import TEST_SECRET, token_for


async def test_page_without_a_session_shows_the_login_form_not_an_error(
    context: BrowserContext,
) -> None:
    page = await context.new_page()
    await page.goto("/")
    await expect(page.get_by_label("Access token")).to_be_visible()
    await expect(page.get_by_role("button", name="Log in")).to_be_disabled()
    violations = await serious_violations(page)
    assert not violations, describe(violations)


async def test_logging_in_with_a_token_then_out(context: BrowserContext) -> None:
    page = await context.new_page()
    await page.goto("/")
    await page.get_by_label("Access token").fill(token_for("agent-ann", "agent", name="Ann Agent"))
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_test_id("who")).to_have_text("Ann Agent · agent")
    session = next(c for c in await context.cookies() if c.get("name") == "inbox_session")
    assert session.get("httpOnly")
    assert session.get("sameSite") == "Strict"
    # An agent has no dashboard link (it would answer 403).
    await expect(page.get_by_role("link", name="Detection")).to_have_count(0)

    await page.get_by_role("button", name="Log out").click()
    await expect(page.get_by_label("Access token")).to_be_visible()
    assert (await context.request.get("/api/issues")).status == 401


async def test_a_bad_token_is_refused_with_a_message(context: BrowserContext) -> None:
    page = await context.new_page()
    await page.goto("/")
    await page.get_by_label("Access token").fill("not.a.token")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("alert")).to_contain_text("not valid")
    assert not any(c.get("name") == "inbox_session" for c in await context.cookies())


async def test_a_lead_moves_between_pages_without_a_reload(context: BrowserContext) -> None:
    page = await context.new_page()
    await page.goto("/")
    await page.get_by_label("Access token").fill(token_for("lead-lea", "lead", name="Lea Lead"))
    await page.get_by_role("button", name="Log in").click()
    await page.get_by_role("link", name="Detection").click()
    await expect(page).to_have_url(re.compile(r"/dashboard$"))
    await expect(page.get_by_role("heading", name="Detection", exact=True)).to_be_visible()
    await page.go_back()
    await expect(page.get_by_role("heading", name="Inbox", exact=True)).to_be_visible()
    await page.set_viewport_size(NARROW)  # type: ignore[arg-type]
    await expect(page.get_by_role("button", name="Log out")).to_be_visible()
    violations = await serious_violations(page)
    assert not violations, describe(violations)


def _luminance(rgb: tuple[int, int, int]) -> float:
    def linear(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else float(((c + 0.055) / 1.055) ** 2.4)

    red, green, blue = (linear(v) for v in rgb)
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    """WCAG 2's contrast ratio of two colours."""
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def colours(css: str) -> list[tuple[int, int, int]]:
    """The rgb()/rgba() colours in a computed style, in order."""
    found = re.findall(r"rgba?\((\d+), (\d+), (\d+)", css)
    return [(int(r), int(g), int(b)) for r, g, b in found]


Rgb = tuple[int, int, int]
WHITE, GROUND, BLUE = (255, 255, 255), (243, 244, 246), (29, 78, 216)


async def _ring(
    page: Page, selector: str
) -> tuple[tuple[int, int, int], list[tuple[int, int, int]]]:
    """The focused element's outline colour, and the colours of its box-shadow (its halo)."""
    await page.locator(selector).first.focus()
    style = await page.evaluate(
        """(selector) => {
          const element = document.querySelector(selector);
          if (!element.matches(":focus-visible")) return null;
          const style = getComputedStyle(element);
          return [style.outlineColor, style.outlineStyle, style.boxShadow];
        }""",
        selector,
    )
    assert style is not None, f"{selector} shows no focus ring"
    outline, kind, shadow = style
    assert kind == "solid", style
    return colours(outline)[0], colours(shadow)


async def test_the_focus_ring_stands_out_on_the_page_and_on_the_blue_buttons(
    context: BrowserContext,
) -> None:
    """WCAG 1.4.11: the focus indicator has 3:1 against what it sits on: white, the page's
    ground, and a blue button (a light halo between the button and a dark ring)."""
    await log_in(context, "lead-lea", "lead")
    page = await context.new_page()
    await page.goto("/")
    await expect(page.get_by_role("heading", name="Inbox", exact=True)).to_be_visible()
    await page.keyboard.press("Tab")  # keyboard use: focus() shows :focus-visible
    ring, halo = await _ring(page, "button:not(.quiet):not(:disabled)")
    assert contrast(ring, WHITE) >= 3, ring
    assert contrast(ring, GROUND) >= 3, ring
    if contrast(ring, BLUE) < 3:  # a dark ring: a light halo keeps it off the button
        assert halo, "a dark ring needs a light halo against a blue button"
        assert contrast(halo[0], BLUE) >= 3, halo
        assert contrast(halo[0], ring) >= 3, halo
    link_ring, _ = await _ring(page, "a[href='/']")
    assert contrast(link_ring, WHITE) >= 3, link_ring


async def test_moving_between_pages_names_the_page_and_moves_focus_to_it(
    context: BrowserContext, http: httpx.Client
) -> None:
    """WCAG 2.4.2 and 2.4.3: each client-side page change sets document.title and moves
    focus to <main>, so a screen reader says where it is; the first load leaves focus."""
    order_id, here = f"ord-{uuid.uuid4().hex[:10]}", f"Titletown-{uuid.uuid4().hex[:8]}"
    created = http.post(
        "/api/issues",
        json={
            "order_id": order_id,
            "kind": "payment_failed",
            "severity": "low",
            "vertical": "restaurant",
            "country": "FI",
            "city": here,
            "evidence": {},
        },
    )
    assert created.status_code in (200, 201), created.text
    issue_id = created.json()["issue_id"]
    await log_in(context, "lead-lea", "lead")
    page = await context.new_page()
    await page.goto(f"/?city={here}")
    await expect(page.get_by_role("heading", name="Inbox", exact=True)).to_be_visible()
    await expect(page).to_have_title("Inbox — Support Inbox")
    assert await page.evaluate("document.activeElement === document.body")
    await page.get_by_role("link", name=order_id).first.click()
    await expect(page).to_have_title("Issue Payment failed — Support Inbox")
    await expect(page.locator("main")).to_be_focused()
    await page.go_back()
    await expect(page).to_have_title("Inbox — Support Inbox")
    await expect(page.locator("main")).to_be_focused()
    await page.get_by_role("link", name="Detection").click()
    await expect(page).to_have_title("Detection — Support Inbox")
    await expect(page.locator("main")).to_be_focused()
    await page.get_by_role("link", name="Inbox", exact=True).click()
    await expect(page).to_have_title("Inbox — Support Inbox")
    await expect(page.locator("main")).to_be_focused()
    await page.goto(f"/issues/{issue_id}")
    await expect(page).to_have_title("Issue Payment failed — Support Inbox")


def test_the_page_is_sent_with_security_headers(api: str) -> None:
    for path in ("/", "/dashboard", "/static/js/main.js", "/api/issues"):
        response = httpx.get(api + path)
        assert "Content-Security-Policy" in response.headers, path
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    shell = httpx.get(api + "/")
    assert shell.headers["content-type"].startswith("text/html")
    assert "<script>" not in shell.text  # nothing inline: every script is a file
    script = httpx.get(api + "/static/vendor/preact.module.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]


def test_no_file_outside_the_static_folder_is_served(api: str) -> None:
    # Sent as written (httpx would normalise the dots away): pages.py is static/../pages.py.
    address = httpx.URL(api)
    for path in ("/static/../pages.py", "/static/%2e%2e/pages.py", "/static/..%2fpages.py"):
        connection = http.client.HTTPConnection(address.host, address.port, timeout=10)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        assert response.status in {400, 404}, path
        assert b"create_static_files_router" not in body, path


async def test_a_reload_keeps_the_session_and_every_page_path_serves_the_shell(
    context: BrowserContext,
) -> None:
    await log_in(context, "lead-lea", "lead", name="Lea Lead")
    page = await context.new_page()
    for path in ("/", "/dashboard", "/issues/0b6ac3e4-5f4e-4f7e-9a4e-3a1f0e2b9c11"):
        await page.goto(path)
        await expect(page.get_by_test_id("who")).to_have_text("Lea Lead · lead")
    await page.reload()
    await expect(page.get_by_test_id("who")).to_have_text("Lea Lead · lead")


async def test_a_login_link_logs_in_once_and_leaves_the_address(
    browser: Browser, context: BrowserContext, api: str
) -> None:
    ticket = bootstrap.development_ticket(TEST_SECRET, role="admin", sub="demo", name="Demo")
    page = await context.new_page()
    await page.goto(f"/login#ticket={ticket}")
    await expect(page.get_by_test_id("who")).to_have_text("Demo · admin")
    assert "ticket" not in page.url  # taken out of the address (and the history) at once
    await expect(page).to_have_url(re.compile(r"/$"))

    # The same link again, in another browser: used, so the login form says why.
    other = await browser.new_context(base_url=api)
    try:
        second = await other.new_page()
        await second.goto(f"/login#ticket={ticket}")
        await expect(second.get_by_role("alert")).to_contain_text("login link")
        await expect(second.get_by_label("Access token")).to_be_visible()
    finally:
        await other.close()


def _imported(module: str) -> set[str]:
    """The modules ``module`` imports, statically and transitively (``import()`` of a page
    shown later is not followed), as paths under static/."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        text = (STATIC / current).read_text()
        for name in re.findall(r'^\s*(?:import|export)\b[^;]*?\bfrom\s*"(\.[^"]+)"', text, re.M):
            path = posixpath.normpath(posixpath.join(posixpath.dirname(current), name))
            if path not in seen:
                seen.add(path)
                todo.append(path)
    return seen


def test_the_shell_preloads_exactly_the_modules_the_first_page_imports() -> None:
    # A module left out still loads, one import level later: the first page slows; the
    # issue page and the dashboard are imported when shown, not preloaded.
    shell = (STATIC / "index.html").read_text()
    preloaded = set(re.findall(r'<link rel="modulepreload" href="/static/([^"]+)">', shell))
    assert preloaded == _imported("js/main.js")
    assert "js/inbox.js" in preloaded
    assert not preloaded & {"js/issue.js", "js/dashboard.js"}
