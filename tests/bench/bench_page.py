"""The web page at scale: with a million issues in the inbox read model, how long until the
inbox's first page is rendered in a browser after navigation, and until a change made by
another client shows in the open page; each next to the floor measured in the same run.

    ./dev bench page [--issues 1000000] [--runs 10]

Floors: a navigation to the smallest page the server has (``/health``) for the first page;
the command's own round trip plus a read-your-write GET (``min_position``, the API's answer
to "the read model has it") for the live change. Targets (issue 14): the first page within
1 s of navigation, a live change within 1 s of its command.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from playwright.async_api import Browser, Page, async_playwright

from adapters import postgres
from app.bootstrap import Endpoints
from tests.api_process import running_api
from tests.bench.bench_read import load_issues
from tests.bench.common import Figure, figure, report, scratch_database, servers
from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS, WIDE
from tests.tokens import headers_for, token_for

ROW = "[data-issue-id]"
TARGET_SECONDS = 1.0


async def _logged_in_page(browser: Browser, base: str) -> Page:
    context = await browser.new_context(base_url=base, viewport=WIDE)  # type: ignore[arg-type]
    response = await context.request.post(
        "/api/session", data={"token": token_for("bench-lead", "lead", name="Bench Lead")}
    )
    assert response.status == 201, await response.text()
    return await context.new_page()


async def first_page(browser: Browser, base: str, runs: int) -> tuple[Figure, Figure]:
    """Navigation → first row of the table rendered, each run in a fresh profile (nothing
    cached); the floor: navigation → ``/health`` loaded."""
    floor, rendered = [], []
    for _ in range(runs):
        page = await _logged_in_page(browser, base)
        started = time.perf_counter()
        await page.goto("/health")
        floor.append(time.perf_counter() - started)
        started = time.perf_counter()
        await page.goto("/", wait_until="commit")
        await page.locator(ROW).first.wait_for(state="visible", timeout=30_000)
        rendered.append(time.perf_counter() - started)
        await page.context.close()
    return (
        figure("navigation to /health (floor)", floor, sum(floor)),
        figure("inbox first page rendered", rendered, sum(rendered)),
    )


async def live_change(browser: Browser, base: str, runs: int) -> tuple[Figure, Figure]:
    """A critical issue raised by another client → its row in the open inbox; the floor: the
    raise's round trip plus the GET that waits for the read model to hold it."""
    page = await _logged_in_page(browser, base)
    await page.goto("/")
    await page.locator(ROW).first.wait_for(state="visible", timeout=30_000)
    floor, shown = [], []
    with httpx.Client(base_url=base, headers=headers_for("bench-lead", "lead"), timeout=30) as http:
        for run in range(runs * 2):
            body = {
                "order_id": f"bench-page-{uuid.uuid4().hex[:12]}",
                "kind": "no_courier_assigned",
                "severity": "critical",
                "vertical": "restaurant",
                "country": "FI",
                "city": "Helsinki",
                "evidence": {"bench": True},
            }
            started = time.perf_counter()
            raised = http.post("/api/issues", json=body)
            assert raised.status_code == 201, raised.text
            issue_id, position = raised.json()["issue_id"], raised.json()["position"]
            if run % 2 == 0:  # the floor: the read model has it
                read = http.get(f"/api/issues/{issue_id}", params={"min_position": position})
                assert read.status_code == 200, read.text
                floor.append(time.perf_counter() - started)
            else:
                await page.locator(f'[data-issue-id="{issue_id}"]').wait_for(
                    state="visible", timeout=30_000
                )
                shown.append(time.perf_counter() - started)
    await page.context.close()
    return (
        figure("raise + read-your-write GET (floor)", floor, sum(floor)),
        figure("raise → row shown live in the page", shown, sum(shown)),
    )


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench page")
    parser.add_argument("--issues", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args(argv)
    with servers() as endpoints:
        async with scratch_database(endpoints.database_url) as url:
            print(f"loading {args.issues:,} issues into inbox_issues ...")
            load_seconds = await load_issues(url, args.issues)
            # New events come after the loaded rows' positions, as they would in a live log.
            conn = await postgres.connect(url, name="bench-page")
            try:
                await conn.execute(
                    "SELECT setval(pg_get_serial_sequence('inbox_events', 'notification_id'), $1)",
                    args.issues + 1,
                )
            finally:
                await conn.close()
            log = Path(tempfile.mkstemp(prefix="bench-page-api-", suffix=".log")[1])
            with running_api(
                Endpoints(url, endpoints.nats_url),
                log,
                log_level="WARNING",
                command="up",
                args=("--no-simulate",),
                env={"INBOX_PROJECTION_POLL_SECONDS": "0.5"},
                ready_path="/health",
            ) as base:
                async with async_playwright() as playwright:
                    browser = await playwright.chromium.launch(
                        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
                    )
                    try:
                        nav_floor, rendered = await first_page(browser, base, args.runs)
                        live_floor, shown = await live_change(browser, base, args.runs)
                    finally:
                        await browser.close()
    notes: dict[str, object] = {
        "issues": args.issues,
        "runs": args.runs,
        "load_seconds": round(load_seconds, 1),
        "cpus": os.cpu_count(),
    }
    report("page first load", [rendered], nav_floor, notes)
    report("page live change", [shown], live_floor, notes)
    for one in (rendered, shown):
        worst = one.p99_ms / 1e3
        verdict = "met" if worst <= TARGET_SECONDS else "MISSED"
        print(
            f"  {verdict:<7} {one.name}: median {one.p50_ms / 1e3:.3f} s,"
            f" worst {worst:.3f} s (target {TARGET_SECONDS:.0f} s)"
        )
