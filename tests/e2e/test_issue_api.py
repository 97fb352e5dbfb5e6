"""Every issue route over HTTP, success and failure (CONTRACT §5)."""

from __future__ import annotations

import concurrent.futures
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.tokens import AGENT, headers_for


def report(http: httpx.Client, **overrides: Any) -> dict[str, Any]:
    body = {
        "agent_id": AGENT,
        "order_id": f"ord-{uuid.uuid4().hex[:12]}",
        "kind": "venue_acceptance_delayed",
        "severity": "medium",
        "vertical": "restaurant",
        "country": "FI",
        "city": "Helsinki",
        "evidence": {"minutes_waiting": 6},
    } | overrides
    response = http.post("/api/issues", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def command(
    http: httpx.Client, issue_id: str, name: str, body: dict[str, Any], **headers: str
) -> httpx.Response:
    return http.post(f"/api/issues/{issue_id}/{name}", json=body, headers=headers)


def future(minutes: int = 30) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()


# name, body, the status the issue shows afterwards
HAPPY_PATH: list[tuple[str, dict[str, Any], str]] = [
    ("escalate", {"agent_id": AGENT, "severity": "high", "reason": "customer waiting"}, "open"),
    ("assign", {"agent_id": AGENT}, "open"),
    ("unassign", {"agent_id": AGENT}, "open"),
    ("assign", {"agent_id": AGENT, "assignee": "agent-bob"}, "open"),
    ("acknowledge", {"agent_id": "agent-bob"}, "acknowledged"),
    ("notes", {"agent_id": "agent-bob", "text": "called the venue"}, "acknowledged"),
    (
        "actions",
        {"agent_id": "agent-bob", "action": "compensate", "details": {"amount": 500}},
        "acknowledged",
    ),
    ("snooze", {"agent_id": "agent-bob", "until": future()}, "snoozed"),
    ("wake", {"agent_id": "agent-bob"}, "acknowledged"),
    ("resolve", {"agent_id": "agent-bob", "resolution": "compensated", "note": "ok"}, "resolved"),
    ("reopen", {"agent_id": "agent-bob", "reason": "customer called again"}, "open"),
]


def test_the_whole_lifecycle_over_http(http: httpx.Client) -> None:
    created = report(http)
    issue_id = created["issue_id"]
    assert created["version"] == 1
    last_position = created["position"]
    for version, (name, body, status) in enumerate(HAPPY_PATH, start=2):
        # Each step by the agent its body names, who is the token's sub (a lead: one step
        # gives the issue to another agent).
        caller = headers_for(body["agent_id"], role="lead")
        response = command(http, issue_id, name, body, **caller, **{"If-Match": f'"{version - 1}"'})
        assert response.status_code == 200, (name, response.text)
        result = response.json()
        assert result["issue_id"] == issue_id
        assert result["version"] == version
        assert result["position"] > last_position
        last_position = result["position"]
        shown = http.get(f"/api/issues/{issue_id}", params={"min_position": last_position})
        assert shown.json()["status"] == status, name
        assert shown.headers["ETag"] == f'"{version}"'

    issue = http.get(f"/api/issues/{issue_id}", params={"min_position": last_position}).json()
    assert issue["assignee"] == "agent-bob"
    assert issue["severity"] == "high"
    assert issue["priority"] == 300
    assert (issue["note_count"], issue["action_count"], issue["reopen_count"]) == (1, 1, 1)
    assert issue["due_at"] > issue["detected_at"]
    audit = http.get(f"/api/issues/{issue_id}/state", params={"version": 12}).json()
    assert audit["notes"][0]["text"] == "called the venue"
    assert audit["actions"][0]["details"] == {"amount": 500}

    events = http.get(f"/api/issues/{issue_id}/events").json()["items"]
    assert [e["type"] for e in events] == [
        "detected",
        "escalated",
        "assigned",
        "unassigned",
        "assigned",
        "acknowledged",
        "note_added",
        "action_taken",
        "snoozed",
        "woken",
        "resolved",
        "reopened",
    ]
    assert [e["version"] for e in events] == list(range(1, len(events) + 1))
    assert all(e["issue_id"] == issue_id for e in events)
    assert events[0]["data"]["order_id"] == issue["order_id"]
    assert events[-1]["position"] == last_position


def test_state_at_a_version(http: httpx.Client) -> None:
    issue_id = report(http)["issue_id"]
    command(http, issue_id, "acknowledge", {"agent_id": AGENT})
    command(http, issue_id, "resolve", {"agent_id": AGENT, "resolution": "fixed"})
    states = [
        http.get(f"/api/issues/{issue_id}/state", params={"version": v}).json() for v in (1, 2, 3)
    ]
    assert [s["status"] for s in states] == ["open", "acknowledged", "resolved"]
    assert [s["version"] for s in states] == [1, 2, 3]
    assert http.get(f"/api/issues/{issue_id}/state", params={"version": 4}).status_code == 404
    for bad in ("0", "-1", "abc", ""):
        response = http.get(f"/api/issues/{issue_id}/state", params={"version": bad})
        assert response.status_code == 400, (bad, response.text)
    assert http.get(f"/api/issues/{issue_id}/state").status_code == 400


def test_the_global_log_pages_in_position_order(http: httpx.Client) -> None:
    start = http.get("/ready").json()["event_store_position"]
    ids = [report(http)["issue_id"] for _ in range(5)]
    page = http.get("/api/events", params={"after": start, "limit": 3}).json()
    assert len(page["items"]) == 3
    assert page["next_after"] == page["items"][-1]["position"]
    rest = http.get("/api/events", params={"after": page["next_after"], "limit": 1000}).json()
    items = page["items"] + rest["items"]
    assert rest["next_after"] is None
    positions = [item["position"] for item in items]
    assert positions == sorted(positions)
    assert {item["issue_id"] for item in items} >= set(ids)
    assert http.get("/api/events", params={"limit": 0}).status_code == 400
    assert http.get("/api/events", params={"limit": 1001}).status_code == 400
    assert http.get("/api/events", params={"after": -1}).status_code == 400


REFUSED = [
    # (setup commands, refused command, body)
    ([], "unassign", {"agent_id": AGENT}),
    ([], "wake", {"agent_id": AGENT}),
    ([], "reopen", {"agent_id": AGENT, "reason": "x"}),
    ([("acknowledge", {"agent_id": AGENT})], "acknowledge", {"agent_id": AGENT}),
    ([("assign", {"agent_id": AGENT})], "assign", {"agent_id": AGENT}),
    (
        [("resolve", {"agent_id": AGENT, "resolution": "fixed"})],
        "snooze",
        {"agent_id": AGENT, "until": future()},
    ),
    (
        [("resolve", {"agent_id": AGENT, "resolution": "fixed"})],
        "actions",
        {"agent_id": AGENT, "action": "other"},
    ),
    (
        [("resolve", {"agent_id": AGENT, "resolution": "fixed"})],
        "resolve",
        {"agent_id": AGENT, "resolution": "fixed"},
    ),
    ([], "escalate", {"agent_id": AGENT, "severity": "low", "reason": "x"}),
]


@pytest.mark.parametrize(("setup", "name", "body"), REFUSED)
def test_a_refused_transition_is_409(
    http: httpx.Client, setup: list[tuple[str, dict[str, Any]]], name: str, body: dict[str, Any]
) -> None:
    issue_id = report(http)["issue_id"]
    for step, step_body in setup:
        assert command(http, issue_id, step, step_body).status_code == 200
    response = command(http, issue_id, name, body)
    assert response.status_code == 409, response.text
    error = response.json()
    assert error["status_code"] == 409
    assert "cannot" in error["detail"]


def test_reporting_the_same_order_and_kind_twice_is_409(http: httpx.Client) -> None:
    order_id = f"ord-{uuid.uuid4().hex[:8]}"
    report(http, order_id=order_id)
    again = http.post(
        "/api/issues",
        json={
            "agent_id": AGENT,
            "order_id": order_id,
            "kind": "venue_acceptance_delayed",
            "severity": "low",
            "vertical": "restaurant",
            "country": "FI",
        },
    )
    assert again.status_code == 409


def test_if_match_mismatch_is_412_and_changes_nothing(http: httpx.Client) -> None:
    issue_id = report(http)["issue_id"]
    response = command(http, issue_id, "acknowledge", {"agent_id": AGENT}, **{"If-Match": '"7"'})
    assert response.status_code == 412
    assert response.json()["current_version"] == 1
    assert http.get(f"/api/issues/{issue_id}/events").json()["items"][-1]["version"] == 1


@pytest.mark.parametrize(("if_match", "version"), [('W/"1"', 2), ("1", 2), ("*", 2)])
def test_weak_bare_and_star_if_match_are_understood(
    http: httpx.Client, if_match: str, version: int
) -> None:
    issue_id = report(http)["issue_id"]
    ok = command(
        http, issue_id, "notes", {"agent_id": AGENT, "text": "x"}, **{"If-Match": if_match}
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["version"] == version


def test_a_malformed_if_match_is_400(http: httpx.Client) -> None:
    issue_id = report(http)["issue_id"]
    response = command(http, issue_id, "acknowledge", {"agent_id": AGENT}, **{"If-Match": "soon"})
    assert response.status_code == 400
    assert response.json()["field"] == "If-Match"


@pytest.mark.parametrize(
    "name",
    [
        "assign",
        "unassign",
        "acknowledge",
        "notes",
        "actions",
        "snooze",
        "resolve",
        "reopen",
        "escalate",
        "wake",
    ],
)
def test_an_unknown_issue_is_404(http: httpx.Client, name: str) -> None:
    body = {
        "agent_id": AGENT,
        "text": "x",
        "action": "other",
        "until": future(),
        "resolution": "fixed",
        "reason": "x",
        "severity": "high",
    }
    allowed = {
        "assign": {"agent_id"},
        "unassign": {"agent_id"},
        "acknowledge": {"agent_id"},
        "wake": {"agent_id"},
        "notes": {"agent_id", "text"},
        "actions": {"agent_id", "action"},
        "snooze": {"agent_id", "until"},
        "resolve": {"agent_id", "resolution"},
        "reopen": {"agent_id", "reason"},
        "escalate": {"agent_id", "severity", "reason"},
    }[name]
    response = command(http, str(uuid.uuid4()), name, {k: body[k] for k in allowed})
    assert response.status_code == 404, response.text
    assert response.json()["status_code"] == 404


@pytest.mark.parametrize(
    "path", ["/api/issues/{id}", "/api/issues/{id}/events", "/api/issues/{id}/state?version=1"]
)
def test_reading_an_unknown_issue_is_404(http: httpx.Client, path: str) -> None:
    assert http.get(path.format(id=uuid.uuid4())).status_code == 404
    assert http.get(path.format(id="not-a-uuid")).status_code in (400, 404)


@pytest.mark.parametrize(
    ("name", "body", "field"),
    [
        # The acting agent is the token's sub: a body naming another is refused.
        ("assign", {"agent_id": "agent-bob"}, "agent_id"),
        ("assign", {"agent_id": ""}, "agent_id"),
        ("assign", {"agent_id": 5}, "agent_id"),
        ("assign", {"agent_id": AGENT, "extra": 1}, "extra"),
        ("notes", {"agent_id": AGENT}, "text"),
        ("notes", {"agent_id": AGENT, "text": ""}, "text"),
        ("notes", {"agent_id": AGENT, "text": "x" * 4001}, "text"),
        ("actions", {"agent_id": AGENT, "action": "bribe"}, "action"),
        ("actions", {"agent_id": AGENT, "action": "other", "details": [1]}, "details"),
        (
            "actions",
            {"agent_id": AGENT, "action": "other", "details": {"x": "y" * 9000}},
            "details",
        ),
        (
            "actions",
            {"agent_id": AGENT, "action": "other", "details": {"x": {"_type_": "t", "_data_": 1}}},
            "details",
        ),
        ("snooze", {"agent_id": AGENT, "until": "tomorrow"}, "until"),
        ("snooze", {"agent_id": AGENT, "until": "2020-01-01T00:00:00Z"}, "until"),
        ("snooze", {"agent_id": AGENT, "until": "2099-01-01T00:00:00"}, "until"),
        ("resolve", {"agent_id": AGENT, "resolution": "magic"}, "resolution"),
        ("reopen", {"agent_id": AGENT}, "reason"),
        ("escalate", {"agent_id": AGENT, "severity": "enormous", "reason": "x"}, "severity"),
    ],
)
def test_invalid_values_are_422_naming_the_field(
    http: httpx.Client, name: str, body: dict[str, Any], field: str
) -> None:
    issue_id = report(http)["issue_id"]
    response = command(http, issue_id, name, body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["status_code"] == 422
    assert field in error["detail"]
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    "field_value",
    [
        {"kind": "alien_invasion"},
        {"severity": "x"},
        {"vertical": "spaceship"},
        {"country": "fin"},
        {"order_id": ""},
        {"evidence": {"blob": "z" * 9000}},
    ],
)
def test_reporting_with_invalid_values_is_422(
    http: httpx.Client, field_value: dict[str, Any]
) -> None:
    body = {
        "agent_id": AGENT,
        "order_id": "ord-x",
        "kind": "payment_failed",
        "severity": "low",
        "vertical": "retail",
        "country": "SE",
    } | field_value
    response = http.post("/api/issues", json=body)
    assert response.status_code == 422, response.text
    assert next(iter(field_value)) in response.json()["detail"]


@pytest.mark.parametrize("raw", [b"{", b"not json", b'{"agent_id": "a",}', b"\xff\xfe"])
def test_malformed_json_is_400(http: httpx.Client, raw: bytes) -> None:
    issue_id = report(http)["issue_id"]
    response = http.post(
        f"/api/issues/{issue_id}/acknowledge",
        content=raw,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["status_code"] == 400
    assert "Traceback" not in response.text


def test_absurdly_nested_json_is_400_not_500(http: httpx.Client) -> None:
    issue_id = report(http)["issue_id"]
    body = '{"agent_id": "a", "action": "other", "details": ' + '{"n": ' * 5000 + "1" + "}" * 5001
    response = http.post(
        f"/api/issues/{issue_id}/actions",
        content=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code in (400, 422), response.text
    assert "Traceback" not in response.text


def test_health_ready_openapi_metrics(http: httpx.Client) -> None:
    assert http.get("/health").json() == {"status": "ok"}
    ready = http.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["database"] is True
    assert ready.json()["nats"] is True
    assert ready.json()["relay"]["lag"] >= 0
    schema = http.get("/schema/openapi.json").json()
    for path in (
        "/api/issues/{issue_id}/assign",
        "/api/issues/{issue_id}/events",
        "/api/issues/{issue_id}/state",
        "/api/events",
    ):
        assert path in schema["paths"], path
    metrics = http.get("/metrics").text
    assert "inbox_commands_total" in metrics
    assert "inbox_command_batch_size" in metrics


def test_concurrent_commands_on_one_issue_with_if_match_one_wins(http: httpx.Client) -> None:
    """Ten agents act on version 1 at once: exactly one succeeds, nine are told 412."""
    issue_id = report(http)["issue_id"]

    def note(n: int) -> int:
        caller = headers_for(f"a{n}", role="agent")
        with httpx.Client(base_url=str(http.base_url), timeout=10, headers=caller) as client:
            return command(
                client,
                issue_id,
                "notes",
                {"agent_id": f"a{n}", "text": "mine"},
                **{"If-Match": '"1"'},
            ).status_code

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        codes = sorted(pool.map(note, range(10)))
    assert codes == [200] + [412] * 9


def test_an_issue_raised_by_hand_is_due_by_its_verticals_sla(http: httpx.Client) -> None:
    """The shipped pharmacy acts on a high issue within 10 minutes, a restaurant within 15."""
    for vertical, minutes in (("pharmacy", 10), ("restaurant", 15)):
        created = report(http, vertical=vertical, kind="payment_failed", severity="high")
        shown = http.get(
            f"/api/issues/{created['issue_id']}", params={"min_position": created["position"]}
        ).json()
        due = datetime.fromisoformat(shown["due_at"]) - datetime.fromisoformat(shown["detected_at"])
        assert due == timedelta(minutes=minutes), vertical
