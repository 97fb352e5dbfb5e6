"""The role guard fails closed: a route the rule table does not name is refused to every
role, admin included; OPTIONS and the open paths pass."""

from __future__ import annotations

import pytest
from litestar import Litestar, get
from litestar.testing import AsyncTestClient
from litestar.types import ASGIApp, Receive, Scope, Send

from app.http.access import RULES, allowed, authorize
from app.principal import ROLES, Principal


@get("/api/unruled")
async def unruled() -> str:
    return "reached"


@get("/api/stats")
async def stats() -> str:
    return "reached"


def _as(role: str) -> type:
    class SetUser:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            scope["user"] = Principal(sub="x", role=role)  # type: ignore[arg-type]
            await self.app(scope, receive, send)

    return SetUser


@pytest.mark.parametrize("role", ROLES)
async def test_a_route_without_a_rule_is_403_for_every_role(role: str) -> None:
    app = Litestar([unruled, stats], guards=[authorize], middleware=[_as(role)])
    async with AsyncTestClient(app) as client:
        assert (await client.get("/api/unruled")).status_code == 403
        expected = 200 if role in RULES[("GET", "/api/stats")] else 403
        assert (await client.get("/api/stats")).status_code == expected


def test_the_rule_table_reads_as_the_issue_says() -> None:
    assert allowed("POST", "/api/order-events") == {"service", "admin"}
    assert allowed("GET", "/api/events") == {"auditor", "admin"}
    assert allowed("POST", "/api/issues") == {"lead", "admin"}
    assert "auditor" not in allowed("POST", "/api/issues/{issue_id}/notes")
    assert allowed("GET", "/api/nowhere") == frozenset()
    assert allowed("OPTIONS", "/api/nowhere") == frozenset()
    assert allowed("OPTIONS", "/api/stats") == set(ROLES)
    assert allowed("GET", "/health") == set(ROLES)
