"""What the read routes share (CONTRACT §5): the inbox's filters as query parameters,
``min_position`` (read-your-writes: answer only once the read model has applied that
position, else 503 with Retry-After), and an issue as the inbox read model holds it."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from datetime import datetime
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    Literal,
    TypeVar,
    get_args,
    get_origin,
    get_type_hints,
)

import asyncpg
import msgspec
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from app.edge import DOCUMENTED_TEXT_PATTERN, MAX_QUERY_TEXT_LENGTH, Name
from app.errors import Unavailable
from app.http import openapi
from app.integration import IssueFields
from app.principal import Principal
from app.queries import FILTER_NAMES, Filters, Positions
from app.scope import Scope
from app.settings import Settings

if TYPE_CHECKING:
    from _typeshed import DataclassInstance
from domain.values import INT64_MAX, MAX_NAME_LENGTH, NAME_PATTERN

# 0 (the default): answer from the read model as it is.
MinPosition = Annotated[
    int,
    openapi.bounded(
        0, INT64_MAX, description="Answer only once the read model has applied this position"
    ),
]


class InboxItem(IssueFields, kw_only=True):
    """An issue as the inbox read model holds it."""

    # The row's JSON as stored, passed through undecoded (a JSON object).
    evidence: msgspec.Raw
    due_at: datetime
    note_count: int
    action_count: int
    position: int


def inbox_item(row: asyncpg.Record) -> InboxItem:
    """A read-model row (its columns are the item's fields) as the item; the evidence
    goes out as stored, not decoded and encoded again."""
    fields = dict(row)
    fields["evidence"] = msgspec.Raw(fields["evidence"].encode())
    return InboxItem(**fields)


async def caught_up(positions: Positions, settings: Settings, name: str, min_position: int) -> None:
    """Return once read model ``name`` has applied ``min_position``; 503 after the
    configured wait."""
    if min_position == 0:  # every read model has reached 0
        return
    if not await positions.wait_for(name, min_position, settings.min_position_wait_seconds):
        raise Unavailable(
            f"the {name} read model has not reached position {min_position} yet; retry"
        )


# A dataclass of filters: fields named as the inbox's (FILTER_NAMES), and a ``scope``.
F = TypeVar("F", bound="DataclassInstance")


def from_query(cls: type[F]) -> Callable[..., F]:
    """A provider of ``cls`` whose parameters are its fields, each a repeatable query
    parameter of the field's name and type: the names and value types are declared once,
    by the fields. Litestar checks each value against its type (one of an enum, or a text
    PostgreSQL can store) and answers 400 naming the parameter. The scope is the caller's
    (the dependency ``caller``)."""
    hints = get_type_hints(cls, include_extras=True)
    parameters = [
        inspect.Parameter(
            "caller", inspect.Parameter.KEYWORD_ONLY, annotation=NamedDependency[Principal]
        )
    ]
    for field in dataclasses.fields(cls):
        if field.name not in FILTER_NAMES:
            continue
        item = get_args(hints[field.name])[0]
        marker: Any
        if get_origin(item) is Literal:
            marker = QueryParameter()  # documented with its values
        elif item == Name:  # a vertical's or a kind's: the rules file says which there are
            marker = openapi.texts(max_length=MAX_NAME_LENGTH, pattern=NAME_PATTERN)
        else:
            marker = openapi.texts(
                max_length=MAX_QUERY_TEXT_LENGTH, pattern=DOCUMENTED_TEXT_PATTERN
            )
        parameters.append(
            inspect.Parameter(
                field.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=field.default,
                annotation=Annotated[hints[field.name], marker],
            )
        )

    make: Callable[..., F] = cls

    def provide(caller: Principal, **values: Any) -> F:
        return make(**values, scope=Scope.of(caller))

    provide.__signature__ = inspect.Signature(parameters, return_annotation=cls)  # type: ignore[attr-defined]
    provide.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": cls}
    return provide


# The dependency ``filters`` of the inbox, counts and feed routes.
filters = from_query(Filters)
