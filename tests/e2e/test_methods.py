"""The methods a path serves, as a client learns them (RFC 9110 §9.3.7, §15.5.6): ``OPTIONS``
lists every one of them in ``Allow``, and a method the path does not serve is a 405 that
says in ``Allow`` which it does, with the API's error body."""

from __future__ import annotations

import httpx
import pytest


def _allow(response: httpx.Response) -> set[str]:
    return {method.strip() for method in response.headers.get("Allow", "").split(",")} - {""}


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        # Two handlers on one path (the inbox and reporting an issue by hand).
        ("/api/issues", {"GET", "POST", "OPTIONS"}),
        ("/api/issues/7d8e8d5c-3a5a-4d8e-9f4b-0c8f8f3c1a11", {"GET", "OPTIONS"}),
        ("/api/order-events", {"POST", "OPTIONS"}),
        ("/health", {"GET", "OPTIONS"}),
    ],
)
def test_options_lists_every_method_of_the_path(
    http: httpx.Client, path: str, methods: set[str]
) -> None:
    response = http.options(path)
    assert response.status_code == 204, response.text
    assert _allow(response) == methods


@pytest.mark.parametrize(
    ("method", "path", "methods"),
    [
        ("TRACE", "/health", {"GET", "OPTIONS"}),
        ("DELETE", "/api/issues", {"GET", "POST", "OPTIONS"}),
        ("PUT", "/api/order-events", {"POST", "OPTIONS"}),
    ],
)
def test_a_method_the_path_does_not_serve_is_a_405_naming_the_ones_it_does(
    http: httpx.Client, method: str, path: str, methods: set[str]
) -> None:
    response = http.request(method, path)
    assert response.status_code == 405, response.text
    assert _allow(response) == methods
    assert response.json() == {"status_code": 405, "detail": "Method Not Allowed"}
