"""What every value that enters is checked against, as types the decoders enforce.

Bodies (msgspec Structs), query and path values (Litestar parameters) and order events
from NATS use these, so a text PostgreSQL cannot store, a time out of range or an integer
past bigint is refused where it arrives, naming the field, and never becomes a row that
fails later (a read model, a dead letter). The bounds themselves live in
``domain/values.py``, which checks them again for every other caller.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

import msgspec

from domain.values import (
    INT64_MAX,
    STORABLE_TEXT_PATTERN,
    UNSTORABLE_TEXT_REASON,
    check_time,
)

# A text that PostgreSQL text and jsonb can store: add length bounds with another Meta,
# e.g. ``Annotated[Text, msgspec.Meta(max_length=200)]``.
Text = Annotated[str, msgspec.Meta(pattern=STORABLE_TEXT_PATTERN)]
# A time with an offset; its range is checked by :func:`check_times` (msgspec has no
# range constraint for datetimes).
Aware = Annotated[datetime, msgspec.Meta(tz=True)]
# A non-negative integer PostgreSQL's bigint takes (a position, a version).
Position = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]

_PATTERN_MESSAGE = f"Expected `str` matching regex {STORABLE_TEXT_PATTERN!r}"
_AT = re.compile(r" - at `\$\.?([^`]*)`$")
_MISSING = re.compile(r"missing required field `([^`]*)`")


def explain(message: str) -> str:
    """A msgspec error message, the storable-text pattern said in words."""
    return message.replace(_PATTERN_MESSAGE, UNSTORABLE_TEXT_REASON)


def field_of(message: str) -> str | None:
    """The field a msgspec error message names (``data.reason``), if any."""
    at = _AT.search(message)
    path = at.group(1) if at else ""
    missing = _MISSING.search(message)
    if missing:
        path = f"{path}.{missing.group(1)}" if path else missing.group(1)
    return path or None


def check_times(struct: msgspec.Struct, prefix: str = "") -> None:
    """Every time field of ``struct`` in the accepted range (``domain.values``); raises
    ``InvalidValue`` naming ``prefix + field``."""
    for name in struct.__struct_fields__:
        value = getattr(struct, name)
        if isinstance(value, datetime):
            check_time(f"{prefix}{name}", value)
