"""``GET /api/rules`` over real HTTP: the rules the running API judges with (the rules file
``inbox up`` was started with), for every role, with an ETag of their version that a
client revalidates with ``If-None-Match``; and the schema the OpenAPI document shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from app.principal import ROLES, Role
from app.rules_config import load, read, version_of
from tests.tokens import headers_for

SHIPPED_VERTICALS = ["restaurant", "grocery", "retail", "parcel", "pharmacy", "florist"]


@pytest.fixture(scope="module")
def rules_file(api: str, api_folder: Path) -> Path:
    """The rules file the ``api`` fixture's ``inbox up`` runs with."""
    return api_folder / "rules.toml"


def get_rules(api: str, role: Role = "agent", if_none_match: str | None = None) -> httpx.Response:
    headers = headers_for(f"rules-{role}", role)
    if if_none_match is not None:
        headers["If-None-Match"] = if_none_match
    return httpx.get(f"{api}/api/rules", headers=headers, timeout=10)


@pytest.mark.parametrize("role", ROLES)
def test_every_role_reads_the_rules_the_api_judges_with(
    api: str, rules_file: Path, role: Role
) -> None:
    response = get_rules(api, role)
    assert response.status_code == 200, response.text
    body = response.json()
    text, _ = read(rules_file)
    assert body["version"] == version_of(text)
    assert [v["name"] for v in body["verticals"]] == SHIPPED_VERTICALS


def test_the_rules_are_the_files_verticals_kinds_and_declared_rules(
    api: str, rules_file: Path
) -> None:
    body: dict[str, Any] = get_rules(api).json()
    parsed = load(rules_file)
    verticals = {v["name"]: v for v in body["verticals"]}
    for name, spec in parsed.verticals.items():
        assert verticals[name]["rules"] == sorted(spec.rules), name
        assert verticals[name]["delivery"] == spec.delivery, name
        assert verticals[name]["sla_minutes"] == dict(spec.sla_minutes), name
    pharmacy = verticals["pharmacy"]
    assert "prescription_check_pending" in pharmacy["rules"]
    assert pharmacy["sla_minutes"] == {"low": 30, "medium": 15, "high": 10, "critical": 5}
    assert pharmacy["events"]["prescription_submitted"] == {
        "prescription_id": "text",
        "controlled_substance": "boolean?",
    }
    assert pharmacy["events"]["prescription_rejected"]["reason"] == "text?"
    # The own-staff florist: no courier rule applies, and it sends no event of its own.
    florist = verticals["florist"]
    assert florist["delivery"] == "own_staff"
    assert "no_courier_assigned" not in florist["rules"]
    assert "venue_acceptance_delayed" in florist["rules"]
    assert florist["events"] == {}

    kinds = {k["name"]: k for k in body["kinds"]}
    assert set(kinds) == parsed.kinds
    assert [k["name"] for k in body["kinds"]][-1] == "prescription_check_pending"
    assert kinds["prescription_check_pending"] == {
        "name": "prescription_check_pending",
        "declared": True,
        "verticals": ["pharmacy"],
    }
    assert kinds["venue_acceptance_delayed"]["declared"] is False
    assert kinds["venue_acceptance_delayed"]["verticals"] == SHIPPED_VERTICALS
    assert "florist" not in kinds["courier_waiting_at_venue"]["verticals"]

    assert body["waiting"] == [
        {
            "name": "prescription_check_pending",
            "from": "prescription_submitted",
            "until": ["prescription_approved", "prescription_rejected"],
            "tiers": [[10, "medium"], [20, "high"], [30, "critical"]],
            "evidence": ["prescription_id", "controlled_substance"],
        }
    ]


def test_a_client_revalidates_its_copy_by_the_version(api: str) -> None:
    first = get_rules(api)
    version = first.json()["version"]
    assert first.headers["ETag"] == f'"{version}"'
    assert first.headers["Cache-Control"] == "no-cache"
    for matching in (f'"{version}"', f'W/"{version}"', f'"older", "{version}"', "*"):
        again = get_rules(api, if_none_match=matching)
        assert again.status_code == 304, (matching, again.text)
        assert again.content == b""
        assert again.headers["ETag"] == f'"{version}"'
        assert again.headers["Cache-Control"] == "no-cache"
    changed = get_rules(api, if_none_match='"0123456789abcdef"')
    assert changed.status_code == 200
    assert changed.json() == first.json()


@pytest.mark.parametrize("header", ["9cc5e3a1", '"unclosed', '"a" "b"', '"x",', "W/"])
def test_a_malformed_if_none_match_is_400_naming_it(api: str, header: str) -> None:
    response = get_rules(api, if_none_match=header)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "If-None-Match"


def test_the_rules_need_a_token(api: str) -> None:
    response = httpx.get(f"{api}/api/rules", timeout=10)
    assert response.status_code == 401


def test_the_openapi_document_shows_the_rules_schema(api: str) -> None:
    document = httpx.get(f"{api}/schema/openapi.json", timeout=10).json()
    operation = document["paths"]["/api/rules"]["get"]
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/Rules"}
    assert "304" in operation["responses"]
    schemas = document["components"]["schemas"]
    assert set(schemas["Rules"]["required"]) == {"version", "verticals", "kinds", "waiting"}
    assert set(schemas["RulesWaiting"]["properties"]) == {
        "name",
        "from",
        "until",
        "tiers",
        "evidence",
    }
    assert set(schemas["RulesVertical"]["properties"]) == {
        "name",
        "delivery",
        "rules",
        "sla_minutes",
        "events",
    }
    assert set(schemas["RulesKind"]["properties"]) == {"name", "declared", "verticals"}
    headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
    assert "If-None-Match" in headers
