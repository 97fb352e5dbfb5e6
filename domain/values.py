"""Value types shared by the domain: kinds, severities, statuses, resolutions, actions;
and the bounds every value that enters must keep (text PostgreSQL can store, times in a
sane range, free-form objects of bounded depth), with their checks."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any, Final, Literal

from domain.errors import InvalidValue

# The built-in kinds (domain/rules.py); the rules file may declare more (domain/ruleset.py).
Kind = Literal[
    "venue_acceptance_delayed",
    "venue_rejected",
    "no_courier_assigned",
    "courier_waiting_at_venue",
    "ready_not_picked_up",
    "eta_slipped",
    "delivery_overdue",
    "courier_stationary",
    "courier_reassigned_repeatedly",
    "payment_failed",
    "order_stale",
]
KINDS: Final = frozenset(Kind.__args__)  # type: ignore[attr-defined]

Severity = Literal["low", "medium", "high", "critical"]
SEVERITIES: Final[tuple[Severity, ...]] = ("low", "medium", "high", "critical")
SEVERITY_RANK: Final[dict[str, int]] = {name: rank for rank, name in enumerate(SEVERITIES)}

Status = Literal["open", "acknowledged", "snoozed", "resolved"]
STATUSES: Final = frozenset(Status.__args__)  # type: ignore[attr-defined]

ResolvedBy = Literal["agent", "system"]

Resolution = Literal[
    "fixed", "compensated", "no_action_needed", "false_positive", "duplicate", "other"
]
RESOLUTIONS: Final = frozenset(Resolution.__args__)  # type: ignore[attr-defined]

Action = Literal[
    "contact_customer",
    "contact_venue",
    "contact_courier",
    "compensate",
    "reassign_courier",
    "cancel_order",
    "other",
]
ACTIONS: Final = frozenset(Action.__args__)  # type: ignore[attr-defined]

# Names of verticals, kinds and event types (the rules file declares which there are):
# what a URL, a metric label and a column hold.
NAME_PATTERN: Final = "^[a-z][a-z0-9_]{0,62}$"
MAX_NAME_LENGTH: Final = 63
NAME_REASON: Final = "must be lower-case letters, digits and _, from a letter (at most 63)"
_NAME = re.compile(NAME_PATTERN)

SYSTEM_ACTOR: Final = "system"

# A country is an ISO 3166-1 alpha-2 code: the pattern for the decoders and schemas
# (app/edge.py's Country), the check for everything else.
COUNTRY_PATTERN: Final = "^[A-Z]{2}$"
COUNTRY_REASON: Final = "must be an ISO 3166-1 alpha-2 code, e.g. FI"
_COUNTRY = re.compile(COUNTRY_PATTERN)

# Longest free text a note, reason or resolution note may carry. Together with the
# command batch size this bounds the bytes of one save() (DESIGN.md, "Known traps").
MAX_TEXT_LENGTH: Final = 4000

# The largest integer PostgreSQL's bigint (positions, versions) takes.
INT64_MAX: Final = 2**63 - 1

# Every time that enters (an event's occurred_at, a promise, an ETA, a snooze, a report
# window) lies in [EARLIEST_TIME, LATEST_TIME): a fixed range, not one around the clock, so
# an event that validated once validates again when the detector folds it a week later
# or an operator replays it from dead_letters. Outside it, date arithmetic (a tier's
# minutes added to a time) overflows Python's datetime, and no order lives there.
EARLIEST_TIME: Final = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_TIME: Final = datetime(2100, 1, 1, tzinfo=UTC)

# The most minutes a threshold, a window or an SLA may count (ten years): no order waits
# longer, and added to a time it stays far inside Python's datetime range.
MAX_MINUTES: Final = 10 * 366 * 24 * 60


def check_minutes(field: str, value: float, *, positive: bool = False) -> None:
    """A number of minutes (or a count) a rule is judged with: finite, >= 0 (> 0 when
    ``positive``) and at most ``MAX_MINUTES``; NaN and infinity are refused."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidValue(field, "must be a finite number")
    if value < 0 or (positive and value == 0):
        raise InvalidValue(field, "must be > 0" if positive else "must be >= 0")
    if value > MAX_MINUTES:
        raise InvalidValue(field, f"must be at most {MAX_MINUTES} (ten years of minutes)")


# How deep a free-form JSON object (evidence, action details) may nest.
MAX_OBJECT_DEPTH: Final = 16

# Characters PostgreSQL cannot store: NUL in text and jsonb, and UTF-16 surrogates, which
# have no UTF-8 encoding. The same class as a JSON Schema / msgspec pattern (anchored,
# so a text matches it when it holds none of them).
STORABLE_TEXT_PATTERN: Final = "^[^\\u0000\\ud800-\\udfff]*$"
UNSTORABLE_TEXT_REASON: Final = "must not hold NUL (\\u0000) or unpaired surrogate characters"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def is_storable(text: str) -> bool:
    """Whether PostgreSQL text and jsonb can hold ``text`` as it is."""
    if text.isascii():  # the common case, ten times cheaper than the search
        return "\x00" not in text
    return _UNSTORABLE.search(text) is None


def storable(text: str) -> str:
    """``text`` with each character PostgreSQL cannot store written as ``\\uXXXX``: for
    what must be kept whatever it holds (a rejected event's id and reason)."""
    return _UNSTORABLE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def check_text(field: str, value: str) -> None:
    if not is_storable(value):
        raise InvalidValue(field, UNSTORABLE_TEXT_REASON)


def is_name(text: str) -> bool:
    return _NAME.fullmatch(text) is not None


def check_name(field: str, value: str) -> None:
    if not is_name(value):
        raise InvalidValue(field, NAME_REASON)


def is_country(text: str) -> bool:
    return _COUNTRY.fullmatch(text) is not None


def check_country(field: str, value: str) -> None:
    if not is_country(value):
        raise InvalidValue(field, COUNTRY_REASON)


def check_time(field: str, value: datetime) -> None:
    if value.tzinfo is None:
        raise InvalidValue(field, "must have an offset, e.g. 2026-11-25T12:00:00Z")
    if not EARLIEST_TIME <= value < LATEST_TIME:
        raise InvalidValue(
            field, f"must lie in [{EARLIEST_TIME:%Y-%m-%d}, {LATEST_TIME:%Y-%m-%d}) UTC"
        )


def check_object(field: str, value: Any) -> None:
    """A free-form JSON object (evidence, action details) that every store takes and gives
    back as it was written; refused naming the path of the first fault (``evidence.a[2]``):

    - no text, value or key, holds a character PostgreSQL cannot store (``jsonb`` refuses
      ``\\u0000`` in a read model long after the command was accepted);
    - it nests at most ``MAX_OBJECT_DEPTH`` deep;
    - no object has both ``_type_`` and ``_data_`` keys: the event store's JSON transcoder
      would take it for a custom type and the issue would be unreadable;
    - no number is NaN or infinite (JSON has no such number).
    """
    if not isinstance(value, dict):
        raise InvalidValue(field, "must be a JSON object")
    _check_json(field, value, 0)


def _check_json(path: str, value: Any, depth: int) -> None:
    if isinstance(value, str):
        if not is_storable(value):
            raise InvalidValue(path, UNSTORABLE_TEXT_REASON)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidValue(path, "must be a finite number")
    elif isinstance(value, dict | list):
        if depth >= MAX_OBJECT_DEPTH:
            raise InvalidValue(path, f"nests more than {MAX_OBJECT_DEPTH} deep")
        if isinstance(value, list):
            for index, item in enumerate(value):
                _check_json(f"{path}[{index}]", item, depth + 1)
            return
        if "_type_" in value and "_data_" in value:
            raise InvalidValue(path, "an object with both _type_ and _data_ keys is reserved")
        for key, item in value.items():
            if not isinstance(key, str) or not is_storable(key):
                raise InvalidValue(path, f"its keys {UNSTORABLE_TEXT_REASON}")
            _check_json(f"{path}.{key}", item, depth + 1)
