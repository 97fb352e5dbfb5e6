"""The running API as a separate process (``inbox api``), reached over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import nats
import pytest
import pytest_asyncio
from nats.js.errors import NotFoundError
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from app.bootstrap import Endpoints
from app.rules_config import SHIPPED
from app.settings import Settings
from tests.api_process import running_api
from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS, WIDE
from tests.tokens import headers_for


@contextlib.contextmanager
def inbox_up(
    endpoints: Endpoints,
    settings: Settings,
    folder: Path,
    *,
    streams_suffix: str = "",
    env: dict[str, str] | None = None,
) -> Iterator[str]:
    """``inbox up`` (the API with the relay and the projections) on this run's streams, or
    on streams of their own (``streams_suffix``, deleted at the end); yields its URL."""
    rules = folder / "rules.toml"  # the shipped rules, with short clear-for moments
    shipped = SHIPPED.read_text().replace("clear_for_seconds = 60", "clear_for_seconds = 1")
    rules.write_text(shipped.replace("for_minutes = 3", "for_minutes = 0.02"))
    inbox_stream = settings.inbox_stream + streams_suffix
    orders_stream = settings.orders_stream + streams_suffix
    environment = {
        "INBOX_RULES_FILE": str(rules),
        "INBOX_INBOX_STREAM": inbox_stream,
        "INBOX_INBOX_SUBJECT_PREFIX": settings.inbox_subject_prefix + streams_suffix,
        "INBOX_ORDERS_STREAM": orders_stream,
        "INBOX_ORDERS_SUBJECT_PREFIX": settings.orders_subject_prefix + streams_suffix,
        "INBOX_PROJECTION_POLL_SECONDS": "0.2",
        "INBOX_MIN_POSITION_WAIT_SECONDS": "2",
        **(env or {}),
    }
    # No simulator: the tests send their own orders, and judge time by the real clock.
    with running_api(
        endpoints, folder / "api.log", command="up", args=("--no-simulate",), env=environment
    ) as base_url:
        yield base_url
    asyncio.run(_delete_stream(endpoints.nats_url, inbox_stream))
    asyncio.run(_delete_stream(endpoints.nats_url, orders_stream))


@pytest.fixture(scope="session")
def api_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the ``api`` fixture's ``inbox up`` keeps its files: ``api.log`` is its output."""
    return tmp_path_factory.mktemp("api")


@pytest.fixture(scope="session")
def api(endpoints: Endpoints, settings: Settings, api_folder: Path) -> Iterator[str]:
    """``inbox up`` on this run's streams."""
    with inbox_up(endpoints, settings, api_folder) as base_url:
        yield base_url


async def _delete_stream(url: str, stream: str) -> None:
    client = await nats.connect(url)
    try:
        with contextlib.suppress(NotFoundError):
            await client.jetstream().delete_stream(stream)
    finally:
        await client.close()


@pytest.fixture
def http(api: str) -> Iterator[httpx.Client]:
    """A client of the API as an admin whose sub is ``tests.tokens.AGENT``."""
    with httpx.Client(base_url=api, timeout=10, headers=headers_for()) as client:
        yield client


@pytest_asyncio.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """Debian's headless chromium (tests/e2e/browser.py), shared by the page's tests. The
    async API: the sync one runs a loop of its own, which the tests' loop cannot share."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        await launched.close()


@pytest_asyncio.fixture
async def context(browser: Browser, api: str) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile (no cookies) on the running inbox, 1280 px wide; a page
    that logs a CSP violation or a script error fails its test."""
    opened = await browser.new_context(base_url=api, viewport=WIDE)  # type: ignore[arg-type]
    problems: list[str] = []

    def on_page(page: Page) -> None:
        page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
        page.on(
            "console",
            lambda message: (
                problems.append(f"console: {message.text}")
                if message.type == "error" and "Content Security Policy" in message.text
                else None
            ),
        )

    opened.on("page", on_page)
    yield opened
    await opened.close()
    assert not problems, "\n".join(problems)
