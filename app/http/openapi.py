"""What the OpenAPI document says of errors: the one error body, and the error responses
each kind of route gives, for the ``responses=`` of every route decorator.

``ErrorBody`` mirrors what ``app/http/errors.py`` answers (``_body``); a unit test holds the
two together. Litestar's ``ResponseSpec`` has no headers, so ``document_headers`` adds the
``Retry-After`` of every 503 to the built document once, when the app is created; and
``ClosedStructs`` says of a request Struct that refuses unknown fields that it does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPI, OpenAPIHeader, OpenAPIResponse, Schema
from litestar.openapi.spec.enums import OpenAPIType
from litestar.typing import FieldDefinition

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator

__all__ = [
    "ClosedStructs",
    "ErrorBody",
    "FieldError",
    "command",
    "document_headers",
    "ingest",
    "read",
]


class FieldError(msgspec.Struct):
    """One reason the request's parameters or body were refused."""

    message: str
    # The parameter, header or body field (dotted), where the reason has one.
    key: str | msgspec.UnsetType = msgspec.UNSET
    source: str | msgspec.UnsetType = msgspec.UNSET  # body | query | path | header | cookie


class ErrorBody(msgspec.Struct):
    """Every 4xx and 5xx answer of the API (CONTRACT §5)."""

    status_code: int
    detail: str
    # 400/422: the parameter, header or body field at fault (null when none is named).
    field: str | msgspec.UnsetType | None = msgspec.UNSET
    # 400/422 from validation: every reason, one per field.
    errors: list[FieldError] | msgspec.UnsetType = msgspec.UNSET
    # 409 on a transition: the current status.
    status: str | msgspec.UnsetType = msgspec.UNSET
    # 412: the version now, to read again and retry with.
    current_version: int | msgspec.UnsetType = msgspec.UNSET


_DESCRIPTIONS = {
    400: "Malformed request: a parameter, header or body that cannot be read (`field` names it)",
    404: "Unknown: no issue (or order, or version) by this id",
    409: "Not allowed from the issue's current state (`status`), or a concurrent writer won",
    412: "`If-Match` names another version than the issue's (`current_version`)",
    413: "The request body is larger than the server accepts",
    422: "Valid JSON whose values are invalid (`field` names it)",
    503: (
        "The database is unavailable, or the read model did not reach `min_position` in time;"
        " retry after `Retry-After` seconds"
    ),
}

RETRY_AFTER = OpenAPIHeader(
    schema=Schema(type=OpenAPIType.INTEGER, minimum=0),
    description="Seconds to wait before retrying",
    required=True,
)


def _errors(*codes: int) -> dict[int, ResponseSpec]:
    return {
        code: ResponseSpec(
            data_container=ErrorBody, description=_DESCRIPTIONS[code], generate_examples=False
        )
        for code in sorted(codes)
    }


def read(*, by_id: bool = False) -> dict[int, ResponseSpec]:
    """A read: bad parameters (400), unknown id (404, on a route with an id), database down
    or ``min_position`` not reached (503)."""
    return _errors(400, 503, *([404] if by_id else []))


def command(*, by_id: bool = True, if_match: bool = True) -> dict[int, ResponseSpec]:
    """A command with a JSON body: the read's answers, and a refused state or concurrent
    writer (409), a stale ``If-Match`` (412, on routes that take it), a body over the size
    limit (413), invalid values (422)."""
    return _errors(400, 409, 413, 422, 503, *([404] if by_id else []), *([412] if if_match else []))


def ingest() -> dict[int, ResponseSpec]:
    """Ingesting order events: malformed JSON (400), too large (413), an invalid single event
    or too many events (422), database down (503)."""
    return _errors(400, 413, 422, 503)


def document_headers(document: OpenAPI) -> None:
    """Add the ``Retry-After`` header to every 503 declared here (``errors.py`` sends it with
    each)."""
    for item in (document.paths or {}).values():
        for method in ("get", "put", "post", "delete", "patch"):
            operation = getattr(item, method)
            if operation is None or not operation.responses:
                continue
            response: Any = operation.responses.get("503")
            # Ours, not another 503 (``/ready`` answers its report, with no Retry-After).
            if isinstance(response, OpenAPIResponse) and response.description == _DESCRIPTIONS[503]:
                response.headers = {**(response.headers or {}), "Retry-After": RETRY_AFTER}


class ClosedStructs(StructSchemaPlugin):
    """A Struct with ``forbid_unknown_fields`` documented with ``additionalProperties:
    false``: the request bodies answer 422 for a field they do not know, and a client (or a
    generator of requests) must not take an unknown field as allowed."""

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        return super().is_plugin_supported_field(field_definition) and bool(
            field_definition.type_.__struct_config__.forbid_unknown_fields
        )

    def to_openapi_schema(
        self, field_definition: FieldDefinition, schema_creator: SchemaCreator
    ) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        schema.additional_properties = False
        return schema
