"""The JSON Schemas in docs/schemas are generated from the integration and order-event
Structs."""

from __future__ import annotations

from pathlib import Path

from app.integration import INTEGRATION_EVENTS, schema_documents
from domain.issue import EVENT_NAMES

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def test_schema_files_are_up_to_date() -> None:
    expected = schema_documents()
    present = {path.name: path.read_text() for path in SCHEMAS.glob("*.json")}
    stale = sorted(name for name in expected if present.get(name) != expected[name])
    extra = sorted(set(present) - set(expected))
    assert not stale, f"stale schemas {stale}: run `.venv/bin/inbox schemas`"
    assert not extra, f"schemas of no event {extra}: delete them"


def test_every_domain_event_is_on_the_allow_list() -> None:
    assert set(INTEGRATION_EVENTS) == set(EVENT_NAMES)
