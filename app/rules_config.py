"""The detection thresholds file (``INBOX_RULES_FILE``, TOML; shipped: ``app/rules.toml``),
read and validated at start: a mistake stops the start with one line saying where."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from domain.errors import InvalidValue
from domain.rules import Tiers
from domain.thresholds import Thresholds
from domain.values import VERTICALS, is_country

SHIPPED = Path(__file__).with_name("rules.toml")

_Tiers = list[tuple[float, str]]
T = TypeVar("T")


class _Clear(msgspec.Struct, forbid_unknown_fields=True):
    margin: float = 0.0
    for_minutes: float | None = None


class _Table(msgspec.Struct, forbid_unknown_fields=True):
    # Checked key by key (msgspec names no dict key in its errors): see _settings.
    detector: dict[str, Any] = msgspec.field(default_factory=dict)
    preparation_minutes: dict[str, Any] = msgspec.field(default_factory=dict)
    clear: dict[str, Any] = msgspec.field(default_factory=dict)
    defaults: dict[str, _Tiers] = msgspec.field(default_factory=dict)
    vertical: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    country: dict[str, dict[str, _Tiers]] = msgspec.field(default_factory=dict)


class RulesError(Exception):
    """The rules file is unreadable or invalid."""


def _tiers(kinds: dict[str, Any], where: str) -> dict[str, Tiers]:
    try:
        converted = msgspec.convert(kinds, dict[str, _Tiers])
    except msgspec.ValidationError as exc:
        raise RulesError(f"{where}: {exc}") from None
    return {kind: tuple((float(m), s) for m, s in tiers) for kind, tiers in converted.items()}


def _settings(table: dict[str, Any], kind: type[T], where: str) -> dict[str, T]:
    """Each value of ``table`` as ``kind``, or RulesError naming the table and key."""
    converted = {}
    for key, value in table.items():
        try:
            converted[key] = msgspec.convert(value, kind)
        except msgspec.ValidationError as exc:
            raise RulesError(f"{where}.{key}: {exc}") from None
    return converted


def parse(text: str, source: str = "rules") -> Thresholds:
    try:
        table = msgspec.convert(tomllib.loads(text), _Table)
    except (tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise RulesError(f"{source}: {exc}") from None
    by_vertical: dict[str, dict[str, Tiers]] = {}
    by_vertical_country: dict[tuple[str, str], dict[str, Tiers]] = {}
    for country in table.country:
        _check_country(source, f"country.{country}", country)
    for vertical, kinds in table.vertical.items():
        if vertical not in VERTICALS:
            raise RulesError(
                f"{source}: vertical.{vertical}: unknown vertical; known: "
                f"{', '.join(sorted(VERTICALS))}"
            )
        countries = kinds.pop("country", {})
        if not isinstance(countries, dict):
            raise RulesError(f"{source}: vertical.{vertical}.country: must be a table")
        for country in countries:
            _check_country(source, f"vertical.{vertical}.country.{country}", country)
        by_vertical[vertical] = _tiers(kinds, f"{source}: vertical.{vertical}")
        for country, country_kinds in countries.items():
            by_vertical_country[(vertical, country)] = _tiers(
                country_kinds, f"{source}: vertical.{vertical}.country.{country}"
            )
    unknown = set(table.detector) - {"clear_for_seconds", "reassignment_grace_minutes"}
    if unknown:
        raise RulesError(f"{source}: detector: unknown setting(s) {', '.join(sorted(unknown))}")
    detector = _settings(table.detector, float, f"{source}: detector")
    preparation = _settings(table.preparation_minutes, float, f"{source}: preparation_minutes")
    clear = _settings(table.clear, _Clear, f"{source}: clear")
    try:
        return Thresholds(
            defaults=_tiers(table.defaults, f"{source}: defaults"),
            by_vertical=by_vertical,
            by_country={c: _tiers(k, f"{source}: country.{c}") for c, k in table.country.items()},
            by_vertical_country=by_vertical_country,
            clear_for_seconds=detector.get("clear_for_seconds", 60.0),
            reassignment_grace_minutes=detector.get("reassignment_grace_minutes", 0.0),
            preparation_minutes=preparation,
            clear_margins={k: c.margin for k, c in clear.items()},
            clear_for_minutes={
                k: c.for_minutes for k, c in clear.items() if c.for_minutes is not None
            },
        )
    except InvalidValue as exc:
        raise RulesError(f"{source}: {exc}") from None


def _check_country(source: str, where: str, country: str) -> None:
    if not is_country(country):
        raise RulesError(f"{source}: {where}: not an ISO 3166-1 alpha-2 code such as FI")


def load(path: Path | None) -> Thresholds:
    """The thresholds of ``path``, or the shipped ones when None."""
    chosen = path or SHIPPED
    try:
        text = chosen.read_text()
    except OSError as exc:
        raise RulesError(f"INBOX_RULES_FILE {chosen}: {exc.strerror}") from None
    return parse(text, str(chosen))
