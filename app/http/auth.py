"""Authentication (CONTRACT §6): a bearer token or the session cookie becomes the caller.

:class:`Authenticate` is ASGI middleware over every route but the open ones
(``access.OPEN_PATHS``): it checks ``Authorization: Bearer <JWT>``, or when there is no such
header the session cookie ``POST /api/session`` set, and puts the checked
:class:`~app.principal.Principal` at ``scope["user"]`` (``request.user``). A request the
cookie alone authenticates must also pass Litestar's CSRF check when it changes anything
(cookie ``csrftoken``, header ``x-csrftoken``); a bearer token needs none, as no browser
sends it by itself. Anything wrong with the token is :class:`~app.http.errors.Unauthenticated`
(401); which role may call which route is ``app/http/access.py``'s business.

A login ticket (``adapters.tokens.mint_ticket``) is exchanged once, by :func:`exchange`,
for a session token; it is never a credential itself (``Verifier.claims`` refuses it).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar import Request
from litestar.config.csrf import CSRFConfig
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.middleware.csrf import CSRF_SECRET_LENGTH, CSRFMiddleware, generate_csrf_hash
from litestar.types import ASGIApp, Receive, Scope, Send

from adapters.tokens import InvalidToken, TokenConfig, Verifier, mint, session_claims
from app.http.access import OPEN_PATHS
from app.http.errors import Unauthenticated, Unprocessable
from app.ports import LoginTickets
from app.principal import ROLES, Principal
from app.settings import Settings
from domain.values import is_storable

log = logging.getLogger(__name__)

SESSION_COOKIE = "inbox_session"
CSRF_COOKIE = "csrftoken"
CSRF_HEADER = "x-csrftoken"
MAX_CLAIM_LENGTH = 200
# Scope lists longer than any company's markets are a malformed token, not a scope.
MAX_SCOPE_ENTRIES = 1000
# The session a login ticket is exchanged for lasts as long as a development token.
TICKET_SESSION_TTL = timedelta(hours=8)


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
    if name is not None and (
        not isinstance(name, str) or len(name) > MAX_CLAIM_LENGTH or not is_storable(name)
    ):
        raise InvalidToken("bad name")
    return Principal(
        sub=sub,
        role=role,
        name=name if name and name.strip() else None,  # a blank name is none
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


async def exchange(verifier: Verifier, tickets: LoginTickets, ticket: str) -> tuple[Checked, str]:
    """A login ticket's session: its caller, and a session token for the same claims
    (:data:`TICKET_SESSION_TTL`, signed with the secret). Unauthenticated when the ticket
    does not check, or was used before (each ticket logs in once)."""
    try:
        claims = verifier.ticket(ticket)
        _principal(claims)
    except InvalidToken:
        raise Unauthenticated("invalid token") from None
    if not await tickets.use(claims["jti"]):
        log.info("login ticket refused: used before")
        raise Unauthenticated("invalid token")
    secret = verifier.config.secret
    assert secret is not None  # verifier.ticket checked with it
    # The token's own clock is the wall clock (not the demo's compressed order time).
    token = mint(secret, session_claims(claims), now=datetime.now(UTC), ttl=TICKET_SESSION_TTL)
    return await check(verifier, token), token


def bearer(authorization: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` header."""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("invalid token")
    return token.strip()


async def authenticate(
    verifier: Verifier, connection: ASGIConnection[Any, Any, Any, Any]
) -> tuple[Checked, bool]:
    """The caller of a request: its ``Authorization: Bearer`` token, else its session
    cookie; and whether the cookie alone vouched for it (then a change needs the CSRF
    token). Unauthenticated when it sends neither, or one that does not check."""
    authorization = connection.headers.get("authorization")
    if authorization is not None:
        return await check(verifier, bearer(authorization)), False
    cookie = connection.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise Unauthenticated("authentication required", missing=True)
    return await check(verifier, cookie), True


def valid_csrf_token(token: str | None, secret: str) -> bool:
    """Whether ``token`` is one the CSRF middleware accepts (made with ``secret``)."""
    if token is None or len(token) <= CSRF_SECRET_LENGTH or len(token) > 4 * CSRF_SECRET_LENGTH:
        return False
    expected = generate_csrf_hash(token[:CSRF_SECRET_LENGTH], secret)
    return hmac.compare_digest(token[CSRF_SECRET_LENGTH:], expected)


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
        checked, by_cookie = await authenticate(self.verifier, connection)
        scope["user"] = checked.principal
        if not by_cookie:
            await self.app(scope, receive, send)
            return
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
