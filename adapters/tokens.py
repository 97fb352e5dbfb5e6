"""Bearer tokens (JWT, CONTRACT §6): the one place that signs and checks them.

A token is checked with the key its algorithm belongs to, and only with that: an HS256
token with the development secret (``INBOX_JWT_SECRET``), an RS256/ES256 one with the public
key its ``kid`` names in the identity provider's JWKS (``INBOX_JWT_JWKS``, a file or an
https URL fetched and cached by PyJWT, fetched again for a ``kid`` it does not know, which
is how rotated keys arrive). ``alg: none`` and any other algorithm are refused, so an
HS256 token "signed" with a public key never meets that key.

A *login ticket* (:func:`mint_ticket`, what ``inbox up`` puts in its login link) is a
short-lived HS256 token with ``"purpose": "login"`` and a ``jti``: :meth:`Verifier.ticket`
checks one (the secret only, never the JWKS), and it is good for nothing else: a token
with any ``purpose`` is refused as a credential (:meth:`Verifier.claims`).

:class:`InvalidToken` is all a caller learns of why: the reason stays in the log.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio.to_thread
import jwt

log = logging.getLogger(__name__)

HMAC_ALGORITHM = "HS256"
# The public-key algorithms a JWKS key may carry, by its key type.
PUBLIC_KEY_ALGORITHMS: Mapping[str, frozenset[str]] = {
    "RSA": frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}),
    "EC": frozenset({"ES256", "ES384", "ES512"}),
}
# Clock skew allowed between the identity provider and this service.
LEEWAY_SECONDS = 30
# How long a fetched JWKS is trusted before it is fetched again.
JWKS_LIFESPAN_SECONDS = 300
JWKS_TIMEOUT_SECONDS = 5
# Login tickets: what they say they are for, how long ``inbox up``'s lives, the longest
# one accepted (exp - iat), and the claims of theirs a session token does not repeat.
LOGIN_PURPOSE = "login"
TICKET_TTL = timedelta(minutes=10)
MAX_TICKET_TTL = timedelta(minutes=15)
MAX_JTI_LENGTH = 200
_TICKET_ONLY = frozenset({"purpose", "jti", "iat", "exp", "nbf"})
_LOOPBACK_URLS = ("http://127.0.0.1:", "http://127.0.0.1/", "http://localhost:", "http://[::1]:")


class InvalidToken(Exception):
    """A token that is missing, malformed, expired, not yet valid or wrongly signed."""


@dataclass(frozen=True)
class TokenConfig:
    secret: str | None = None
    jwks: str | None = None  # a file path or an https URL
    issuer: str | None = None
    audience: str | None = None
    # An unknown kid fetches the JWKS again at most this often (rotation; not per request).
    jwks_refetch_seconds: float = 30.0


class _FileKeys:
    def __init__(self, path: Path) -> None:
        self.keys = jwt.PyJWKSet.from_json(path.read_text())

    async def key(self, kid: str | None) -> jwt.PyJWK:
        keys = list(self.keys)
        if kid is None and len(keys) == 1:
            return keys[0]
        for key in keys:
            if kid is not None and key.key_id == kid:
                return key
        raise InvalidToken("unknown kid")


class _RemoteKeys:
    def __init__(self, url: str, refetch_seconds: float) -> None:
        self.client = jwt.PyJWKClient(
            url,
            cache_jwk_set=True,
            lifespan=JWKS_LIFESPAN_SECONDS,
            timeout=JWKS_TIMEOUT_SECONDS,
            cooldown_duration=refetch_seconds,
        )

    async def key(self, kid: str | None) -> jwt.PyJWK:
        if kid is None:
            raise InvalidToken("no kid")
        # PyJWKClient fetches with urllib when its cache is stale: keep that off the loop.
        try:
            return await anyio.to_thread.run_sync(self.client.get_signing_key, kid)
        except jwt.PyJWKClientError as exc:
            log.warning("no JWKS key for kid %r: %s", kid, exc)
            raise InvalidToken("unknown kid") from None


class Verifier:
    """Checks tokens against the configured secret and/or JWKS; returns their claims."""

    def __init__(self, config: TokenConfig) -> None:
        if config.secret is None and config.jwks is None:
            raise ValueError("neither a secret nor a JWKS to check tokens with")
        self.config = config
        self.keys: _FileKeys | _RemoteKeys | None = None
        if config.jwks is not None:
            if config.jwks.startswith(("https://", *_LOOPBACK_URLS)):
                self.keys = _RemoteKeys(config.jwks, config.jwks_refetch_seconds)
            elif config.jwks.startswith("http://"):
                raise ValueError("a JWKS URL must be https:// (plain http only on loopback)")
            else:
                self.keys = _FileKeys(Path(config.jwks))

    async def claims(self, token: str) -> dict[str, Any]:
        """The token's claims once its signature and times check; else InvalidToken. A
        token made for a purpose (a login ticket) is no credential: refused."""
        claims = await self._checked(token)
        if "purpose" in claims:
            raise InvalidToken("a token with a purpose is no credential")
        return claims

    def ticket(self, token: str) -> dict[str, Any]:
        """The claims of a login ticket: HS256 with the secret (never a JWKS key),
        ``purpose: login``, a ``jti``, and at most :data:`MAX_TICKET_TTL` from ``iat`` to
        ``exp``; else InvalidToken. Whether it was used before is the caller's to check."""
        if self.config.secret is None:
            raise InvalidToken("no secret to check tickets with")
        claims = self._decode(token, self.config.secret, HMAC_ALGORITHM, ticket=True)
        jti = claims.get("jti")
        if claims.get("purpose") != LOGIN_PURPOSE:
            raise InvalidToken("not a login ticket")
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH:
            raise InvalidToken("bad jti")
        issued, expires = claims.get("iat"), claims.get("exp")
        if not isinstance(issued, int) or not isinstance(expires, int):
            raise InvalidToken("bad iat or exp")
        if expires - issued > MAX_TICKET_TTL.total_seconds():
            raise InvalidToken("a ticket lives too long")
        return claims

    async def _checked(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("malformed") from None
        algorithm = header.get("alg")
        key: Any
        if algorithm == HMAC_ALGORITHM and self.config.secret is not None:
            key = self.config.secret
        elif self.keys is not None and isinstance(algorithm, str) and algorithm != "none":
            kid = header.get("kid")
            jwk = await self.keys.key(kid if isinstance(kid, str) else None)
            if algorithm != jwk.algorithm_name or algorithm not in PUBLIC_KEY_ALGORITHMS.get(
                jwk.key_type or "", frozenset()
            ):
                raise InvalidToken("wrong algorithm")
            key = jwk
        else:
            raise InvalidToken("wrong algorithm")
        return self._decode(token, key, algorithm)

    def _decode(
        self, token: str, key: Any, algorithm: str, *, ticket: bool = False
    ) -> dict[str, Any]:
        required = ["exp", "sub", "iat", "jti"] if ticket else ["exp", "sub"]
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=self.config.issuer,
                audience=self.config.audience,
                leeway=LEEWAY_SECONDS,
                options={
                    "require": required,
                    "verify_aud": self.config.audience is not None,
                    "verify_iss": self.config.issuer is not None,
                },
            )
        except jwt.PyJWTError as exc:
            log.info("token refused: %s", type(exc).__name__)
            raise InvalidToken(type(exc).__name__) from None
        return claims


def mint(secret: str, claims: Mapping[str, Any], *, now: datetime, ttl: timedelta) -> str:
    """A development token (HS256): ``claims`` with ``iat`` and ``exp``."""
    body = {**claims, "iat": int(now.timestamp()), "exp": int((now + ttl).timestamp())}
    return jwt.encode(body, secret, algorithm=HMAC_ALGORITHM)


def mint_ticket(
    secret: str, claims: Mapping[str, Any], *, now: datetime, ttl: timedelta = TICKET_TTL
) -> str:
    """A one-time login ticket (HS256): ``claims`` with ``purpose: login``, a random
    ``jti``, ``iat`` and ``exp``."""
    if ttl > MAX_TICKET_TTL:
        raise ValueError(f"a login ticket lives at most {MAX_TICKET_TTL}")
    body = {**claims, "purpose": LOGIN_PURPOSE, "jti": secrets.token_urlsafe(16)}
    return mint(secret, body, now=now, ttl=ttl)


def session_claims(ticket: Mapping[str, Any]) -> dict[str, Any]:
    """What the session token a ticket is exchanged for says: the ticket's claims but its
    purpose, id and times."""
    return {name: value for name, value in ticket.items() if name not in _TICKET_ONLY}
