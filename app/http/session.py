"""``/api/session``: a browser's login (CONTRACT §6).

``EventSource`` cannot send an ``Authorization`` header, and a token must never travel in
a URL, so a page posts its token once and gets it back as an ``HttpOnly``,
``SameSite=Strict`` cookie (``Secure`` except on loopback) that ends with the token; the
CSRF token the page must echo in ``x-csrftoken`` on every change comes back in the body
and in the readable ``csrftoken`` cookie.

Instead of a token, a page may post a one-time login *ticket* (``inbox up``'s login link
carries one in its URL fragment): checked with the secret only, used once, and exchanged
for a session token the server signs (``app.http.auth.exchange``). ``GET`` says who the
browser is logged in as (the page asks on load), so it authenticates itself here: the
path is open to every caller in ``Authenticate``.
"""

from __future__ import annotations

from datetime import datetime
from ipaddress import ip_address
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.middleware.csrf import generate_csrf_token
from litestar.openapi import ResponseSpec
from litestar.params import Body, SkipValidation

from adapters.clock import Clock, ScaledClock, SystemClock
from app.http import openapi
from app.http.auth import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    Authentication,
    Checked,
    authenticate,
    check,
    exchange,
    valid_csrf_token,
)
from app.http.errors import BadRequest, Unprocessable
from app.ports import LoginTickets
from app.principal import Role

# A JWT from a company's identity provider with many claims stays well under this.
MAX_TOKEN_LENGTH = 16_384


Jwt = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TOKEN_LENGTH)]


class StartSession(msgspec.Struct, forbid_unknown_fields=True):
    """Exactly one of them: a token (JWT), or a one-time login ticket (no nulls)."""

    token: Jwt | msgspec.UnsetType = msgspec.UNSET
    ticket: Jwt | msgspec.UnsetType = msgspec.UNSET


# The document says "exactly one of them" as JSON Schema does (the handler checks it).
StartSessionBody = Annotated[
    StartSession,
    Body(
        media_type=RequestEncodingType.JSON,
        schema_extra={"oneOf": [{"required": ["token"]}, {"required": ["ticket"]}]},
    ),
]


class Session(msgspec.Struct):
    """Who the browser is, and the server's clock: ``now`` is the system's time (in a
    demo, the compressed order time every snooze and SLA is judged by), running
    ``clock_speed`` times as fast as the wall clock (1 in production), so that a page
    computes "now" as the server does instead of by its own clock."""

    sub: str
    role: Role
    name: str | None
    expires_at: datetime
    csrf_token: str
    now: datetime
    clock_speed: Annotated[float, msgspec.Meta(gt=0)]


def _loopback(request: Request[Any, Any, Any]) -> bool:
    host = request.url.hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _cookie(request: Request[Any, Any, Any], key: str, value: str, max_age: int) -> Cookie:
    return Cookie(
        key=key,
        value=value,
        max_age=max_age,
        httponly=key == SESSION_COOKIE,
        path="/",
        secure=not _loopback(request),
        samesite="strict",
    )


def _cookies(
    request: Request[Any, Any, Any], session: str, csrf: str, max_age: int
) -> list[Cookie]:
    return [
        _cookie(request, SESSION_COOKIE, session, max_age),
        _cookie(request, CSRF_COOKIE, csrf, max_age),
    ]


def _max_age(checked: Checked) -> int:
    """Seconds until the token expires: the wall clock (not the demo's order time)."""
    return max(0, int((checked.expires_at - SystemClock().now()).total_seconds()))


def _session(checked: Checked, csrf: str, clock: Clock) -> Session:
    principal = checked.principal
    # The Clock protocol has only now(); a demo's ScaledClock says how fast it runs.
    speed = float(clock.speed) if isinstance(clock, ScaledClock) else 1.0
    return Session(
        principal.sub,
        principal.role,
        principal.name,
        checked.expires_at,
        csrf,
        now=clock.now(),
        clock_speed=speed,
    )


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
        data: StartSessionBody,
        authentication: NamedDependency[Authentication],
        login_tickets: NamedDependency[LoginTickets],
        clock: NamedDependency[SkipValidation[Clock]],  # a Protocol: no isinstance()
    ) -> Response[Session]:
        """Body: ``{"token": "<JWT>"}`` or ``{"ticket": "<login ticket>"}`` (exactly one).
        A token is checked as a bearer token is checked (401 when it does not); a ticket
        is checked with the development secret, must be for ``purpose: login``, live at
        most 15 minutes, and logs in once (401 after). Sets the ``inbox_session`` cookie
        (the token, or for a ticket a session token of 8 hours the server signs;
        ``HttpOnly``, ``SameSite=Strict``, until it expires) and the ``csrftoken`` cookie.
        Later requests of this browser are authenticated by the cookie; a state-changing
        one must send the CSRF token in the ``x-csrftoken`` header."""
        # A cross-site form cannot send JSON without a CORS preflight: no login CSRF.
        if request.content_type[0] != "application/json":
            raise BadRequest("Content-Type", "must be application/json")
        token, ticket = data.token, data.ticket
        if isinstance(token, str) and isinstance(ticket, str):
            raise Unprocessable("ticket", "give a token or a ticket, not both")
        if isinstance(ticket, str):
            checked, session = await exchange(authentication.verifier, login_tickets, ticket)
        elif isinstance(token, str):
            checked, session = await check(authentication.verifier, token), token
        else:
            raise Unprocessable("token", "required (or a ticket)")
        csrf = generate_csrf_token(authentication.csrf.secret)
        return Response(
            _session(checked, csrf, clock),
            status_code=201,
            cookies=_cookies(request, session, csrf, _max_age(checked)),
            headers={"Cache-Control": "no-store"},
        )

    @get(
        "/",
        summary="Who this browser is logged in as",
        responses=openapi.current_session(),
    )
    async def current(
        self,
        request: Request[Any, Any, Any],
        authentication: NamedDependency[Authentication],
        clock: NamedDependency[SkipValidation[Clock]],  # a Protocol: no isinstance()
    ) -> Response[Session]:
        """The caller of the session cookie (or of a bearer token), as ``POST`` answered:
        401 when there is neither, or it no longer checks (log in again). The CSRF token
        is the ``csrftoken`` cookie's; without a valid one, a new one is made and set."""
        checked, _ = await authenticate(authentication.verifier, request)
        csrf = request.cookies.get(CSRF_COOKIE)
        cookies = []
        if csrf is None or not valid_csrf_token(csrf, authentication.csrf.secret):
            csrf = generate_csrf_token(authentication.csrf.secret)
            cookies.append(_cookie(request, CSRF_COOKIE, csrf, _max_age(checked)))
        return Response(
            _session(checked, csrf, clock), cookies=cookies, headers={"Cache-Control": "no-store"}
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
