"""Who is calling (CONTRACT §6), as a client of the running API sees it: a token on every
``/api`` route (401 with RFC 6750's challenge otherwise, saying only a short word), the
actor of every command is the token's ``sub``, a browser's session cookie with its CSRF
token, ``inbox token``, and a company's identity provider (RS256/ES256 from a JWKS)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from app.bootstrap import Endpoints
from tests.api_process import running_api
from tests.conftest import REPO
from tests.e2e.test_issue_api import command, report
from tests.tokens import (
    AGENT,
    TEST_SECRET,
    headers_for,
    hs256_with,
    token_for,
    unsigned,
    with_claims,
)

CHALLENGE = 'Bearer realm="inbox", error="invalid_token"'


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": AGENT, "role": "admin", "iat": now, "exp": now + 600} | overrides


BAD_TOKENS = {
    "expired": jwt.encode(_claims(exp=int(time.time()) - 3600), TEST_SECRET),
    "not yet valid": jwt.encode(_claims(nbf=int(time.time()) + 3600), TEST_SECRET),
    "wrongly signed": jwt.encode(_claims(), "not-the-secret-but-as-long-0123456789"),
    "alg none": unsigned(_claims()),
    "tampered": with_claims(jwt.encode(_claims(role="agent"), TEST_SECRET), _claims()),
    "malformed": "not-a-jwt",
    "unknown role": jwt.encode(_claims(role="root"), TEST_SECRET),
    "no exp": jwt.encode({"sub": AGENT, "role": "admin"}, TEST_SECRET),
}


def _assert_401(response: httpx.Response, detail: str, challenge: str = CHALLENGE) -> None:
    assert response.status_code == 401, response.text
    assert response.json() == {"status_code": 401, "detail": detail}
    assert response.headers["WWW-Authenticate"] == challenge


def test_no_token_is_401_with_the_bearer_challenge(api: str) -> None:
    for method, path in [("GET", "/api/issues"), ("POST", "/api/order-events")]:
        response = httpx.request(method, f"{api}{path}", json=[], timeout=10)
        _assert_401(response, "authentication required", 'Bearer realm="inbox"')


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
def test_a_bad_token_is_401_saying_only_invalid_token(api: str, case: str) -> None:
    headers = {"Authorization": f"Bearer {BAD_TOKENS[case]}"}
    _assert_401(httpx.get(f"{api}/api/issues", headers=headers, timeout=10), "invalid token")


@pytest.mark.parametrize("authorization", ["Basic YWRtaW46YWRtaW4=", "Bearer", "Token abc"])
def test_an_authorization_that_is_not_a_bearer_token_is_401(api: str, authorization: str) -> None:
    response = httpx.get(f"{api}/api/stats", headers={"Authorization": authorization}, timeout=10)
    _assert_401(response, "invalid token")


def test_a_bad_bearer_token_is_not_rescued_by_a_good_cookie(api: str) -> None:
    with httpx.Client(base_url=api, timeout=10) as browser:
        assert browser.post("/api/session", json={"token": token_for()}).status_code == 201
        response = browser.get("/api/issues", headers={"Authorization": "Bearer x"})
    _assert_401(response, "invalid token")


@pytest.mark.parametrize("path", ["/health", "/ready", "/metrics", "/schema/openapi.json"])
def test_operations_and_the_document_need_no_token(api: str, path: str) -> None:
    assert httpx.get(f"{api}{path}", timeout=10).status_code == 200


# ---- the actor is the token's sub ---------------------------------------------------------


def test_a_body_agent_id_other_than_the_sub_is_422_and_changes_nothing(
    http: httpx.Client,
) -> None:
    issue_id = report(http)["issue_id"]
    response = command(http, issue_id, "notes", {"agent_id": "agent-mallory", "text": "x"})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "agent_id"
    assert [e["type"] for e in http.get(f"/api/issues/{issue_id}/events").json()["items"]] == [
        "detected"
    ]


def test_a_command_without_agent_id_is_by_the_sub(http: httpx.Client) -> None:
    issue_id = report(http)["issue_id"]
    cat = {"Authorization": f"Bearer {token_for('agent-cat', 'agent', name='Cat Stevens')}"}
    done = command(http, issue_id, "acknowledge", {}, **cat)
    assert done.status_code == 200, done.text
    events = http.get(f"/api/issues/{issue_id}/events").json()["items"]
    assert events[-1]["type"] == "acknowledged"
    assert events[-1]["data"]["by"] == "agent-cat"


def test_an_agent_may_take_an_issue_but_only_a_lead_may_give_it_to_another(
    http: httpx.Client,
) -> None:
    issue_id = report(http)["issue_id"]
    dan = headers_for("agent-dan", "agent")
    refused = command(http, issue_id, "assign", {"assignee": "agent-eve"}, **dan)
    assert refused.status_code == 403, refused.text
    assert refused.json()["status_code"] == 403
    taken = command(http, issue_id, "assign", {"assignee": "agent-dan"}, **dan)
    assert taken.status_code == 200, taken.text
    lead = headers_for("lead-liz", "lead")
    given = command(http, issue_id, "assign", {"assignee": "agent-eve"}, **lead)
    assert given.status_code == 200, given.text
    events = http.get(f"/api/issues/{issue_id}/events").json()["items"]
    assert [e["data"]["assignee"] for e in events if e["type"] == "assigned"] == [
        "agent-dan",
        "agent-eve",
    ]


# ---- a browser's session ------------------------------------------------------------------


def _set_cookies(response: httpx.Response) -> dict[str, str]:
    return {header.split("=", 1)[0]: header for header in response.headers.get_list("set-cookie")}


def test_a_session_cookie_authenticates_reads_and_the_stream(api: str) -> None:
    with httpx.Client(base_url=api, timeout=10) as browser:
        started = browser.post("/api/session", json={"token": token_for("agent-fay", "agent")})
        assert started.status_code == 201, started.text
        session = started.json()
        assert (session["sub"], session["role"]) == ("agent-fay", "agent")
        cookies = _set_cookies(started)
        flags = [f.strip().lower() for f in cookies["inbox_session"].split(";")]
        assert {"httponly", "samesite=strict", "path=/"} <= set(flags)
        assert "secure" not in flags  # loopback: plain http
        assert any(f.startswith("max-age=") and 0 < int(f[8:]) <= 3600 for f in flags)
        assert "httponly" not in cookies["csrftoken"].lower()  # the page reads it

        assert browser.get("/api/issues").status_code == 200
        with browser.stream("GET", "/api/stream") as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")


def test_a_change_by_cookie_needs_the_csrf_token_and_a_bearer_one_does_not(
    api: str, http: httpx.Client
) -> None:
    issue_id = report(http)["issue_id"]
    with httpx.Client(base_url=api, timeout=10) as browser:
        started = browser.post("/api/session", json={"token": token_for()})
        csrf = started.json()["csrf_token"]
        assert browser.cookies["csrftoken"] == csrf
        forged = browser.post(f"/api/issues/{issue_id}/notes", json={"text": "forged"})
        assert forged.status_code == 403, forged.text
        assert forged.json()["status_code"] == 403
        wrong = browser.post(
            f"/api/issues/{issue_id}/notes", json={"text": "forged"}, headers={"x-csrftoken": "x"}
        )
        assert wrong.status_code == 403, wrong.text
        done = browser.post(
            f"/api/issues/{issue_id}/notes", json={"text": "mine"}, headers={"x-csrftoken": csrf}
        )
        assert done.status_code == 200, done.text
    by_bearer = command(http, issue_id, "notes", {"text": "by bearer"})  # no CSRF token
    assert by_bearer.status_code == 200, by_bearer.text
    notes = [
        e["data"]["text"]
        for e in http.get(f"/api/issues/{issue_id}/events").json()["items"]
        if e["type"] == "note_added"
    ]
    assert notes == ["mine", "by bearer"]


def test_ending_a_session_clears_its_cookie(api: str) -> None:
    with httpx.Client(base_url=api, timeout=10) as browser:
        browser.post("/api/session", json={"token": token_for()})
        assert browser.get("/api/stats").status_code == 200
        ended = browser.delete("/api/session")
        assert ended.status_code == 204
        assert "max-age=0" in _set_cookies(ended)["inbox_session"].lower()
        assert "inbox_session" not in browser.cookies
        _assert_401(browser.get("/api/stats"), "authentication required", 'Bearer realm="inbox"')


def test_a_session_is_started_by_json_only(api: str) -> None:
    """A form another site posts (no CORS preflight) cannot log a browser in as someone."""
    body = json.dumps({"token": token_for()})
    response = httpx.post(
        f"{api}/api/session", content=body, headers={"Content-Type": "text/plain"}, timeout=10
    )
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "Content-Type"
    assert "set-cookie" not in response.headers


def test_a_session_is_refused_for_a_bad_token_and_secure_off_loopback(api: str) -> None:
    _assert_401(
        httpx.post(f"{api}/api/session", json={"token": BAD_TOKENS["expired"]}, timeout=10),
        "invalid token",
    )
    elsewhere = httpx.post(
        f"{api}/api/session",
        json={"token": token_for()},
        headers={"Host": "inbox.example.com"},
        timeout=10,
    )
    assert elsewhere.status_code == 201
    assert "secure" in [
        f.strip().lower() for f in _set_cookies(elsewhere)["inbox_session"].split(";")
    ]


# ---- inbox token, inbox api ---------------------------------------------------------------


def _inbox(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("INBOX_JWT")}
    return subprocess.run(  # noqa: PLW1510 (the caller checks the code)
        [sys.executable, "-m", "app.cli", *args],
        env=environment | env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_inbox_token_prints_a_token_the_api_accepts(api: str, tmp_path: Path) -> None:
    made = _inbox(
        "token",
        "--role",
        "agent",
        "--sub",
        "agent-gus",
        "--country",
        "FI",
        "--ttl",
        "30m",
        env={"INBOX_JWT_SECRET": TEST_SECRET, "INBOX_DATA_DIR": str(tmp_path)},
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert made.stdout == token + "\n"  # alone on stdout
    claims = jwt.decode(token, TEST_SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["role"], claims["countries"]) == ("agent-gus", "agent", ["FI"])
    assert 29 * 60 <= claims["exp"] - claims["iat"] <= 30 * 60
    response = httpx.get(
        f"{api}/api/issues", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 200, response.text


def test_inbox_token_and_inbox_api_need_a_way_to_check_tokens(tmp_path: Path) -> None:
    env = {"INBOX_DATA_DIR": str(tmp_path)}
    token = _inbox("token", "--role", "agent", env=env)
    assert (token.returncode, token.stdout) == (2, "")
    assert "INBOX_JWT_SECRET" in token.stderr
    api = _inbox("api", env=env)
    assert api.returncode == 2
    assert "INBOX_JWT_SECRET or INBOX_JWT_JWKS" in api.stderr


# ---- a company's identity provider: RS256 / ES256 from a JWKS ----------------------------

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def idp_api(endpoints: Endpoints, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``inbox api`` with the identity provider's JWKS file (and the development secret)."""
    folder = tmp_path_factory.mktemp("idp")
    keys = [
        RSAAlgorithm.to_jwk(RSA_KEY.public_key(), as_dict=True) | {"kid": "r1", "alg": "RS256"},
        ECAlgorithm.to_jwk(EC_KEY.public_key(), as_dict=True) | {"kid": "e1", "alg": "ES256"},
    ]
    (folder / "jwks.json").write_text(json.dumps({"keys": keys}))
    env = {
        "INBOX_JWT_JWKS": str(folder / "jwks.json"),
        "INBOX_JWT_ISSUER": "https://idp.example.com",
        "INBOX_JWT_AUDIENCE": "support-inbox",
    }
    with running_api(endpoints, folder / "api.log", env=env, ready_path="/health") as base_url:
        yield base_url


def _idp_claims(**overrides: Any) -> dict[str, Any]:
    return _claims(iss="https://idp.example.com", aud="support-inbox", role="auditor") | overrides


@pytest.mark.parametrize(("key", "alg", "kid"), [(RSA_KEY, "RS256", "r1"), (EC_KEY, "ES256", "e1")])
def test_a_token_of_the_identity_provider_is_accepted(
    idp_api: str, key: Any, alg: str, kid: str
) -> None:
    token = jwt.encode(_idp_claims(), key, algorithm=alg, headers={"kid": kid})
    response = httpx.get(
        f"{idp_api}/api/events", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 200, response.text


def _public_pem() -> bytes:
    return RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize(
    ("case", "token"),
    [
        (
            "HS256 signed with the RS256 public key",
            hs256_with(_public_pem(), _idp_claims(), kid="r1"),
        ),
        (
            "unknown kid",
            jwt.encode(_idp_claims(), RSA_KEY, algorithm="RS256", headers={"kid": "r9"}),
        ),
        (
            "another issuer",
            jwt.encode(_idp_claims(iss="https://evil"), RSA_KEY, "RS256", {"kid": "r1"}),
        ),
        ("another audience", jwt.encode(_idp_claims(aud="crm"), RSA_KEY, "RS256", {"kid": "r1"})),
        ("the EC kid, RSA-signed", jwt.encode(_idp_claims(), RSA_KEY, "RS256", {"kid": "e1"})),
    ],
)
def test_a_token_the_identity_provider_did_not_sign_for_us_is_401(
    idp_api: str, case: str, token: str
) -> None:
    response = httpx.get(
        f"{idp_api}/api/events", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    _assert_401(response, "invalid token")
