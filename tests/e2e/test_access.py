"""The matrix of who may call what (CONTRACT §6), generated from the app's own route table:
every ``/api`` route by every role (and no token at all) against the running API, expected
from the rule table (``app/http/access.py``). A route the table has no rule for fails here,
as a rule for a route that no longer exists does."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, get_args

import httpx
import pytest
from litestar.routes import HTTPRoute

from app.http.access import OPEN_PATHS, RULES, allowed
from app.http.app import create_app
from app.principal import ROLES, Role
from app.settings import Settings
from domain.values import Action, Resolution, Status
from tests.conftest import wait_until
from tests.e2e.test_issue_api import future, report
from tests.tokens import TEST_SECRET, headers_for

_UNRULED = {"OPTIONS", "HEAD"}  # every path's OPTIONS: for any caller with a token


def _api_routes() -> list[tuple[str, str]]:
    services = SimpleNamespace(
        settings=Settings(jwt_secret=TEST_SECRET),
        **dict.fromkeys(("clock", "nats", "issues", "bus", "history")),
        **dict.fromkeys(("read_models", "positions", "detector", "login_tickets", "rules")),
    )
    app = create_app(services)
    return sorted(
        (method, route.path_format)
        for route in app.routes
        if isinstance(route, HTTPRoute) and route.path_format.startswith("/api/")
        for method in route.methods - _UNRULED
    )


ROUTES = _api_routes()
CALLERS: list[Role | None] = [*ROLES, None]


def test_every_api_route_has_a_rule_and_every_rule_a_route() -> None:
    ruled = {route for route in ROUTES if not OPEN_PATHS.match(route[1])}
    assert len(ruled) > 20  # the route table was read
    assert sorted(ruled - set(RULES)) == [], "routes without a rule (403 for every role)"
    assert sorted(set(RULES) - ruled) == [], "rules for routes the app does not have"


@pytest.fixture(scope="module")
def issue(api: str) -> dict[str, str]:
    """The ids the routes' paths take: an issue raised for an order of its own."""
    order_id = f"ord-{uuid.uuid4().hex[:12]}"
    with httpx.Client(base_url=api, timeout=10, headers=headers_for()) as http:
        created = report(http, order_id=order_id)
    return {"issue_id": created["issue_id"], "order_id": order_id}


# A valid body for each command, so that what decides the answer is the role and the scope,
# not a body the route refuses first.
_BODIES: dict[str, dict[str, Any]] = {
    "escalate": {"severity": "high", "reason": "matrix"},
    "notes": {"text": "matrix"},
    "actions": {"action": get_args(Action)[0]},
    "snooze": {"until": future()},
    "resolve": {"resolution": get_args(Resolution)[0]},
    "reopen": {"reason": "matrix"},
}


def _body(method: str, template: str) -> dict[str, Any] | None:
    if method not in ("POST", "PUT", "PATCH"):
        return None
    if template == "/api/issues":  # raised by hand, for an order of its own, in Finland
        return {
            "order_id": f"ord-{uuid.uuid4().hex[:12]}",
            "kind": "venue_acceptance_delayed",
            "severity": "medium",
            "vertical": "restaurant",
            "country": "FI",
        }
    return _BODIES.get(template.rsplit("/", 1)[-1], {})


def _params(path: str) -> dict[str, str]:
    return {"version": "1"} if path.endswith("/state") else {}


@contextlib.contextmanager
def _call(
    http: httpx.Client, method: str, template: str, path: str, headers: dict[str, str]
) -> Iterator[httpx.Response]:
    body = _body(method, template)
    with http.stream(method, path, headers=headers, params=_params(path), json=body) as response:
        yield response  # the stream's head only: an SSE feed never ends


# Open to every role, but it answers who the caller is (app/http/session.py): none is 401.
_WHO_AM_I = ("GET", "/api/session")


@pytest.mark.parametrize("caller", CALLERS, ids=lambda c: c or "no-token")
@pytest.mark.parametrize(("method", "template"), ROUTES, ids=str)
def test_each_role_gets_what_its_rule_says(
    api: str, issue: dict[str, str], method: str, template: str, caller: Role | None
) -> None:
    path = template.format(issue_id=issue["issue_id"], order_id=issue["order_id"])
    headers = headers_for(f"matrix-{caller}", caller) if caller else {}
    with (
        httpx.Client(base_url=api, timeout=10) as http,
        _call(http, method, template, path, headers) as r,
    ):
        code = r.status_code
    if (method, template) == _WHO_AM_I and caller is None:
        assert code == 401, code
    elif OPEN_PATHS.match(template) or (caller and caller in allowed(method, template)):
        # 2xx, or a 4xx of the call itself (a body the matrix leaves empty, a state)
        assert code not in (401, 403), code
        assert code < 500, code
    else:
        assert code == (401 if caller is None else 403), code


# A caller whose scope holds none of the matrix issue's market (it is in Finland).
ELSEWHERE = ["ZZ"]
_SCOPED = [
    (method, template)
    for method, template in ROUTES
    if not OPEN_PATHS.match(template) and template != "/api/order-events"
]


@pytest.mark.parametrize("caller", ROLES)
@pytest.mark.parametrize(("method", "template"), _SCOPED, ids=str)
def test_out_of_scope_is_unknown_to_each_role(
    api: str, issue: dict[str, str], method: str, template: str, caller: Role
) -> None:
    """The same matrix for a caller of another market: what its role may not call is still
    403; an issue or order out of its scope is 404 as an unknown one; raising one there is
    422; a list is answered, without the issue."""
    path = template.format(issue_id=issue["issue_id"], order_id=issue["order_id"])
    headers = headers_for(f"elsewhere-{caller}", caller, countries=ELSEWHERE)
    with (
        httpx.Client(base_url=api, timeout=10) as http,
        _call(http, method, template, path, headers) as r,
    ):
        code = r.status_code
        if code == 200 and r.headers.get("content-type", "").startswith("application/json"):
            r.read()
            body = r.text
        else:
            body = ""
    if caller not in allowed(method, template):
        assert code == 403, code
    elif "{issue_id}" in template or "{order_id}" in template:
        assert code == 404, code
    elif (method, template) == ("POST", "/api/issues"):
        assert code == 422, code
    else:
        assert code == 200, code
        assert issue["issue_id"] not in body
        assert issue["order_id"] not in body


def test_the_matrix_issue_is_seen_in_scope(api: str, issue: dict[str, str]) -> None:
    """The other side of the out-of-scope lists: in scope, the same reads hold the issue."""
    headers = headers_for("in-scope", "auditor", countries=["FI"])
    # The matrix's callers may have resolved it, which the inbox's default view leaves out.
    shown: dict[str, str | list[str]] = {
        "status": list(get_args(Status)),
        "order_id": issue["order_id"],
    }
    with httpx.Client(base_url=api, timeout=10, headers=headers) as http:
        wait_until(
            lambda: issue["issue_id"] in http.get("/api/issues", params=shown).text,
            what="the issue in the inbox",
        )
        logged: set[str] = set()
        after: int | None = 0
        while after is not None:  # the whole log this caller may read, page by page
            page = http.get("/api/events", params={"after": after, "limit": 500}).json()
            logged |= {item["issue_id"] for item in page["items"]}
            after = page["next_after"]
        assert issue["issue_id"] in logged
        assert http.get(f"/api/orders/{issue['order_id']}").status_code == 200
