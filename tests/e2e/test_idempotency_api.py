"""``Idempotency-Key`` over HTTP: a client that retries gets the first answer, and the
command is applied once, also when the first answer was a 503."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from app.bootstrap import Endpoints
from domain.issue import issue_id_for
from tests.api_process import running_api
from tests.conftest import wait_until
from tests.e2e.test_issue_api import command, report
from tests.tokens import AGENT, headers_for


def notes_of(http: httpx.Client, issue_id: str) -> list[str]:
    events = http.get(f"/api/issues/{issue_id}/events").json()["items"]
    return [e["data"]["text"] for e in events if e["type"] == "note_added"]


def test_a_retried_command_is_answered_the_same_and_applied_once(http: httpx.Client) -> None:
    issue_id = report(http)["issue_id"]
    key = {"Idempotency-Key": str(uuid.uuid4())}
    body = {"agent_id": AGENT, "text": "called the customer"}
    first = command(http, issue_id, "notes", body, **key)
    again = command(http, issue_id, "notes", body, **key)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert notes_of(http, issue_id) == ["called the customer"]


def test_raising_an_issue_twice_with_one_key_is_201_both_times(http: httpx.Client) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    body = {
        "agent_id": AGENT,
        "order_id": f"ord-{uuid.uuid4().hex[:12]}",
        "kind": "payment_failed",
        "severity": "high",
        "vertical": "grocery",
        "country": "FI",
    }
    first = http.post("/api/issues", json=body, headers=key)
    again = http.post("/api/issues", json=body, headers=key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()


def test_a_key_reused_for_another_request_is_422(http: httpx.Client) -> None:
    issue_id = report(http)["issue_id"]
    key = {"Idempotency-Key": str(uuid.uuid4())}
    command(http, issue_id, "notes", {"agent_id": AGENT, "text": "one"}, **key)
    other = command(http, issue_id, "notes", {"agent_id": AGENT, "text": "two"}, **key)
    assert other.status_code == 422
    assert other.json()["field"] == "Idempotency-Key"
    assert notes_of(http, issue_id) == ["one"]


def test_a_refused_command_is_refused_again_for_its_key(http: httpx.Client) -> None:
    issue_id = report(http)["issue_id"]
    key = {"Idempotency-Key": str(uuid.uuid4())}
    resolve = {"agent_id": AGENT, "resolution": "fixed", "note": ""}
    assert command(http, issue_id, "resolve", resolve).status_code == 200
    refused = command(http, issue_id, "resolve", resolve, **key)
    assert refused.status_code == 409
    reopened = command(http, issue_id, "reopen", {"agent_id": AGENT, "reason": "again"})
    assert reopened.status_code == 200
    # The state would allow it now; the key's first answer stands.
    again = command(http, issue_id, "resolve", resolve, **key)
    assert again.status_code == 409
    assert again.json() == refused.json()
    after = {"min_position": reopened.json()["position"]}
    shown = http.get(f"/api/issues/{issue_id}", params=after)
    assert shown.json()["status"] == "open"


@pytest.mark.parametrize("bad", ["", "x" * 256, "caf\u00e9", "a b", "a\tb"])
def test_a_malformed_key_is_400_naming_the_header(http: httpx.Client, bad: str) -> None:
    issue_id = report(http)["issue_id"]
    response = http.post(
        f"/api/issues/{issue_id}/notes",
        json={"agent_id": AGENT, "text": "x"},
        headers={b"Idempotency-Key": bad.encode("utf-8")},
    )
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "Idempotency-Key"


@pytest.fixture(scope="module")
def impatient_api(endpoints: Endpoints, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An API that answers 503 after one second without the event store's answer."""
    log_path: Path = tmp_path_factory.mktemp("impatient") / "api.log"
    env = {"INBOX_COMMAND_TIMEOUT_SECONDS": "1"}
    with running_api(endpoints, log_path, env=env) as base_url:
        yield base_url


def test_a_command_answered_503_is_applied_once_when_retried(
    endpoints: Endpoints, impatient_api: str
) -> None:
    with httpx.Client(base_url=impatient_api, timeout=10, headers=headers_for()) as http:
        issue_id = report(http)["issue_id"]
        key = {"Idempotency-Key": str(uuid.uuid4())}
        body = {"agent_id": AGENT, "text": "refund promised"}
        with psycopg.connect(endpoints.database_url) as blocker:
            # The event store cannot store anything until the lock goes: the command is
            # taken, then not answered in time; it lands once the lock goes.
            blocker.execute("LOCK TABLE inbox_events IN EXCLUSIVE MODE")
            first = command(http, issue_id, "notes", body, **key)
            assert first.status_code == 503, first.text
            blocker.rollback()

        def retried() -> httpx.Response | None:
            response = command(http, issue_id, "notes", body, **key)
            return response if response.status_code == 200 else None

        answer = wait_until(retried, timeout=15, what="the retry to be answered")
        assert answer.json()["version"] == 2
        assert command(http, issue_id, "notes", body, **key).json() == answer.json()
        assert notes_of(http, issue_id) == ["refund promised"]


def test_a_not_found_is_not_kept_for_the_key(http: httpx.Client) -> None:
    """The issue a command names may still be on its way (its report answered 503): a
    404 is answered, not kept, so the same retry succeeds once the issue exists."""
    order_id = f"ord-{uuid.uuid4().hex[:12]}"
    issue_id = str(issue_id_for(order_id, "venue_acceptance_delayed"))
    key = {"Idempotency-Key": str(uuid.uuid4())}
    body = {"agent_id": AGENT, "text": "on its way"}
    assert command(http, issue_id, "notes", body, **key).status_code == 404
    report(http, order_id=order_id)
    again = command(http, issue_id, "notes", body, **key)
    assert again.status_code == 200, again.text
    assert notes_of(http, issue_id) == ["on its way"]
