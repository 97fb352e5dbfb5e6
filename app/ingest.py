"""Incoming order events (CONTRACT §2): validation shared by NATS and HTTP.

The envelope and each type's ``data`` are msgspec Structs; an event that fails says which
field and why, and never reaches the detector. Every text is one PostgreSQL can store and
every time lies in the range of ``domain/values.py`` (``app/edge.Checked``); a message body is
bounded in size before it is decoded, and one that cannot be decoded however it fails
(malformed, nested too deep) is an :class:`InvalidEvent` like any other.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

import msgspec

from app.edge import DOCUMENTED_TEXT_PATTERN, Aware, Checked, Country, Name, field_of
from domain.errors import InvalidValue
from domain.order import ORDER_EVENT_TYPES, OrderEvent
from domain.ruleset import EventType, RuleSet
from domain.values import INT64_MAX

# Each text one PostgreSQL can store (Checked checks it; the schemas say it).
_STORABLE = {"pattern": DOCUMENTED_TEXT_PATTERN}
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=200, extra_json_schema=_STORABLE)]
FreeText = Annotated[str, msgspec.Meta(max_length=1000, extra_json_schema=_STORABLE)]
City = Annotated[str, msgspec.Meta(max_length=200, extra_json_schema=_STORABLE)]

# The most bytes one order event may take as JSON (a real one takes a few hundred): a
# message over it is parked before it is decoded.
MAX_EVENT_BYTES = 64 * 1024


class Envelope(Checked):
    event_id: Id
    type: Name
    order_id: Id
    occurred_at: Aware
    vertical: Name
    country: Country
    city: City
    data: dict[str, Any] = msgspec.field(default_factory=dict)


class _Data(Checked):
    """The ``data`` of an event: its faults are named under ``data.``."""

    field_prefix = "data."


class Placed(_Data):
    venue_id: Id
    customer_id: Id
    promised_delivery_at: Aware
    amount: Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
    currency: Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")]


class Accepted(_Data):
    estimated_ready_at: Aware | None = None


class Reason(_Data):
    reason: FreeText = ""


class Courier(_Data):
    courier_id: Id


class Unassigned(_Data):
    courier_id: Id
    reason: FreeText = ""


class Eta(_Data):
    estimated_delivery_at: Aware


class Location(_Data):
    courier_id: Id
    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)]
    lon: Annotated[float, msgspec.Meta(ge=-180, le=180)]


class Cancelled(_Data):
    reason: FreeText = ""
    by: Literal["customer", "venue", "support", "system"] = "system"


class Contact(_Data):
    channel: Literal["chat", "phone", "email"]


class Empty(_Data):
    pass


DATA: dict[str, type[msgspec.Struct]] = {
    "order_placed": Placed,
    "venue_accepted": Accepted,
    "venue_rejected": Reason,
    "order_ready": Empty,
    "courier_assigned": Courier,
    "courier_unassigned": Unassigned,
    "courier_arrived_at_venue": Courier,
    "order_picked_up": Courier,
    "eta_updated": Eta,
    "courier_location": Location,
    "order_delivered": Empty,
    "order_cancelled": Cancelled,
    "payment_failed": Reason,
    "customer_contacted_support": Contact,
}


class InvalidEvent(Exception):
    """An order event refused: its id when it has one, why, and the field at fault
    (``data.reason``) when one is."""

    def __init__(self, event_id: str | None, reason: str, field: str | None = None) -> None:
        self.event_id = event_id
        self.reason = reason
        self.field = field
        super().__init__(f"event {event_id or '?'}: {reason}")


# What each type of a declared event's data field takes (``domain/ruleset.FIELD_TYPES``).
_DECLARED_FIELD: dict[str, Any] = {
    "text": FreeText,
    "time": Aware,
    "integer": Annotated[int, msgspec.Meta(ge=-INT64_MAX, le=INT64_MAX)],
    "number": float,
    "boolean": bool,
}


@functools.lru_cache(maxsize=256)
def declared_data(event_type: EventType) -> type[msgspec.Struct]:
    """The Struct a declared event type's ``data`` is validated with (its fields, each
    required unless marked optional; unknown fields are refused, as a typo would be)."""
    required = [(f.name, _DECLARED_FIELD[f.type]) for f in event_type.fields if f.required]
    optional = [
        (f.name, _DECLARED_FIELD[f.type] | None, None) for f in event_type.fields if not f.required
    ]
    return msgspec.defstruct(
        f"{event_type.name}_data",
        [*required, *optional],
        bases=(_Data,),
        forbid_unknown_fields=True,
    )


def decode(payload: bytes, rules: RuleSet) -> OrderEvent:
    """One message body → a domain OrderEvent, or InvalidEvent however it fails: over
    ``MAX_EVENT_BYTES``, malformed JSON, nested too deep for the decoder, or invalid."""
    if len(payload) > MAX_EVENT_BYTES:
        raise InvalidEvent(None, f"over {MAX_EVENT_BYTES} bytes of JSON")
    try:
        raw = msgspec.json.decode(payload)
    except msgspec.DecodeError as exc:
        raise InvalidEvent(None, f"malformed JSON: {exc}") from None
    except RecursionError:
        raise InvalidEvent(None, "the JSON is nested too deeply") from None
    return validate(raw, rules)


def validate(raw: Any, rules: RuleSet | None) -> OrderEvent:
    """One decoded JSON object → a domain OrderEvent, or InvalidEvent naming the field: its
    vertical must be one ``rules`` declares, and its type a built-in one or one that
    vertical declares, with that type's data.

    ``rules`` None: an event read back from ``order_events``, validated when it came. The
    rules may have changed since (a vertical or an event type no longer declared): it is
    checked as it was stored, its declared data kept as it is, so an order's history
    never becomes unreadable by a change of the rules file."""
    event_id = raw.get("event_id") if isinstance(raw, dict) else None
    named = str(event_id)[:200] if event_id else None
    try:
        envelope = msgspec.convert(raw, Envelope)
    except msgspec.ValidationError as exc:
        raise InvalidEvent(named, str(exc), field_of(str(exc))) from None
    except InvalidValue as exc:
        raise InvalidEvent(named, f"{exc.reason} - at `$.{exc.field}`", exc.field) from None
    schema = DATA.get(envelope.type) if rules is None else _schema_of(envelope, rules, named)
    if schema is None:  # stored, of a type declared when it came
        return _event(envelope, envelope.data)
    try:
        data = msgspec.convert(envelope.data, schema)
    except msgspec.ValidationError as exc:
        reason = str(exc).replace("`$", "`$.data")
        field = field_of(reason)
        if "$.data" not in reason:  # a field missing from data itself
            reason, field = f"data: {reason}", f"data.{field}" if field else "data"
        raise InvalidEvent(named, reason, field) from None
    except InvalidValue as exc:
        raise InvalidEvent(named, f"{exc.reason} - at `$.{exc.field}`", exc.field) from None
    if envelope.type in DATA:  # the fold reads these fields, times as times
        return _event(envelope, msgspec.structs.asdict(data))
    # A declared type's data is only kept and shown (facts, evidence): as JSON has it, the
    # same whether folded now or read back from the watch row, and storable as evidence.
    return _event(envelope, msgspec.to_builtins(data))


def _event(envelope: Envelope, data: dict[str, Any]) -> OrderEvent:
    return OrderEvent(
        event_id=envelope.event_id,
        type=envelope.type,
        order_id=envelope.order_id,
        occurred_at=envelope.occurred_at,
        vertical=envelope.vertical,
        country=envelope.country,
        city=envelope.city,
        data=data,
    )


def _schema_of(envelope: Envelope, rules: RuleSet, named: str | None) -> type[msgspec.Struct]:
    """The Struct of the event's data: its type's, if ``rules`` declare its vertical and
    the type is built in or declared by it; else InvalidEvent naming the field."""
    vertical = rules.vertical(envelope.vertical)
    if vertical is None:
        declared = ", ".join(sorted(rules.verticals))
        raise InvalidEvent(
            named,
            f"vertical {envelope.vertical!r} is not declared in the rules file "
            f"(rules {rules.version}; declared: {declared}) - at `$.vertical`",
            "vertical",
        )
    if envelope.type in ORDER_EVENT_TYPES:
        return DATA[envelope.type]
    declared_type = vertical.events.get(envelope.type)
    if declared_type is not None:
        return declared_data(declared_type)
    known = ", ".join(sorted(vertical.event_types()))
    raise InvalidEvent(
        named,
        f"event type {envelope.type!r} is neither built in nor declared by vertical "
        f"{vertical.name!r} (known: {known}) - at `$.type`",
        "type",
    )


@functools.cache
def order_event_types() -> dict[str, type[msgspec.Struct]]:
    """A Struct for each incoming order event type (CONTRACT §2), by type: the envelope with
    that ``type`` and its ``data``, as :func:`validate` checks them (for their schemas)."""
    types = {}
    for kind, data in DATA.items():
        # ``data`` may be left out when its type has no required field (it defaults to {}).
        optional = len(data.__struct_defaults__) == len(data.__struct_fields__)
        types[kind] = msgspec.defstruct(
            f"{kind}_event",
            [
                ("event_id", Id),
                ("type", Literal[kind]),
                ("order_id", Id),
                ("occurred_at", Aware),
                ("vertical", Name),
                ("country", Country),
                ("city", City),
                ("data", data, msgspec.field(default_factory=data)) if optional else ("data", data),
            ],
        )
    return types


def order_event_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of each incoming order event type (CONTRACT §2), by type."""
    return {kind: msgspec.json.schema(struct) for kind, struct in order_event_types().items()}
