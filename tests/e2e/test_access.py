"""The matrix of who may call what (CONTRACT §6), generated from the app's own route table:
every ``/api`` route by every role (and no token at all) against the running API, expected
from the rule table (``app/http/access.py``). A route the table has no rule for fails here,
as a rule for a route that no longer exists does."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from litestar.routes import HTTPRoute

from app.http.access import OPEN_PATHS, RULES, allowed
from app.http.app import create_app
from app.principal import ROLES, Role
from app.settings import Settings
from tests.e2e.test_issue_api import report
from tests.tokens import TEST_SECRET, headers_for

_UNRULED = {"OPTIONS", "HEAD"}  # every path's OPTIONS: for any caller with a token


def _api_routes() -> list[tuple[str, str]]:
    services = SimpleNamespace(
        settings=Settings(jwt_secret=TEST_SECRET),
        **dict.fromkeys(("clock", "nats", "issues", "bus", "history")),
        **dict.fromkeys(("read_models", "positions", "detector")),
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


@contextlib.contextmanager
def _call(
    http: httpx.Client, method: str, path: str, headers: dict[str, str]
) -> Iterator[httpx.Response]:
    body: dict[str, Any] | None = {} if method in ("POST", "PUT", "PATCH") else None
    with http.stream(method, path, headers=headers, params=_params(path), json=body) as response:
        yield response  # the stream's head only: an SSE feed never ends


def _params(path: str) -> dict[str, str]:
    return {"version": "1"} if path.endswith("/state") else {}


@pytest.mark.parametrize("caller", CALLERS, ids=lambda c: c or "no-token")
@pytest.mark.parametrize(("method", "template"), ROUTES, ids=str)
def test_each_role_gets_what_its_rule_says(
    api: str, issue: dict[str, str], method: str, template: str, caller: Role | None
) -> None:
    path = template.format(issue_id=issue["issue_id"], order_id=issue["order_id"])
    headers = headers_for(f"matrix-{caller}", caller) if caller else {}
    with httpx.Client(base_url=api, timeout=10) as http, _call(http, method, path, headers) as r:
        code = r.status_code
    if OPEN_PATHS.match(template) or (caller and caller in allowed(method, template)):
        # 2xx, or a 4xx of the call itself (a body the matrix leaves empty, a state)
        assert code not in (401, 403), code
        assert code < 500, code
    else:
        assert code == (401 if caller is None else 403), code
