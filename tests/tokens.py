"""Tokens for the tests: the secret every API the tests start checks HS256 tokens with, and
development tokens (``app.bootstrap.development_token``, what ``inbox token`` prints) for any
caller, as headers to send."""

from __future__ import annotations

from datetime import timedelta

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
