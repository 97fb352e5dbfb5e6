"""``GET /ready`` of an ``inbox api`` process tells when the workers it reports on stop
making progress (issue 10): a projection stalled or failing, the relay halted; and it
shows the events the projections skipped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from adapters import postgres
from app.bootstrap import Endpoints
from app.service import IssueService
from tests.api_process import running_api
from tests.conftest import RUN_ID, async_wait_until
from tests.integration.projecting import running_projections, wait_projected, write_mixed
from tests.integration.test_projection_failures import store_poison


async def test_ready_is_false_while_a_projection_stalls_or_fails_and_when_the_relay_halts(
    db: str, writer: IssueService, endpoints: Endpoints, tmp_path: Path
) -> None:
    stream = f"INBOX_{RUN_ID}_READY"
    env = {"INBOX_READY_STALL_SECONDS": "1", "INBOX_INBOX_STREAM": stream}
    with running_api(Endpoints(db, endpoints.nats_url), tmp_path / "api.log", env=env) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            last: dict[str, Any] = {}

            async def ready(code: int) -> bool:
                response = await http.get("/ready")
                last.update(response.json())
                return response.status_code == code

            # Nothing written and no projection worker anywhere: ready.
            assert await ready(200), last
            assert {p["status"] for p in last["projections"].values()} == {"not started"}

            write_mixed(writer, 5, steps=1)  # ... and no follower reads them
            assert await ready(503), last
            assert {p["status"] for p in last["projections"].values()} == {"stalled"}
            assert any("stalled" in problem for problem in last["problems"])

            await store_poison(db, writer)
            async with running_projections(db, writer):
                await wait_projected(db, timeout=30)
                await async_wait_until(lambda: ready(200), what="/ready 200")
                # Skipped events are shown, and do not make it unready.
                inbox = last["projections"]["inbox"]
                assert (inbox["status"], inbox["skipped"]) == ("running", 6)
                assert len(inbox["latest_skipped"]) == 5
                assert {"position", "issue_id", "version", "error"} <= set(
                    inbox["latest_skipped"][0]
                )
                assert last["projections"]["stats"]["skipped"] == 4

                conn = await postgres.connect(db)
                try:
                    await conn.execute("ALTER TABLE order_issues RENAME TO order_issues_away")
                    write_mixed(writer, 2, steps=1, seed=3)
                    await async_wait_until(lambda: ready(503), what="/ready 503 (failing)")
                    assert last["projections"]["orders"]["status"] == "failing"
                    assert "UndefinedTableError" in last["projections"]["orders"]["last_error"]
                    await conn.execute("ALTER TABLE order_issues_away RENAME TO order_issues")
                    await async_wait_until(lambda: ready(200), what="/ready 200 again")
                finally:
                    await conn.close()

            write_mixed(writer, 1, steps=1, seed=4)  # the followers are gone

            async def inbox_stalled() -> bool:
                # Each model is judged on its own last read: another one may be found
                # stalled (and /ready 503) a moment before the inbox is.
                return await ready(503) and last["projections"]["inbox"]["status"] == "stalled"

            await async_wait_until(inbox_stalled, what="/ready 503 (the inbox stalled)")

            conn = await postgres.connect(db)
            try:
                await conn.execute(
                    "INSERT INTO relay_state (stream, status, halted_at, error)"
                    " VALUES ($1, 'halted', 7, 'no mapping')",
                    stream,
                )
            finally:
                await conn.close()
            assert await ready(503)
            assert last["relay"]["status"] == "halted"
            assert "relay halted at position 7: no mapping" in last["problems"]
