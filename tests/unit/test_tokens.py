"""Checking tokens (``adapters/tokens.py``, ``app/http/auth.check``): each way a token can be
wrong is refused, and only with the key its algorithm belongs to. Real keys, real JWKS (a
file, and a URL served over loopback HTTP)."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from adapters.tokens import InvalidToken, TokenConfig, Verifier
from app.http.auth import check
from app.http.errors import Unauthenticated
from tests.tokens import TEST_SECRET, hs256_with, unsigned, with_claims

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "ann", "role": "agent", "iat": now, "exp": now + 600} | overrides


def _jwk(key: Any, kid: str, alg: str) -> dict[str, Any]:
    public = key.public_key()
    to_jwk = RSAAlgorithm.to_jwk if isinstance(public, rsa.RSAPublicKey) else ECAlgorithm.to_jwk
    return to_jwk(public, as_dict=True) | {"kid": kid, "alg": alg, "use": "sig"}


@pytest.fixture
def jwks_file(tmp_path: Path) -> str:
    path = tmp_path / "jwks.json"
    keys = [_jwk(RSA_KEY, "rsa-1", "RS256"), _jwk(EC_KEY, "ec-1", "ES256")]
    path.write_text(json.dumps({"keys": keys}))
    return str(path)


async def test_an_hs256_token_signed_with_the_secret_checks() -> None:
    verifier = Verifier(TokenConfig(secret=TEST_SECRET))
    token = jwt.encode(_claims(name="Ann", verticals=["restaurant"]), TEST_SECRET)
    checked = await check(verifier, token)
    assert checked.principal.sub == "ann"
    assert checked.principal.role == "agent"
    assert checked.principal.name == "Ann"
    assert checked.principal.verticals == frozenset({"restaurant"})
    assert checked.principal.countries is None


@pytest.mark.parametrize(
    ("case", "token"),
    [
        ("expired", jwt.encode(_claims(exp=int(time.time()) - 3600), TEST_SECRET)),
        ("not yet valid", jwt.encode(_claims(nbf=int(time.time()) + 3600), TEST_SECRET)),
        ("issued in the future", jwt.encode(_claims(iat=int(time.time()) + 3600), TEST_SECRET)),
        ("another secret", jwt.encode(_claims(), "another-secret-of-enough-length-0123456")),
        ("alg none", unsigned(_claims())),
        ("no exp", jwt.encode({"sub": "ann", "role": "agent"}, TEST_SECRET)),
        ("no sub", jwt.encode(_claims(sub=None), TEST_SECRET)),
        ("unknown role", jwt.encode(_claims(role="root"), TEST_SECRET)),
        ("no role", jwt.encode({k: v for k, v in _claims().items() if k != "role"}, TEST_SECRET)),
        ("scope not a list", jwt.encode(_claims(countries="FI"), TEST_SECRET)),
        ("HS384", jwt.encode(_claims(), TEST_SECRET, algorithm="HS384")),
        ("malformed", "not.a.token"),
        ("garbage", "x"),
        ("RS256 without a JWKS", jwt.encode(_claims(), RSA_KEY, algorithm="RS256")),
    ],
)
async def test_a_bad_token_is_unauthenticated_with_a_short_reason(case: str, token: str) -> None:
    verifier = Verifier(TokenConfig(secret=TEST_SECRET))
    with pytest.raises(Unauthenticated) as refused:
        await check(verifier, token)
    assert refused.value.detail == "invalid token", case


async def test_a_tampered_token_is_refused() -> None:
    verifier = Verifier(TokenConfig(secret=TEST_SECRET))
    tampered = with_claims(jwt.encode(_claims(), TEST_SECRET), _claims(role="admin"))
    with pytest.raises(InvalidToken):
        await verifier.claims(tampered)


@pytest.mark.parametrize(
    ("key", "kid", "alg"), [(RSA_KEY, "rsa-1", "RS256"), (EC_KEY, "ec-1", "ES256")]
)
async def test_a_public_key_token_checks_with_the_jwks_key_its_kid_names(
    jwks_file: str, key: Any, kid: str, alg: str
) -> None:
    verifier = Verifier(TokenConfig(jwks=jwks_file))
    token = jwt.encode(_claims(role="lead"), key, algorithm=alg, headers={"kid": kid})
    assert (await check(verifier, token)).principal.role == "lead"


def _public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize("secret", [None, TEST_SECRET])
async def test_an_hs256_token_signed_with_the_rsa_public_key_is_refused(
    jwks_file: str, secret: str | None
) -> None:
    verifier = Verifier(TokenConfig(secret=secret, jwks=jwks_file))
    token = hs256_with(_public_pem(RSA_KEY), _claims(role="admin"), kid="rsa-1")
    with pytest.raises(InvalidToken):
        await verifier.claims(token)


@pytest.mark.parametrize(
    ("case", "key", "alg", "kid"),
    [
        ("unknown kid", RSA_KEY, "RS256", "rsa-9"),
        ("another key under a known kid", OTHER_RSA_KEY, "RS256", "rsa-1"),
        ("the EC kid with an RSA algorithm", RSA_KEY, "RS256", "ec-1"),
        ("another algorithm than the key names", RSA_KEY, "PS256", "rsa-1"),
    ],
)
async def test_a_public_key_token_the_jwks_does_not_vouch_for_is_refused(
    jwks_file: str, case: str, key: Any, alg: str, kid: str
) -> None:
    verifier = Verifier(TokenConfig(jwks=jwks_file))
    token = jwt.encode(_claims(), key, algorithm=alg, headers={"kid": kid})
    with pytest.raises(InvalidToken):
        await verifier.claims(token)
    assert case


async def test_issuer_and_audience_are_checked_when_configured() -> None:
    verifier = Verifier(TokenConfig(secret=TEST_SECRET, issuer="https://idp", audience="inbox"))
    good = _claims(iss="https://idp", aud="inbox")
    assert (await verifier.claims(jwt.encode(good, TEST_SECRET)))["sub"] == "ann"
    for bad in (good | {"iss": "https://other"}, good | {"aud": "crm"}, _claims()):
        with pytest.raises(InvalidToken):
            await verifier.claims(jwt.encode(bad, TEST_SECRET))


class _Jwks(http.server.BaseHTTPRequestHandler):
    keys: list[dict[str, Any]] = []
    fetches = 0

    def do_GET(self) -> None:
        type(self).fetches += 1
        body = json.dumps({"keys": type(self).keys}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _serving(keys: list[dict[str, Any]]) -> Iterator[type[_Jwks]]:
    handler = type("Jwks", (_Jwks,), {"keys": keys, "fetches": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        handler.url = f"http://127.0.0.1:{server.server_port}/jwks"  # type: ignore[attr-defined]
        yield handler
    finally:
        server.shutdown()
        server.server_close()


async def test_a_jwks_url_is_cached_and_fetched_again_for_a_rotated_key() -> None:
    with _serving([_jwk(RSA_KEY, "rsa-1", "RS256")]) as jwks:
        url = jwks.url  # type: ignore[attr-defined]
        verifier = Verifier(TokenConfig(jwks=url, jwks_refetch_seconds=0))
        first = jwt.encode(_claims(), RSA_KEY, algorithm="RS256", headers={"kid": "rsa-1"})
        for _ in range(3):
            await verifier.claims(first)
        assert jwks.fetches == 1
        # The provider rotates: a new key under a new kid, published beside the old one.
        jwks.keys = [*jwks.keys, _jwk(OTHER_RSA_KEY, "rsa-2", "RS256")]
        rotated = jwt.encode(_claims(), OTHER_RSA_KEY, algorithm="RS256", headers={"kid": "rsa-2"})
        assert (await verifier.claims(rotated))["sub"] == "ann"
        assert jwks.fetches == 2


def test_a_plain_http_jwks_url_is_refused_off_loopback() -> None:
    with pytest.raises(ValueError, match="https"):
        Verifier(TokenConfig(jwks="http://idp.example.com/jwks"))


def test_nothing_to_check_tokens_with_is_refused() -> None:
    with pytest.raises(ValueError, match="neither"):
        Verifier(TokenConfig())
