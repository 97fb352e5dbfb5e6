"""Hostile input at the edge, over real HTTP: every text, time, integer and body size is
checked before it reaches the event store or a read model; a bad one is a precise 4xx
naming the field, never a 500 and never a row PostgreSQL refuses later."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from app.bootstrap import Endpoints
from tests.api_process import running_api
from tests.conftest import wait_until
from tests.e2e.orders import event, placed
from tests.e2e.test_issue_api import command, report
from tests.tokens import AGENT, headers_for

NUL = "x\u0000y"
HUGE = "17770496452529637944197120"  # past int64: PostgreSQL's bigint cannot take it
FAR = "9999-12-31T23:59:59Z"


def assert_refused(response: httpx.Response, status: int, field: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status_code"] == status
    assert body["field"] == field, body
    assert field in body["detail"], body


# ---- 1. characters PostgreSQL cannot store -----------------------------------------------


@pytest.mark.parametrize(
    ("name", "body", "field"),
    [
        ("assign", {"agent_id": AGENT, "assignee": NUL}, "assignee"),
        ("assign", {"agent_id": NUL}, "agent_id"),
        ("notes", {"agent_id": AGENT, "text": NUL}, "text"),
        ("escalate", {"agent_id": AGENT, "severity": "high", "reason": NUL}, "reason"),
        ("resolve", {"agent_id": AGENT, "resolution": "fixed", "note": NUL}, "note"),
        (
            "actions",
            {"agent_id": AGENT, "action": "other", "details": {"a": [1, {"b": NUL}]}},
            "details.a[1].b",
        ),
        ("actions", {"agent_id": AGENT, "action": "other", "details": {NUL: 1}}, "details"),
    ],
)
def test_a_nul_in_a_command_is_refused_naming_the_field(
    http: httpx.Client, name: str, body: dict[str, Any], field: str
) -> None:
    issue = report(http)
    assert_refused(command(http, issue["issue_id"], name, body), 422, field)
    # Nothing was stored: the issue is still at version 1.
    assert http.get(f"/api/issues/{issue['issue_id']}/events").json()["items"][-1]["version"] == 1


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"city": NUL}, "city"),
        ({"order_id": NUL}, "order_id"),
        ({"evidence": {"facts": {"venue": NUL}}}, "evidence.facts.venue"),
        ({"evidence": {"facts": {NUL: "v"}}}, "evidence.facts"),
        ({"evidence": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {}}}}}}}}}}}, None),
    ],
)
def test_a_nul_or_a_deep_object_in_a_reported_issue_is_refused(
    http: httpx.Client, overrides: dict[str, Any], field: str | None
) -> None:
    body = {
        "agent_id": AGENT,
        "order_id": f"ord-{uuid.uuid4().hex[:12]}",
        "kind": "venue_acceptance_delayed",
        "severity": "medium",
        "vertical": "restaurant",
        "country": "FI",
    } | overrides
    if field is None:  # nine levels pass; twenty do not
        assert http.post("/api/issues", json=body).status_code == 201
        deep: dict[str, Any] = {}
        for _ in range(20):
            deep = {"k": deep}
        body = {**body, "order_id": f"ord-{uuid.uuid4().hex[:12]}", "evidence": deep}
        response = http.post("/api/issues", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["field"].startswith("evidence.k.k.k")
        return
    assert_refused(http.post("/api/issues", json=body), 422, field)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"order_id": NUL}, "order_id"),
        ({"city": NUL}, "city"),
        ({"event_id": NUL}, "event_id"),
        ({"data": {"reason": NUL}}, "data.reason"),
    ],
)
def test_a_nul_in_an_order_event_is_refused_and_parked(
    http: httpx.Client, change: dict[str, Any], field: str
) -> None:
    bad = {**event(f"ord-{uuid.uuid4().hex[:10]}", "venue_rejected", 1), **change}
    assert_refused(http.post("/api/order-events", json=bad), 422, field)
    listed = http.post("/api/order-events", json=[placed(f"ord-{uuid.uuid4().hex}", 1), bad])
    assert listed.status_code == 202, listed.text
    report = listed.json()
    assert (report["accepted"], report["rejected"]) == (1, 1)
    assert report["rejections"][0]["index"] == 1
    assert field in report["rejections"][0]["reason"]


def test_a_nul_in_a_query_or_path_value_is_a_400(http: httpx.Client) -> None:
    for url in ("/api/issues?city=a%00b", "/api/stats?assignee=a%00b", "/api/orders/a%00b"):
        response = http.get(url)
        assert response.status_code == 400, (url, response.text)
        assert response.json()["field"] in ("city", "assignee", "order_id")


# ---- 2. times and integers out of range ------------------------------------------------


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda e: {**e, "occurred_at": FAR}, "occurred_at"),
        (lambda e: {**e, "occurred_at": "0001-01-01T00:00:00Z"}, "occurred_at"),
        (
            lambda e: {**e, "data": {**e["data"], "promised_delivery_at": FAR}},
            "data.promised_delivery_at",
        ),
    ],
)
def test_an_order_event_time_out_of_range_is_a_422_not_a_500(
    http: httpx.Client, make: Any, field: str
) -> None:
    bad = make(placed(f"ord-{uuid.uuid4().hex[:10]}", 1))
    assert_refused(http.post("/api/order-events", json=bad), 422, field)
    eta = {**event(f"ord-{uuid.uuid4().hex}", "eta_updated", 1), "data": {}}
    eta["data"]["estimated_delivery_at"] = FAR
    response = http.post("/api/order-events", json=[eta, bad])
    assert response.status_code == 202, response.text
    assert [r["index"] for r in response.json()["rejections"]] == [0, 1]


def test_a_snooze_until_out_of_range_is_a_422(http: httpx.Client) -> None:
    issue = report(http)
    response = command(http, issue["issue_id"], "snooze", {"agent_id": AGENT, "until": FAR})
    assert_refused(response, 422, "until")


@pytest.mark.parametrize(
    ("url", "field"),
    [
        (f"/api/events?after={HUGE}", "after"),
        (f"/api/events?limit={HUGE}", "limit"),
        (f"/api/issues?min_position={HUGE}", "min_position"),
        (f"/api/stats?min_position={HUGE}", "min_position"),
        (f"/api/orders/o-1?min_position={HUGE}", "min_position"),
        (f"/api/issues/{uuid.uuid4()}?min_position={HUGE}", "min_position"),
        (f"/api/issues/{uuid.uuid4()}/state?version={HUGE}", "version"),
        (f"/api/stream?after={HUGE}", "after"),
        ("/api/detection/kpi?until=0001-01-01T01:01:14Z", "until"),
        ("/api/detection/kpi?since=9999-12-31T23:59:59Z", "since"),
        ("/api/detection/kpi?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "since"),
    ],
)
def test_a_query_value_out_of_range_is_a_400(http: httpx.Client, url: str, field: str) -> None:
    assert_refused(http.get(url), 400, field)


@pytest.mark.parametrize("value", ["1700000000", "0.5", "2026-11-25"])
def test_a_query_time_is_an_rfc_3339_time_not_a_number(http: httpx.Client, value: str) -> None:
    # A number once passed as seconds since 1970 (Litestar converts query values leniently).
    assert_refused(http.get("/api/detection/kpi", params={"until": value}), 400, "until")


def test_a_last_event_id_past_int64_is_a_400(http: httpx.Client) -> None:
    response = http.get("/api/stream", headers={"Last-Event-ID": HUGE})
    assert_refused(response, 400, "Last-Event-ID")


# ---- 3. sizes and depth -----------------------------------------------------------------


def test_bodies_too_deep_or_too_large_are_refused_before_they_are_used(
    http: httpx.Client,
) -> None:
    deep = b'{"a":' * 20_000 + b"1" + b"}" * 20_000  # far past the decoder's recursion limit
    headers = {"Content-Type": "application/json"}
    for path in ("/api/order-events", "/api/issues"):
        response = http.post(path, content=deep, headers=headers)
        assert response.status_code == 400, response.text
    issue = report(http)
    large = {"agent_id": AGENT, "text": "x" * 2_000_000}
    response = command(http, issue["issue_id"], "notes", large)
    assert_refused(response, 413, "body")
    # msgspec refuses a lone surrogate while decoding: malformed JSON, like invalid UTF-8.
    for text in (b'"\\ud800"', b'"\\udc00x"', b'"\xed\xa0\x80"'):
        body = b'{"text": ' + text + b"}"
        response = http.post(
            f"/api/issues/{issue['issue_id']}/notes", content=body, headers=headers
        )
        assert response.status_code == 400, response.text


# ---- 4. what a body of order events must hold --------------------------------------------


@pytest.mark.parametrize("body", [[1, 2, 3], [], "event", 7, None, [[{}]]])
def test_a_body_holding_no_event_object_is_a_400(http: httpx.Client, body: Any) -> None:
    assert_refused(http.post("/api/order-events", json=body), 400, "body")


def test_a_list_with_a_non_object_is_judged_item_by_item(http: httpx.Client) -> None:
    good = placed(f"ord-{uuid.uuid4().hex[:10]}", 1)
    response = http.post("/api/order-events", json=[good, 1, "x"])
    assert response.status_code == 202, response.text
    report = response.json()
    assert (report["accepted"], report["rejected"]) == (1, 2)
    assert [r["index"] for r in report["rejections"]] == [1, 2]


# ---- 5. a client that goes away mid-upload ----------------------------------------------


@pytest.fixture(scope="module")
def own_api(
    endpoints: Endpoints, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, str]]:
    """An ``inbox api`` of this module's own, whose log the test reads."""
    log_path = tmp_path_factory.mktemp("hostile") / "api.log"
    with running_api(endpoints, log_path) as base_url:
        yield log_path, base_url


def test_a_client_gone_mid_upload_is_one_log_line_without_a_trace(
    own_api: tuple[Path, str],
) -> None:
    log_path, base_url = own_api
    url = urlsplit(base_url)
    issue_id = uuid.uuid4()
    with socket.create_connection((url.hostname or "127.0.0.1", url.port or 80)) as sock:
        sock.sendall(
            f"POST /api/issues/{issue_id}/notes HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: {headers_for()['Authorization']}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            '{"agent_id": "a", "te'.encode()
        )
    wait_until(lambda: "disconnected" in log_path.read_text(), what="the disconnect logged")
    lines = [line for line in log_path.read_text().splitlines() if "disconnected" in line]
    assert len(lines) == 1, lines
    assert " ERROR " not in lines[0]
    assert "Traceback" not in log_path.read_text()
