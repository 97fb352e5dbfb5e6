"""What every value that enters is checked against, once, where it is decoded.

Every msgspec Struct that takes input (HTTP bodies, order events from NATS or HTTP)
derives from :class:`Checked`: as it is decoded, each of its text fields is checked to be
one PostgreSQL can store and each time to lie in the accepted range, and a bad one raises
``InvalidValue`` naming the field (422 over HTTP, a dead letter on NATS). Query and path
texts carry :data:`STORABLE_TEXT_PATTERN` as a Litestar parameter constraint (400).
Integers that reach PostgreSQL are bounded by ``domain.values.INT64_MAX``. Free-form
objects are walked by ``domain.values.check_object``. So nothing PostgreSQL refuses
becomes a row that fails later (a read model, a dead letter); the bounds live in
``domain/values.py``, which checks them again for every other caller.

One check per Struct rather than a msgspec ``pattern`` per text field: a pattern costs
about 1.7 µs a field (Python's ``re`` per string), ten µs an order event on a path that
has ~130 µs for everything; the check below costs about 1.5 µs an event.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime
from typing import Annotated, ClassVar

import msgspec
import msgspec.inspect

from domain.errors import InvalidValue
from domain.values import (
    COUNTRY_PATTERN,
    EARLIEST_TIME,
    LATEST_TIME,
    NAME_PATTERN,
    STORABLE_TEXT_PATTERN,
    UNSTORABLE_TEXT_REASON,
    check_time,
    is_storable,
)

# The range of times, [EARLIEST_TIME, LATEST_TIME), as a pattern of the JSON Schemas (a
# date-time format cannot say a range): RFC 3339 times of the years 2000 to 2099.
TIME_PATTERN = "^20[0-9]{2}-"
assert (EARLIEST_TIME.year, LATEST_TIME.year) == (2000, 2100), "update TIME_PATTERN"
# A time with an offset; a Checked Struct checks its range.
Aware = Annotated[datetime, msgspec.Meta(tz=True, extra_json_schema={"pattern": TIME_PATTERN})]
# An ISO 3166-1 alpha-2 code, as every decoder and schema takes it (domain.values checks
# it for other callers).
Country = Annotated[str, msgspec.Meta(pattern=COUNTRY_PATTERN)]
# A vertical's, a kind's or an event type's name (which ones there are, the rules file
# says: the application checks that).
Name = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)]
# The longest value of a repeatable filter (a city, an order id: ids are at most 200 too).
MAX_QUERY_TEXT_LENGTH = 200
# What a text may hold, as the documents say it: STORABLE_TEXT_PATTERN less its surrogates,
# which no URL can carry (they have no UTF-8 encoding), which a JSON text can carry only as
# an escape of half a character, and which other languages' regular expressions (a JSON
# Schema validator's) cannot name.
DOCUMENTED_TEXT_PATTERN = "^[^\\u0000]*$"
# A query value PostgreSQL can store (each item of a repeatable filter).
QueryText = Annotated[
    str, msgspec.Meta(max_length=MAX_QUERY_TEXT_LENGTH, pattern=STORABLE_TEXT_PATTERN)
]


def _is(kind: msgspec.inspect.Type, wanted: type[msgspec.inspect.Type]) -> bool:
    if isinstance(kind, msgspec.inspect.Metadata):
        return _is(kind.type, wanted)
    if isinstance(kind, msgspec.inspect.UnionType):
        return any(_is(option, wanted) for option in kind.types)
    return isinstance(kind, wanted)


@functools.cache
def _checked_fields(cls: type[msgspec.Struct]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The names of ``cls``'s text fields and of its time fields."""
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    texts = tuple(f.name for f in info.fields if _is(f.type, msgspec.inspect.StrType))
    times = tuple(f.name for f in info.fields if _is(f.type, msgspec.inspect.DateTimeType))
    return texts, times


class Checked(msgspec.Struct):
    """Base of the Structs that take input: decoding one checks that its texts can be
    stored and its times are in range, raising ``InvalidValue`` (which msgspec passes
    through as it is) naming the field. ``field_prefix`` names where it sits (``data.``)."""

    field_prefix: ClassVar[str] = ""

    def __post_init__(self) -> None:
        texts, times = _checked_fields(type(self))
        for name in texts:
            value = getattr(self, name)
            if value is not None and not is_storable(value):
                raise InvalidValue(f"{self.field_prefix}{name}", UNSTORABLE_TEXT_REASON)
        for name in times:
            value = getattr(self, name)
            if value is not None:
                check_time(f"{self.field_prefix}{name}", value)


_PATTERN_MESSAGE = f"Expected `str` matching regex {STORABLE_TEXT_PATTERN!r}"
_AT = re.compile(r" - at `\$\.?([^`]*)`$")
_MISSING = re.compile(r"(?:missing required|contains unknown) field `([^`]*)`")


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
