"""A snooze ends by itself (CONTRACT §3), seen through ``inbox up``'s API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.conftest import wait_until
from tests.e2e.test_issue_api import command, report
from tests.tokens import AGENT


def test_a_snoozed_issue_wakes_by_itself_at_its_time(http: httpx.Client) -> None:
    issue_id = report(http)["issue_id"]
    command(http, issue_id, "acknowledge", {"agent_id": AGENT})
    until = datetime.now(UTC) + timedelta(seconds=2)
    snoozed = command(http, issue_id, "snooze", {"agent_id": AGENT, "until": until.isoformat()})
    assert snoozed.status_code == 200, snoozed.text

    def woken() -> list[dict[str, Any]]:
        items = http.get(f"/api/issues/{issue_id}/events").json()["items"]
        return [e for e in items if e["type"] == "woken"]

    [event] = wait_until(woken, timeout=15, what="the woken event")
    assert event["data"]["by"] == "system"
    assert datetime.fromisoformat(str(event["occurred_at"])) >= until
    issue = http.get(f"/api/issues/{issue_id}", params={"min_position": event["position"]})
    assert (issue.json()["status"], issue.json()["snoozed_until"]) == ("acknowledged", None)
