"""The domain refuses what PostgreSQL cannot store, whoever calls it (the detector, a
script), and the order-event decoder refuses what it cannot read, however it fails."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from app.ingest import MAX_EVENT_BYTES, InvalidEvent, decode, validate
from app.rules_config import load as load_rules
from domain.errors import InvalidValue
from domain.issue import OrderIssue
from domain.values import check_object, is_storable, storable

SHIPPED_RULES = load_rules(None)

AT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
UNSTORABLE = ["a\x00b", "\ud800", "x\udfff"]


def issue(**overrides: Any) -> OrderIssue:
    fields: dict[str, Any] = {
        "order_id": "o-1",
        "kind": "payment_failed",
        "severity": "high",
        "vertical": "grocery",
        "country": "FI",
        "city": "Oulu",
        "evidence": {"reason": "declined"},
        "at": AT,
    }
    return OrderIssue.detect(**(fields | overrides))


@pytest.mark.parametrize("text", UNSTORABLE)
@pytest.mark.parametrize(
    ("field", "act"),
    [
        ("assignee", lambda i, t: i.assign(assignee=t, at=AT, by="a")),
        ("agent_id", lambda i, t: i.acknowledge(at=AT, by=t)),
        ("text", lambda i, t: i.add_note(text=t, at=AT, by="a")),
        ("reason", lambda i, t: i.reopen(reason=t, at=AT, by="a")),
        ("note", lambda i, t: i.resolve(resolution="fixed", note=t, at=AT, by="a")),
        (
            "evidence.why",
            lambda i, t: i.escalate(severity="critical", evidence={"why": t}, at=AT, by="a"),
        ),
        (
            "details.to[0]",
            lambda i, t: i.take_action(action="other", details={"to": [t]}, at=AT, by="a"),
        ),
    ],
)
def test_a_command_refuses_text_postgresql_cannot_store(field: str, act: Any, text: str) -> None:
    one = issue()
    if field == "reason":
        one.resolve(resolution="fixed", note="", at=AT, by="a")
    with pytest.raises(InvalidValue) as refused:
        act(one, text)
    assert refused.value.field == field


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"order_id": "a\x00"}, "order_id"),
        ({"city": "Ou\x00lu"}, "city"),
        ({"country": "F\x00"}, "country"),
        ({"evidence": {"a": {"b\x00": 1}}}, "evidence.a"),
        ({"evidence": {"a": float("nan")}}, "evidence.a"),
        ({"evidence": {"a": [{"_type_": 1, "_data_": 2}]}}, "evidence.a[0]"),
    ],
)
def test_raising_an_issue_refuses_what_cannot_be_stored(
    overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidValue) as refused:
        issue(**overrides)
    assert refused.value.field == field


def test_a_free_form_object_nests_at_most_16_deep() -> None:
    nested: dict[str, Any] = {}
    for _ in range(15):
        nested = {"k": nested}
    check_object("evidence", nested)  # sixteen objects, the outer one included
    with pytest.raises(InvalidValue) as refused:
        check_object("evidence", {"k": nested})
    assert refused.value.field == "evidence" + ".k" * 16


@pytest.mark.parametrize("until", [datetime(9999, 12, 31, tzinfo=UTC), AT.replace(year=2100)])
def test_a_snooze_until_beyond_the_time_range_is_refused(until: datetime) -> None:
    with pytest.raises(InvalidValue) as refused:
        issue().snooze(until=until, at=AT, by="a")
    assert refused.value.field == "until"


def test_storable_escapes_only_what_postgresql_cannot_store() -> None:
    assert storable("é\x00\ud800x") == "é\\u0000\\ud800x"
    assert all(not is_storable(text) for text in UNSTORABLE)
    assert is_storable(storable("a\x00"))
    assert is_storable("😀\n\t")


def event(**overrides: Any) -> dict[str, Any]:
    return {
        "event_id": "e-1",
        "type": "eta_updated",
        "order_id": "o-1",
        "occurred_at": "2026-11-25T12:00:00Z",
        "vertical": "restaurant",
        "country": "FI",
        "city": "Helsinki",
        "data": {"estimated_delivery_at": "2026-11-25T12:30:00Z"},
    } | overrides


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"order_id": "o\x00"}, "order_id"),
        ({"event_id": "e\x00"}, "event_id"),
        ({"city": "\x00"}, "city"),
        ({"occurred_at": "9999-12-31T23:59:59Z"}, "occurred_at"),
        ({"occurred_at": "1999-12-31T23:59:59Z"}, "occurred_at"),
        ({"data": {"estimated_delivery_at": "2100-01-01T00:00:00Z"}}, "data.estimated_delivery_at"),
        ({"data": {}}, "data.estimated_delivery_at"),
        ({"type": "payment_failed", "data": {"reason": "\x00"}}, "data.reason"),
    ],
)
def test_an_order_event_names_the_field_it_is_refused_for(
    overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidEvent) as refused:
        validate(event(**overrides), SHIPPED_RULES)
    assert refused.value.field == field
    assert field.rsplit(".", 1)[-1] in refused.value.reason


def test_an_order_placed_amount_past_int64_is_refused() -> None:
    data = {
        "venue_id": "v",
        "customer_id": "c",
        "promised_delivery_at": "2026-11-25T12:30:00Z",
        "amount": 2**63,
        "currency": "EUR",
    }
    with pytest.raises(InvalidEvent) as refused:
        validate(event(type="order_placed", data=data), SHIPPED_RULES)
    assert refused.value.field == "data.amount"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"a":' * 5_000 + b"1" + b"}" * 5_000, "nested too deeply"),
        (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, f"over {MAX_EVENT_BYTES} bytes"),
        (b'"\\ud800"', "malformed JSON"),
        (b"[1, 2", "malformed JSON"),
        (b"[1, 2]", "Expected `object`"),
    ],
)
def test_a_payload_that_cannot_be_decoded_is_an_invalid_event(payload: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as refused:
        decode(payload, SHIPPED_RULES)
    assert reason in refused.value.reason


def test_a_valid_payload_decodes() -> None:
    decoded = decode(msgspec.json.encode(event()), SHIPPED_RULES)
    assert decoded.data["estimated_delivery_at"] == AT + timedelta(minutes=30)
