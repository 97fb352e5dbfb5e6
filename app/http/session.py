"""``/api/session``: a browser's login (CONTRACT §6).

``EventSource`` cannot send an ``Authorization`` header, and a token must never travel in
a URL, so a page posts its token once and gets it back as an ``HttpOnly``,
``SameSite=Strict`` cookie (``Secure`` except on loopback) that ends with the token; the
CSRF token the page must echo in ``x-csrftoken`` on every change comes back in the body
and in the readable ``csrftoken`` cookie.
"""

from __future__ import annotations

from datetime import datetime
from ipaddress import ip_address
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.middleware.csrf import generate_csrf_token
from litestar.openapi import ResponseSpec
from litestar.params import JSONBody

from adapters.clock import SystemClock
from app.http import openapi
from app.http.auth import CSRF_COOKIE, SESSION_COOKIE, Authentication, check
from app.http.errors import BadRequest
from app.principal import Role

# A JWT from a company's identity provider with many claims stays well under this.
MAX_TOKEN_LENGTH = 16_384


class StartSession(msgspec.Struct, forbid_unknown_fields=True):
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TOKEN_LENGTH)]


class Session(msgspec.Struct):
    sub: str
    role: Role
    name: str | None
    expires_at: datetime
    csrf_token: str


def _loopback(request: Request[Any, Any, Any]) -> bool:
    host = request.url.hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _cookies(
    request: Request[Any, Any, Any], session: str, csrf: str, max_age: int
) -> list[Cookie]:
    secure = not _loopback(request)
    common: dict[str, Any] = {"path": "/", "secure": secure, "samesite": "strict"}
    return [
        Cookie(key=SESSION_COOKIE, value=session, max_age=max_age, httponly=True, **common),
        Cookie(key=CSRF_COOKIE, value=csrf, max_age=max_age, httponly=False, **common),
    ]


class SessionController(Controller):
    path = "/api/session"
    tags = ["session"]
    request_max_body_size = MAX_TOKEN_LENGTH * 2

    @post(
        "/",
        status_code=201,
        summary="Log a browser in: the token becomes an HttpOnly session cookie",
        responses=openapi.session(),
    )
    async def start(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[StartSession],
        authentication: NamedDependency[Authentication],
    ) -> Response[Session]:
        """Checks the token as a bearer token is checked (401 when it does not) and sets
        the ``inbox_session`` cookie (the token, ``HttpOnly``, ``SameSite=Strict``, until the
        token expires) and the ``csrftoken`` cookie. Later requests of this browser are
        authenticated by the cookie; a state-changing one must send the CSRF token in the
        ``x-csrftoken`` header."""
        # A cross-site form cannot send JSON without a CORS preflight: no login CSRF.
        if request.content_type[0] != "application/json":
            raise BadRequest("Content-Type", "must be application/json")
        checked = await check(authentication.verifier, data.token)
        csrf = generate_csrf_token(authentication.csrf.secret)
        principal = checked.principal
        # The token's own clock is the wall clock (not the demo's compressed order time).
        max_age = max(0, int((checked.expires_at - SystemClock().now()).total_seconds()))
        return Response(
            Session(principal.sub, principal.role, principal.name, checked.expires_at, csrf),
            status_code=201,
            cookies=_cookies(request, data.token, csrf, max_age),
            headers={"Cache-Control": "no-store"},
        )

    @delete(
        "/",
        status_code=204,
        summary="Log a browser out: clear the session cookie",
        # No body (Litestar documents one for Response[None]).
        responses={204: ResponseSpec(None, description="The cookies are cleared")},
    )
    async def end(self, request: Request[Any, Any, Any]) -> Response[None]:
        """Clears the ``inbox_session`` and ``csrftoken`` cookies (idempotent)."""
        return Response(None, status_code=204, cookies=_cookies(request, "", "", 0))
