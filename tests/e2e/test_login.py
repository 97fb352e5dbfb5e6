"""A browser's login, as the running ``inbox up`` serves it: the one-time login link it
prints (a ticket in the URL fragment, exchanged once by ``POST /api/session``), who the
browser is (``GET /api/session``), and the name of the caller on the events it causes."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from app import bootstrap
from app.principal import ROLES, Role
from tests.conftest import wait_until
from tests.e2e.test_auth import _inbox
from tests.e2e.test_issue_api import command, report
from tests.tokens import TEST_SECRET, token_for

CHALLENGE = 'Bearer realm="inbox", error="invalid_token"'


def _ticket(sub: str = "agent-tia", role: Role = "agent", name: str | None = "Tia") -> str:
    return bootstrap.development_ticket(TEST_SECRET, role=role, sub=sub, name=name)


def _assert_401(response: httpx.Response, detail: str = "invalid token") -> None:
    assert response.status_code == 401, response.text
    assert response.json() == {"status_code": 401, "detail": detail}


def _login_line(api_folder: Path) -> str:
    log = api_folder / "api.log"
    found: list[str] = []

    def printed() -> bool:
        found[:] = re.findall(r"^login: (\S+)$", log.read_text(), flags=re.MULTILINE)
        return bool(found)

    wait_until(printed, timeout=10, what="inbox up's login line")
    assert len(found) == 1
    return found[0]


def test_inbox_up_prints_a_login_link_that_logs_in_once(api: str, api_folder: Path) -> None:
    link = _login_line(api_folder)
    assert link.startswith(f"{api}/login#ticket=")
    ticket = link.partition("#ticket=")[2]
    with httpx.Client(base_url=api, timeout=10) as browser:
        started = browser.post("/api/session", json={"ticket": ticket})
        assert started.status_code == 201, started.text
        session = started.json()
        assert (session["sub"], session["role"], session["name"]) == ("demo", "admin", "Demo")
        assert "inbox_session" in browser.cookies
        assert browser.cookies["inbox_session"] != ticket  # a session token of its own
        assert browser.get("/api/issues").status_code == 200
        assert browser.get("/api/session").json()["sub"] == "demo"
    again = httpx.post(f"{api}/api/session", json={"ticket": ticket}, timeout=10)
    _assert_401(again)
    assert "set-cookie" not in again.headers


def test_a_ticket_logs_in_once_and_its_cookie_is_a_session(api: str) -> None:
    ticket = _ticket()
    with httpx.Client(base_url=api, timeout=10) as browser:
        started = browser.post("/api/session", json={"ticket": ticket})
        assert started.status_code == 201, started.text
        assert (started.json()["sub"], started.json()["name"]) == ("agent-tia", "Tia")
        expires = started.json()["expires_at"]
        assert browser.get("/api/issues").status_code == 200
        # A change by the cookie needs its CSRF token, as with a token's session.
        issue_id = report(httpx.Client(base_url=api, timeout=10, headers=_bearer(token_for())))[
            "issue_id"
        ]
        noted = browser.post(
            f"/api/issues/{issue_id}/notes",
            json={"text": "by ticket"},
            headers={"x-csrftoken": started.json()["csrf_token"]},
        )
        assert noted.status_code == 200, noted.text
        _assert_401(browser.post("/api/session", json={"ticket": ticket}))
        # The refused second use leaves the first session alone.
        assert browser.get("/api/session").json()["expires_at"] == expires


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _raw_ticket(**overrides: Any) -> str:
    now = int(time.time())
    claims = {"sub": "agent-tia", "role": "agent", "iat": now, "exp": now + 600}
    claims |= {"purpose": "login", "jti": f"jti-{time.monotonic_ns()}"} | overrides
    return jwt.encode(claims, TEST_SECRET)


@pytest.mark.parametrize(
    "overrides",
    [
        {"iat": int(time.time()) - 1200, "exp": int(time.time()) - 600},  # expired
        {"exp": int(time.time()) + 3600},  # lives an hour
        {"purpose": "reset"},
        {"role": "root"},
    ],
    ids=["expired", "too long", "another purpose", "unknown role"],
)
def test_a_ticket_that_does_not_check_is_401(api: str, overrides: dict[str, Any]) -> None:
    response = httpx.post(
        f"{api}/api/session", json={"ticket": _raw_ticket(**overrides)}, timeout=10
    )
    _assert_401(response)
    assert "set-cookie" not in response.headers


def test_a_plain_token_is_not_a_ticket(api: str) -> None:
    _assert_401(httpx.post(f"{api}/api/session", json={"ticket": token_for()}, timeout=10))


def test_a_ticket_is_no_credential(api: str) -> None:
    ticket = _ticket(role="admin")
    bearer = httpx.get(f"{api}/api/issues", headers=_bearer(ticket), timeout=10)
    _assert_401(bearer)
    assert bearer.headers["WWW-Authenticate"] == CHALLENGE
    _assert_401(httpx.get(f"{api}/api/session", headers=_bearer(ticket), timeout=10))
    _assert_401(httpx.post(f"{api}/api/session", json={"token": ticket}, timeout=10))
    cookie = httpx.get(f"{api}/api/issues", cookies={"inbox_session": ticket}, timeout=10)
    _assert_401(cookie)
    # None of those used it up: it still logs in, once.
    assert httpx.post(f"{api}/api/session", json={"ticket": ticket}, timeout=10).status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "token"), ({"token": "x", "ticket": "y"}, "ticket")],
    ids=["neither", "both"],
)
def test_a_session_takes_exactly_one_of_token_and_ticket(
    api: str, body: dict[str, str], field: str
) -> None:
    response = httpx.post(f"{api}/api/session", json=body, timeout=10)
    assert response.status_code == 422, response.text
    assert response.json()["status_code"] == 422
    assert response.json()["field"] == field


# ---- who the browser is -----------------------------------------------------------------


def test_who_a_browser_is_needs_a_session_or_a_token(api: str) -> None:
    _assert_401(httpx.get(f"{api}/api/session", timeout=10), "authentication required")
    response = httpx.get(f"{api}/api/session", cookies={"inbox_session": "junk"}, timeout=10)
    _assert_401(response)


def test_who_a_browser_is_by_its_session_cookie(api: str) -> None:
    with httpx.Client(base_url=api, timeout=10) as browser:
        started = browser.post(
            "/api/session", json={"token": token_for("agent-gus", "agent", name="Gus")}
        )
        assert started.status_code == 201, started.text
        current = browser.get("/api/session")
        assert current.status_code == 200, current.text
        # The same session, and the server's clock as it is at each answer.
        assert current.json() | {"now": None} == started.json() | {
            "csrf_token": browser.cookies["csrftoken"],
            "now": None,
        }
        assert current.json()["clock_speed"] == 1
        assert current.json()["now"] >= started.json()["now"]
        assert current.json()["csrf_token"] == started.json()["csrf_token"]
        assert current.headers["cache-control"] == "no-store"
        assert "set-cookie" not in current.headers  # its CSRF cookie is kept
        browser.cookies.delete("csrftoken")
        renewed = browser.get("/api/session")
        assert renewed.status_code == 200
        csrf = renewed.json()["csrf_token"]
        assert browser.cookies["csrftoken"] == csrf
        browser.cookies.set("csrftoken", "forged", domain="127.0.0.1")
        replaced = browser.get("/api/session").json()["csrf_token"]
        assert replaced not in {"forged", csrf}
        # The token the page is given works for a change.
        issue_id = report(httpx.Client(base_url=api, timeout=10, headers=_bearer(token_for())))[
            "issue_id"
        ]
        noted = browser.post(
            f"/api/issues/{issue_id}/notes",
            json={"text": "x"},
            headers={"x-csrftoken": replaced},
        )
        assert noted.status_code == 200, noted.text
        browser.delete("/api/session", headers={"x-csrftoken": replaced})
        _assert_401(browser.get("/api/session"), "authentication required")


@pytest.mark.parametrize("role", ROLES)
def test_every_role_may_ask_who_it_is(api: str, role: Role) -> None:
    token = token_for(f"{role}-who", role)
    response = httpx.get(f"{api}/api/session", headers=_bearer(token), timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["sub"], body["role"], body["name"]) == (f"{role}-who", role, None)
    assert body["csrf_token"]
    assert "csrftoken" in response.cookies


# ---- the caller's name on the events it causes -----------------------------------------


def test_the_history_and_the_log_show_the_name_of_each_actor(api: str) -> None:
    named = httpx.Client(base_url=api, timeout=10, headers=_bearer(token_for(name="Ann Agent")))
    issue_id = report(named)["issue_id"]
    noted = command(named, issue_id, "notes", {"text": "called"})
    assert noted.status_code == 200, noted.text
    nameless = httpx.Client(base_url=api, timeout=10, headers=_bearer(token_for("agent-nn")))
    acked = command(nameless, issue_id, "acknowledge", {})
    assert acked.status_code == 200, acked.text
    history = named.get(f"/api/issues/{issue_id}/events").json()["items"]
    assert [(e["type"], e["data"]["by"], e["data"]["by_name"]) for e in history] == [
        ("detected", "agent-ann", "Ann Agent"),
        ("note_added", "agent-ann", "Ann Agent"),
        ("acknowledged", "agent-nn", None),
    ]
    first = history[0]["position"]
    log = named.get("/api/events", params={"after": first - 1, "limit": 200}).json()["items"]
    mine = [e for e in log if e["issue_id"] == issue_id]
    assert [e["data"]["by_name"] for e in mine] == ["Ann Agent", "Ann Agent", None]


def test_inbox_token_ticket_prints_a_ticket_that_logs_in(api: str, tmp_path: Path) -> None:
    made = _inbox(
        "token",
        "--ticket",
        "--role",
        "lead",
        "--sub",
        "lead-lou",
        env={"INBOX_JWT_SECRET": TEST_SECRET, "INBOX_DATA_DIR": str(tmp_path)},
    )
    assert made.returncode == 0, made.stderr
    ticket = made.stdout.strip()
    assert made.stdout == ticket + "\n"
    assert jwt.decode(ticket, TEST_SECRET, algorithms=["HS256"])["purpose"] == "login"
    started = httpx.post(f"{api}/api/session", json={"ticket": ticket}, timeout=10)
    assert started.status_code == 201, started.text
    assert (started.json()["sub"], started.json()["role"]) == ("lead-lou", "lead")
