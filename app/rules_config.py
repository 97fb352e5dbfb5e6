"""The rules file (``INBOX_RULES_FILE``, TOML; shipped: ``app/rules.toml``): the verticals,
their event types, the declared rules and every threshold, read and validated as a whole
into one :class:`domain.ruleset.RuleSet`. A mistake is one :class:`RulesError` naming the
file, the table and the key: at start it stops the start, on a reload it keeps the
running rules (``app/rules_source.py``)."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

from domain.errors import InvalidValue
from domain.rules import RULES, Tiers
from domain.ruleset import (
    COURIER_RULES,
    DEFAULT_SLA_MINUTES,
    EventField,
    EventType,
    RuleSet,
    Vertical,
    WaitingRule,
)
from domain.values import is_country

SHIPPED = Path(__file__).with_name("rules.toml")

# The most bytes a rules file may take (the shipped one takes a few KB).
MAX_RULES_BYTES = 1 << 20

_Tiers = list[tuple[float, str]]
T = TypeVar("T")

# The keys of a [vertical.V] table that are settings; every other key is a rule's tiers.
_VERTICAL_SETTINGS = frozenset(
    {
        "delivery",
        "rules",
        "extra_rules",
        "sla_minutes",
        "preparation_minutes",
        "courier_due",
        "events",
        "country",
    }
)


class _Clear(msgspec.Struct, forbid_unknown_fields=True):
    margin: float = 0.0
    for_minutes: float | None = None


class _Detector(msgspec.Struct, forbid_unknown_fields=True):
    clear_for_seconds: float = 60.0
    reassignment_grace_minutes: float = 0.0


class _Waiting(msgspec.Struct, forbid_unknown_fields=True, rename={"start": "from"}):
    start: str
    until: list[str]
    tiers: _Tiers
    evidence: list[str] = msgspec.field(default_factory=list)


class _VerticalSettings(msgspec.Struct, forbid_unknown_fields=True):
    delivery: Literal["marketplace", "own_staff", "pickup"] = "marketplace"
    rules: list[str] | None = None
    extra_rules: list[str] = msgspec.field(default_factory=list)
    sla_minutes: dict[str, float] = msgspec.field(default_factory=dict)
    preparation_minutes: float = 15.0
    courier_due: Literal["ready", "accepted"] = "ready"


class _Table(msgspec.Struct, forbid_unknown_fields=True):
    # Checked key by key (msgspec names no dict key in its errors): see _settings.
    detector: dict[str, Any] = msgspec.field(default_factory=dict)
    sla_minutes: dict[str, Any] = msgspec.field(default_factory=dict)
    clear: dict[str, Any] = msgspec.field(default_factory=dict)
    defaults: dict[str, Any] = msgspec.field(default_factory=dict)
    waiting: dict[str, Any] = msgspec.field(default_factory=dict)
    vertical: dict[str, Any] = msgspec.field(default_factory=dict)
    country: dict[str, Any] = msgspec.field(default_factory=dict)


class RulesError(Exception):
    """The rules file is unreadable or invalid: the message names the file, table, key."""


def version_of(text: str) -> str:
    """The rules version: a content hash of the file (its first 16 hex digits)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _convert(value: Any, kind: type[T], where: str) -> T:
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        raise RulesError(f"{where}: {exc}") from None


def _tiers(kinds: dict[str, Any], where: str) -> dict[str, Tiers]:
    tiers = {}
    for kind, value in kinds.items():
        converted = _convert(value, _Tiers, f"{where}.{kind}")
        tiers[kind] = tuple((float(m), s) for m, s in converted)
    return tiers


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RulesError(f"{where}: must be a table")
    return value


def _fields(declared: Any, where: str) -> tuple[EventField, ...]:
    """``{name = "text", note = "text?"}``: each data field's type, ``?`` when optional."""
    fields = []
    for name, kind in _table(declared, where).items():
        if not isinstance(kind, str):
            raise RulesError(f'{where}.{name}: must be a type name such as "text"')
        optional = kind.endswith("?")
        fields.append(EventField(name, kind.removesuffix("?"), required=not optional))  # type: ignore[arg-type]
    return tuple(fields)


def parse(text: str, source: str = "rules") -> RuleSet:
    """The rule set of a rules file's ``text``, or RulesError naming where it is wrong."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{source}: {exc}") from None
    except RecursionError:
        raise RulesError(f"{source}: nested too deeply") from None
    if "preparation_minutes" in raw:
        raise RulesError(
            f"{source}: preparation_minutes: moved into each vertical: "
            "set [vertical.V] preparation_minutes"
        )
    table = _convert(raw, _Table, source)
    try:
        return _build(table, version_of(text), source)
    except InvalidValue as exc:
        raise RulesError(f"{source}: {exc}") from None


def _build(table: _Table, version: str, source: str) -> RuleSet:
    detector = _convert(table.detector, _Detector, f"{source}: detector")
    sla = {
        **DEFAULT_SLA_MINUTES,
        **_convert(table.sla_minutes, dict[str, float], f"{source}: sla_minutes"),
    }
    clear = {
        kind: _convert(value, _Clear, f"{source}: clear.{kind}")
        for kind, value in table.clear.items()
    }
    waiting = {}
    for kind, value in table.waiting.items():
        rule = _convert(value, _Waiting, f"{source}: waiting.{kind}")
        tiers = _tiers({kind: rule.tiers}, f"{source}: waiting")[kind]
        waiting[kind] = WaitingRule(
            kind, rule.start, tuple(rule.until), tiers, tuple(rule.evidence)
        )
    for country in table.country:
        _check_country(source, f"country.{country}", country)
    verticals: dict[str, Vertical] = {}
    by_vertical: dict[str, dict[str, Tiers]] = {}
    by_vertical_country: dict[tuple[str, str], dict[str, Tiers]] = {}
    for name, value in table.vertical.items():
        where = f"{source}: vertical.{name}"
        body = dict(_table(value, where))
        countries = _table(body.pop("country", {}), f"{where}.country")
        events = _table(body.pop("events", {}), f"{where}.events")
        settings = {k: v for k, v in body.items() if k in _VERTICAL_SETTINGS}
        own_tiers = {k: v for k, v in body.items() if k not in _VERTICAL_SETTINGS}
        spec = _convert(settings, _VerticalSettings, where)
        for kind in own_tiers:
            if kind not in RULES and kind not in waiting:
                raise RulesError(
                    f"{where}.{kind}: neither a setting ({', '.join(sorted(_VERTICAL_SETTINGS))}) "
                    f"nor a rule ({', '.join(sorted(set(RULES) | set(waiting)))})"
                )
        by_vertical[name] = _tiers(own_tiers, where)
        for country, country_kinds in countries.items():
            _check_country(source, f"vertical.{name}.country.{country}", country)
            by_vertical_country[(name, country)] = _tiers(
                _table(country_kinds, f"{where}.country.{country}"), f"{where}.country.{country}"
            )
        if spec.rules is None:
            rules = {k for k in RULES if spec.delivery == "marketplace" or k not in COURIER_RULES}
        else:
            rules = set(spec.rules)
        verticals[name] = Vertical(
            name=name,
            delivery=spec.delivery,
            rules=frozenset(rules | set(spec.extra_rules)),
            sla_minutes={**sla, **spec.sla_minutes},
            events={
                event: EventType(event, _fields(fields, f"{where}.events.{event}"))
                for event, fields in events.items()
            },
            preparation_minutes=spec.preparation_minutes,
            courier_due=spec.courier_due,
        )
    return RuleSet(
        version=version,
        verticals=verticals,
        defaults=_tiers(table.defaults, f"{source}: defaults"),
        by_vertical=by_vertical,
        by_country={
            c: _tiers(_table(k, f"{source}: country.{c}"), f"{source}: country.{c}")
            for c, k in table.country.items()
        },
        by_vertical_country=by_vertical_country,
        waiting=waiting,
        clear_for_seconds=detector.clear_for_seconds,
        reassignment_grace_minutes=detector.reassignment_grace_minutes,
        clear_margins={k: c.margin for k, c in clear.items()},
        clear_for_minutes={k: c.for_minutes for k, c in clear.items() if c.for_minutes is not None},
    )


def _check_country(source: str, where: str, country: str) -> None:
    if not is_country(country):
        raise RulesError(f"{source}: {where}: not an ISO 3166-1 alpha-2 code such as FI")


def read(path: Path | None) -> tuple[str, str]:
    """The text of the rules file at ``path`` (the shipped one when None) and its name."""
    chosen = path or SHIPPED
    try:
        with chosen.open("rb") as file:
            data = file.read(MAX_RULES_BYTES + 1)
    except OSError as exc:
        raise RulesError(f"INBOX_RULES_FILE {chosen}: {exc.strerror}") from None
    if len(data) > MAX_RULES_BYTES:
        raise RulesError(f"{chosen}: over {MAX_RULES_BYTES} bytes")
    try:
        return data.decode(), str(chosen)
    except UnicodeDecodeError as exc:
        raise RulesError(f"{chosen}: not UTF-8 ({exc.reason} at byte {exc.start})") from None


def load(path: Path | None) -> RuleSet:
    """The rule set of ``path``, or the shipped one when None."""
    text, source = read(path)
    return parse(text, source)
