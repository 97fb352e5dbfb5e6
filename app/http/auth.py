"""Authentication (CONTRACT §6): a bearer token or the session cookie becomes the caller.

:class:`Authenticate` is ASGI middleware over every route but the open ones
(``access.OPEN_PATHS``): it checks ``Authorization: Bearer <JWT>``, or when there is no such
header the session cookie ``POST /api/session`` set, and puts the checked
:class:`~app.principal.Principal` at ``scope["user"]`` (``request.user``). A request the
cookie alone authenticates must also pass Litestar's CSRF check when it changes anything
(cookie ``csrftoken``, header ``x-csrftoken``); a bearer token needs none, as no browser
sends it by itself. Anything wrong with the token is :class:`~app.http.errors.Unauthenticated`
(401); which role may call which route is ``app/http/access.py``'s business.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from litestar import Request
from litestar.config.csrf import CSRFConfig
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.middleware.csrf import CSRFMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from adapters.tokens import InvalidToken, TokenConfig, Verifier
from app.http.access import OPEN_PATHS
from app.http.errors import Unauthenticated, Unprocessable
from app.principal import ROLES, Principal
from app.settings import Settings

SESSION_COOKIE = "inbox_session"
CSRF_COOKIE = "csrftoken"
CSRF_HEADER = "x-csrftoken"
MAX_CLAIM_LENGTH = 200
# Scope lists longer than any company's markets are a malformed token, not a scope.
MAX_SCOPE_ENTRIES = 1000


@dataclass(frozen=True)
class Checked:
    """A token that checked: who it speaks for, and until when."""

    principal: Principal
    expires_at: datetime


class Authentication:
    """What the middleware and the session routes check tokens with. (A plain class: a
    dataclass handed to a route as a dependency is converted field by field by Litestar.)"""

    def __init__(self, verifier: Verifier, csrf: CSRFConfig) -> None:
        self.verifier = verifier
        self.csrf = csrf


def authentication(settings: Settings) -> Authentication:
    """The token checks the settings configure; ValueError when they configure none."""
    config = TokenConfig(
        secret=settings.jwt_secret,
        jwks=settings.jwt_jwks,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    csrf_secret = settings.csrf_secret
    if csrf_secret is None and settings.jwt_secret is not None:
        csrf_secret = hmac.new(settings.jwt_secret.encode(), b"csrf", hashlib.sha256).hexdigest()
    csrf = CSRFConfig(
        secret=csrf_secret or secrets.token_hex(32),
        cookie_name=CSRF_COOKIE,
        header_name=CSRF_HEADER,
        cookie_samesite="strict",
        # The page reads it to send it back in the header.
        cookie_httponly=False,
    )
    return Authentication(Verifier(config), csrf)


def _strings(claims: dict[str, Any], name: str) -> frozenset[str] | None:
    value = claims.get(name)
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) > MAX_SCOPE_ENTRIES
        or not all(isinstance(v, str) and 0 < len(v) <= MAX_CLAIM_LENGTH for v in value)
    ):
        raise InvalidToken(f"bad {name}")
    return frozenset(value)


def _principal(claims: dict[str, Any]) -> Principal:
    sub, role, name = claims.get("sub"), claims.get("role"), claims.get("name")
    if not isinstance(sub, str) or not 0 < len(sub) <= MAX_CLAIM_LENGTH:
        raise InvalidToken("bad sub")
    if role not in ROLES:
        raise InvalidToken("bad role")
    if name is not None and (not isinstance(name, str) or len(name) > MAX_CLAIM_LENGTH):
        raise InvalidToken("bad name")
    return Principal(
        sub=sub,
        role=role,
        name=name or None,
        verticals=_strings(claims, "verticals"),
        countries=_strings(claims, "countries"),
    )


async def check(verifier: Verifier, token: str) -> Checked:
    """The caller a token speaks for; Unauthenticated when it does not check."""
    try:
        claims = await verifier.claims(token)
        principal = _principal(claims)
    except InvalidToken:
        raise Unauthenticated("invalid token") from None
    return Checked(principal, datetime.fromtimestamp(claims["exp"], UTC))


def bearer(authorization: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` header."""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("invalid token")
    return token.strip()


class Authenticate:
    """Sets ``scope["user"]`` from the bearer token or the session cookie; 401 without one."""

    def __init__(self, app: ASGIApp, authentication: Authentication) -> None:
        self.app = app
        self.verifier = authentication.verifier
        self.csrf = CSRFMiddleware(app, authentication.csrf)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or OPEN_PATHS.match(scope.get("path_template", "")):
            await self.app(scope, receive, send)
            return
        connection: ASGIConnection[Any, Any, Any, Any] = ASGIConnection(scope)
        authorization = connection.headers.get("authorization")
        if authorization is not None:
            checked = await check(self.verifier, bearer(authorization))
            scope["user"] = checked.principal
            await self.app(scope, receive, send)
            return
        cookie = connection.cookies.get(SESSION_COOKIE)
        if not cookie:
            raise Unauthenticated("authentication required", missing=True)
        scope["user"] = (await check(self.verifier, cookie)).principal
        # Safe methods pass (and get a csrftoken cookie if they have none); others must
        # echo the cookie's token in the header.
        await self.csrf(scope, receive, send)


def caller(request: Request[Any, Any, Any]) -> Principal:
    """The authenticated caller of this request (the ``caller`` dependency)."""
    user = request.scope.get("user")
    if not isinstance(user, Principal):
        raise Unauthenticated("authentication required", missing=True)
    return user


def actor(principal: Principal, agent_id: str | None) -> str:
    """The acting agent of a command: the token's ``sub``. A body's ``agent_id`` may
    repeat it, never name someone else."""
    if agent_id is not None and agent_id != principal.sub:
        raise Unprocessable("agent_id", "must be the token's sub (the acting agent) or left out")
    return principal.sub
