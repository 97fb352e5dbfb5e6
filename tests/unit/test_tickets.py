"""Login tickets (``adapters.tokens.mint_ticket``, ``app.http.auth.exchange``): what one
says, that it is checked with the secret only, lives briefly, logs in once, and is no
credential anywhere else."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from adapters.tokens import (
    LOGIN_PURPOSE,
    InvalidToken,
    TokenConfig,
    Verifier,
    mint_ticket,
    session_claims,
)
from app import bootstrap
from app.http.auth import TICKET_SESSION_TTL, check, exchange
from app.http.errors import Unauthenticated
from tests.tokens import TEST_SECRET

VERIFIER = Verifier(TokenConfig(secret=TEST_SECRET))


class _Used:
    """The port, in memory: each jti logs in once."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    async def use(self, jti: str) -> bool:
        if jti in self.used:
            return False
        self.used.add(jti)
        return True


def _ticket_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"sub": "ann", "role": "agent", "name": "Ann", "iat": now, "exp": now + 600}
    return claims | {"purpose": LOGIN_PURPOSE, "jti": "j-1"} | overrides


def test_a_ticket_has_the_token_claims_a_purpose_an_id_and_ten_minutes() -> None:
    ticket = bootstrap.development_ticket(
        TEST_SECRET, role="admin", sub="demo", name="Demo", countries=["FI"]
    )
    claims = jwt.decode(ticket, TEST_SECRET, algorithms=["HS256"])
    assert jwt.get_unverified_header(ticket)["alg"] == "HS256"
    assert claims["purpose"] == "login"
    assert (claims["sub"], claims["role"], claims["name"]) == ("demo", "admin", "Demo")
    assert claims["countries"] == ["FI"]
    assert claims["exp"] - claims["iat"] == 600
    assert len(claims["jti"]) >= 16
    other = jwt.decode(
        bootstrap.development_ticket(TEST_SECRET, role="admin", sub="demo"),
        TEST_SECRET,
        algorithms=["HS256"],
    )
    assert other["jti"] != claims["jti"]
    assert VERIFIER.ticket(ticket)["jti"] == claims["jti"]


def test_a_ticket_longer_than_fifteen_minutes_is_not_minted() -> None:
    with pytest.raises(ValueError, match="at most"):
        mint_ticket(TEST_SECRET, {"sub": "a"}, now=datetime.now(UTC), ttl=timedelta(minutes=16))


async def test_a_ticket_is_no_credential() -> None:
    ticket = bootstrap.development_ticket(TEST_SECRET, role="admin", sub="demo")
    with pytest.raises(InvalidToken, match="purpose"):
        await VERIFIER.claims(ticket)
    with pytest.raises(Unauthenticated, match="invalid token"):
        await check(VERIFIER, ticket)
    # Any purpose at all: a token made for something is good only for that.
    other = jwt.encode(_ticket_claims(purpose="reset"), TEST_SECRET)
    with pytest.raises(Unauthenticated):
        await check(VERIFIER, other)


@pytest.mark.parametrize(
    ("case", "claims", "key"),
    [
        ("a plain token", {"purpose": None}, TEST_SECRET),
        ("another purpose", {"purpose": "reset"}, TEST_SECRET),
        ("no jti", {"jti": None}, TEST_SECRET),
        ("an empty jti", {"jti": ""}, TEST_SECRET),
        ("a long jti", {"jti": "j" * 201}, TEST_SECRET),
        # Times as offsets from the test's now (not the collection's: a long run starts a
        # test minutes after the parameters were made).
        ("expired", {"iat": -1200, "exp": -600}, TEST_SECRET),
        ("lives 16 minutes", {"exp": 960}, TEST_SECRET),
        ("no iat", {"iat": None}, TEST_SECRET),
        ("wrongly signed", {}, "not-the-secret-but-as-long-0123456789"),
    ],
)
def test_a_ticket_that_does_not_check_is_refused(
    case: str, claims: dict[str, Any], key: str
) -> None:
    now = int(time.time())
    timed = {k: now + v for k, v in claims.items() if k in {"iat", "exp"} and v is not None}
    body = {k: v for k, v in _ticket_claims(**(claims | timed)).items() if v is not None}
    with pytest.raises(InvalidToken):
        VERIFIER.ticket(jwt.encode(body, key))


def test_a_ticket_is_checked_with_the_secret_only(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True) | {"kid": "k1", "alg": "RS256"}
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    jwks_only = Verifier(TokenConfig(jwks=str(path)))
    signed_by_idp = jwt.encode(_ticket_claims(), key, algorithm="RS256", headers={"kid": "k1"})
    with pytest.raises(InvalidToken):
        jwks_only.ticket(signed_by_idp)
    with pytest.raises(InvalidToken):
        jwks_only.ticket(jwt.encode(_ticket_claims(), TEST_SECRET))
    both = Verifier(TokenConfig(secret=TEST_SECRET, jwks=str(path)))
    with pytest.raises(InvalidToken):
        both.ticket(signed_by_idp)


async def test_a_ticket_logs_in_once_as_a_session_of_eight_hours() -> None:
    used = _Used()
    ticket = bootstrap.development_ticket(TEST_SECRET, role="lead", sub="liz", name="Liz")
    checked, session = await exchange(VERIFIER, used, ticket)
    assert (checked.principal.sub, checked.principal.role, checked.principal.name) == (
        "liz",
        "lead",
        "Liz",
    )
    claims = jwt.decode(session, TEST_SECRET, algorithms=["HS256"])
    assert "purpose" not in claims
    assert "jti" not in claims
    assert claims["exp"] - claims["iat"] == TICKET_SESSION_TTL.total_seconds()
    assert (await check(VERIFIER, session)).principal == checked.principal
    with pytest.raises(Unauthenticated, match="invalid token"):
        await exchange(VERIFIER, used, ticket)


async def test_a_ticket_of_a_bad_caller_is_refused_before_it_is_used() -> None:
    used = _Used()
    with pytest.raises(Unauthenticated):
        await exchange(VERIFIER, used, jwt.encode(_ticket_claims(role="root"), TEST_SECRET))
    assert used.used == set()


def test_a_session_keeps_the_tickets_claims_but_its_purpose_id_and_times() -> None:
    claims = _ticket_claims(iss="idp", aud="inbox", nbf=1, verticals=["grocery"])
    assert session_claims(claims) == {
        "sub": "ann",
        "role": "agent",
        "name": "Ann",
        "iss": "idp",
        "aud": "inbox",
        "verticals": ["grocery"],
    }


async def test_a_name_the_history_could_not_store_is_a_bad_token() -> None:
    now = int(time.time())
    token = jwt.encode(
        {"sub": "ann", "role": "agent", "name": "Ann\x00", "iat": now, "exp": now + 60},
        TEST_SECRET,
    )
    with pytest.raises(Unauthenticated, match="invalid token"):
        await check(VERIFIER, token)


async def test_a_blank_name_is_no_name() -> None:
    # Else every command of that caller would be refused for its by_name.
    now = int(time.time())
    token = jwt.encode(
        {"sub": "ann", "role": "agent", "name": " \t ", "iat": now, "exp": now + 60},
        TEST_SECRET,
    )
    assert (await check(VERIFIER, token)).principal.name is None
