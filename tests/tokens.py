"""Tokens for the tests: the secret every API the tests start checks HS256 tokens with, and
development tokens (``app.bootstrap.development_token``, what ``inbox token`` prints) for any
caller, as headers to send."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any

from app import bootstrap
from app.principal import Role

# What tests/conftest.py's settings and tests/api_process.py's processes are given.
TEST_SECRET = "tests-only-secret-of-enough-length-0123456789"
# The acting agent of the tests that do not name one: the `http` client's caller.
AGENT = "agent-ann"


def token_for(
    sub: str = AGENT,
    role: Role = "admin",
    *,
    name: str | None = None,
    verticals: list[str] | None = None,
    countries: list[str] | None = None,
    ttl: timedelta = timedelta(hours=1),
) -> str:
    return bootstrap.development_token(
        TEST_SECRET,
        role=role,
        sub=sub,
        name=name,
        verticals=verticals,
        countries=countries,
        ttl=ttl,
    )


def headers_for(
    sub: str = AGENT,
    role: Role = "admin",
    *,
    verticals: list[str] | None = None,
    countries: list[str] | None = None,
) -> dict[str, str]:
    """``Authorization: Bearer`` with a token for ``sub`` in ``role``."""
    token = token_for(sub, role, verticals=verticals, countries=countries)
    return {"Authorization": f"Bearer {token}"}


# ---- tokens PyJWT will not make: for the tests of what the API refuses -------------------


def segment(value: dict[str, Any]) -> str:
    """One base64url JSON segment of a JWT."""
    return _b64(json.dumps(value).encode())


def unsigned(claims: dict[str, Any]) -> str:
    """An ``alg: none`` token."""
    return f"{segment({'alg': 'none', 'typ': 'JWT'})}.{segment(claims)}."


def hs256_with(key: bytes, claims: dict[str, Any], **header: str) -> str:
    """An HS256 token under any HMAC key, a public key's PEM too (PyJWT refuses that)."""
    signing_input = f"{segment({'alg': 'HS256', 'typ': 'JWT', **header})}.{segment(claims)}"
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def with_claims(token: str, claims: dict[str, Any]) -> str:
    """``token`` with its claims replaced and its signature kept (tampered)."""
    header, _, signature = token.split(".")
    return f"{header}.{segment(claims)}.{signature}"


def _b64(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode()
