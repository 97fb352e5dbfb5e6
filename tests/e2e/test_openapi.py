"""The OpenAPI document the API serves declares every answer each route can give: its error
responses with the error body, by the kind of route (worked out from the route table, so a
route added without them fails here), and the content types it really answers with."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar.routes import HTTPRoute

from app import bootstrap
from app.bootstrap import Endpoints
from app.http.access import OPEN_PATHS
from app.http.app import create_app
from app.settings import Settings

ERROR_BODY = "#/components/schemas/ErrorBody"
BODY_METHODS = {"POST", "PUT", "PATCH"}
_UNDOCUMENTED = {"OPTIONS", "HEAD"}


@pytest.fixture(scope="module")
def document(api: str) -> dict[str, Any]:
    response = httpx.get(f"{api}/schema/openapi.json", timeout=10)
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


@pytest.fixture(scope="module")
async def routes(settings: Settings, endpoints: Endpoints) -> AsyncIterator[list[tuple[str, str]]]:
    """(method, path) of every documented route of the app, from its route table."""
    async with bootstrap.container(settings, endpoints) as built:
        app = create_app(built)
        yield sorted(
            (method, route.path_format)
            for route in app.routes
            if isinstance(route, HTTPRoute)
            for handler in route.route_handlers
            if handler.resolve_include_in_schema()
            for method in handler.http_methods - _UNDOCUMENTED
        )


def _expected_errors(method: str, path: str, operation: dict[str, Any]) -> set[int]:
    headers = {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}
    expected = set()
    if path.startswith("/api/") and not OPEN_PATHS.match(path):
        # Every API route reads parameters or a body, and the database; it needs a token
        # (401) its role may call it with (403).
        expected |= {400, 401, 403, 503}
    if (method, path) == ("POST", "/api/session"):
        expected |= {400, 401}  # it checks the token in its body
    if "{" in path:
        expected.add(404)
    if method in BODY_METHODS:
        expected |= {413, 422}
    if method in BODY_METHODS and path.startswith("/api/issues"):
        expected.add(409)
    if "If-Match" in headers:
        expected.add(412)
    return expected


def test_every_route_declares_its_error_responses(
    document: dict[str, Any], routes: list[tuple[str, str]]
) -> None:
    assert len(routes) > 20  # the route table was read
    missing = []
    for method, path in routes:
        operation = document["paths"].get(path, {}).get(method.lower())
        if operation is None:
            missing.append(f"{method} {path}: not in the document")
            continue
        responses = operation["responses"]
        for code in sorted(_expected_errors(method, path, operation)):
            response = responses.get(str(code))
            if response is None:
                missing.append(f"{method} {path}: no {code}")
                continue
            schema = response.get("content", {}).get("application/json", {}).get("schema", {})
            if schema.get("$ref") != ERROR_BODY:
                missing.append(f"{method} {path}: {code} is not the error body")
            if code == 503 and "Retry-After" not in response.get("headers", {}):
                missing.append(f"{method} {path}: 503 without Retry-After")
    assert not missing, "\n".join(missing)


def test_the_error_body_is_documented(document: dict[str, Any]) -> None:
    body = document["components"]["schemas"]["ErrorBody"]
    assert set(body["required"]) == {"status_code", "detail"}
    assert {"field", "errors", "status", "current_version"} <= set(body["properties"])


def test_documented_content_types_are_the_ones_served(
    document: dict[str, Any], http: httpx.Client
) -> None:
    metrics = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    served = http.get("/metrics")
    assert served.status_code == 200
    assert list(metrics) == [served.headers["content-type"]]
    assert served.headers["content-type"].startswith("text/plain; version=")

    stream = document["paths"]["/api/stream"]["get"]["responses"]["200"]["content"]
    assert list(stream) == ["text/event-stream"]
    with http.stream("GET", "/api/stream") as feed:
        assert feed.headers["content-type"].startswith("text/event-stream")


def test_request_bodies_that_refuse_unknown_fields_say_so(
    document: dict[str, Any], http: httpx.Client
) -> None:
    schemas = document["components"]["schemas"]
    assert schemas["ReportIssue"]["additionalProperties"] is False
    refused = http.post("/api/issues", json={"unknown": 1})
    assert refused.status_code == 422
