"""The web page's tests' helpers: Debian's chromium driven by Playwright (never a browser
Playwright downloads), a logged-in browser context, axe-core's verdict, screenshots."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from axe_playwright_python.async_playwright import Axe
from playwright.async_api import BrowserContext, Page

from app.principal import Role
from tests.tokens import AGENT, token_for

# INBOX_CHROMIUM names another Chromium; ./dev test installs Debian's when there is none.
CHROMIUM = os.environ.get("INBOX_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Without these, Chromium reaches for Google's hosts, which this machine's network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The README shows these: each run of the browser tests takes them again.
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
WIDE = {"width": 1280, "height": 800}
NARROW = {"width": 400, "height": 800}


async def log_in(
    context: BrowserContext,
    sub: str = AGENT,
    role: Role = "admin",
    *,
    name: str | None = None,
    verticals: list[str] | None = None,
    countries: list[str] | None = None,
) -> None:
    """Log the context's browser in as a page would (POST /api/session sets its cookies)."""
    token = token_for(sub, role, name=name, verticals=verticals, countries=countries)
    response = await context.request.post("/api/session", data={"token": token})
    assert response.status == 201, await response.text()


async def serious_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical findings on the page as it is now."""
    results = await Axe().run(page)
    violations: list[dict[str, Any]] = results.response["violations"]
    return [v for v in violations if v.get("impact") in {"serious", "critical"}]


def describe(violations: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + ", ".join(str(node["target"]) for node in v["nodes"][:5])
        for v in violations
    )


async def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=False)
    return path


def humanised(name: str) -> str:
    """A kind or vertical as the page shows it (format.js ``humanise``):
    "prescription_check_pending" → "Prescription check pending"."""
    words = name.replace("_", " ")
    return words[:1].upper() + words[1:]
