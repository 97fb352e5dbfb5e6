"""Scopes through the HTTP app: a caller (a token with a ``countries`` claim) gets 404 for
an issue out of its scope, exactly as for an unknown one, on reads and commands alike, and
cannot raise one there."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app import bootstrap
from app.bootstrap import Endpoints
from app.http.app import create_app
from app.principal import Principal
from app.settings import Settings
from tests.tokens import headers_for

# Admins (every route), each held to one country: the scope alone decides here.
FI = Principal("ann", "admin", countries=frozenset({"FI"}))
DE = Principal("bob", "admin", countries=frozenset({"DE"}))


def client_as(app: Any, principal: Principal) -> httpx.AsyncClient:
    assert principal.countries is not None
    headers = headers_for(principal.sub, principal.role, countries=sorted(principal.countries))
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://inbox",
        headers=headers,
    )


@pytest.fixture
async def inbox(settings: Settings, endpoints: Endpoints) -> AsyncIterator[Any]:
    async with bootstrap.container(settings, endpoints) as built:
        app = create_app(built)
        app.state.container = built
        yield app


def report(order_id: str, country: str) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "kind": "payment_failed",
        "severity": "high",
        "vertical": "restaurant",
        "country": country,
        "city": "X",
        "evidence": {},
    }


async def test_an_issue_out_of_scope_answers_as_an_unknown_one(inbox: Any) -> None:
    async with client_as(inbox, DE) as de, client_as(inbox, FI) as fi:
        raised = await de.post("/api/issues", json=report(f"h-{uuid.uuid4().hex[:8]}", "DE"))
        assert raised.status_code == 201, raised.text
        issue_id = raised.json()["issue_id"]
        unknown = str(uuid.uuid4())
        for path in ("/events", "/state?version=1"):
            assert (await de.get(f"/api/issues/{issue_id}{path}")).status_code == 200
            hidden = await fi.get(f"/api/issues/{issue_id}{path}")
            missing = await fi.get(f"/api/issues/{unknown}{path}")
            assert (hidden.status_code, missing.status_code) == (404, 404)
        body: dict[str, Any] = {}
        hidden = await fi.post(f"/api/issues/{issue_id}/acknowledge", json=body)
        missing = await fi.post(f"/api/issues/{unknown}/acknowledge", json=body)
        assert (hidden.status_code, missing.status_code) == (404, 404)
        assert hidden.json()["detail"] == missing.json()["detail"].replace(unknown, issue_id)
        state = await de.get(f"/api/issues/{issue_id}/state?version=1")
        assert state.json()["status"] == "open"  # nothing changed
        assert (await de.get(f"/api/issues/{issue_id}/state?version=2")).status_code == 404

        outside = await fi.post("/api/issues", json=report(f"h-{uuid.uuid4().hex[:8]}", "DE"))
        assert outside.status_code == 422
        assert "country" in outside.text
        assert "outside your scope" in outside.text


async def test_the_log_over_http_holds_only_the_callers_issues(inbox: Any) -> None:
    async with client_as(inbox, DE) as de, client_as(inbox, FI) as fi:
        ids = set()
        for country, client in (("DE", de), ("FI", fi), ("DE", de)):
            made = await client.post(
                "/api/issues", json=report(f"l-{uuid.uuid4().hex[:8]}", country)
            )
            assert made.status_code == 201, made.text
            ids.add((made.json()["issue_id"], country))
        seen: set[str] = set()
        after = 0
        while True:
            page = (await fi.get(f"/api/events?after={after}&limit=500")).json()
            seen |= {item["issue_id"] for item in page["items"]}
            if page["next_after"] is None:
                break
            after = page["next_after"]
        assert {i for i, country in ids if country == "FI"} <= seen
        assert not {i for i, country in ids if country == "DE"} & seen
