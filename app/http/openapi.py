"""What the OpenAPI document says of errors: the one error body, and the error responses
each kind of route gives, for the ``responses=`` of every route decorator.

``ErrorBody`` mirrors what ``app/http/errors.py`` answers (``_body``); a unit test holds the
two together. Litestar's ``ResponseSpec`` has no headers, so ``document_headers`` adds the
``Retry-After`` of every 503 to the built document once, when the app is created; and
``ClosedStructs`` says of a request Struct that refuses unknown fields that it does.
``bounded`` and ``texts`` declare parameters whose constraints Litestar would document
wrongly or not at all; ``document_body`` the body of a route that reads its body itself;
``document_components`` adds the schemas those refer to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import msgspec
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import (
    Components,
    OpenAPI,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    Reference,
    RequestBody,
    Schema,
)
from litestar.openapi.spec.enums import OpenAPIType
from litestar.params import ParameterKwarg
from litestar.typing import FieldDefinition

from app.edge import DOCUMENTED_TEXT_PATTERN, Checked

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator

__all__ = [
    "ClosedStructs",
    "ErrorBody",
    "FieldError",
    "bounded",
    "command",
    "document_body",
    "document_components",
    "document_headers",
    "ingest",
    "read",
    "session",
    "texts",
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
    401: "No token, or one that does not check (`WWW-Authenticate` says so, RFC 6750)",
    403: "The token's role may not call this route (or, with the session cookie, no CSRF token)",
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
    return _errors(400, 401, 403, 503, *([404] if by_id else []))


def command(*, by_id: bool = True, if_match: bool = True) -> dict[int, ResponseSpec]:
    """A command with a JSON body: the read's answers, and a refused state or concurrent
    writer (409), a stale ``If-Match`` (412, on routes that take it), a body over the size
    limit (413), invalid values (422)."""
    return _errors(
        400, 401, 403, 409, 413, 422, 503, *([404] if by_id else []), *([412] if if_match else [])
    )


def ingest() -> dict[int, ResponseSpec]:
    """Ingesting order events: malformed JSON (400), too large (413), an invalid single event
    or too many events (422), database down (503)."""
    return _errors(400, 401, 403, 413, 422, 503)


def session() -> dict[int, ResponseSpec]:
    """Starting a session: malformed body (400), a token or ticket that does not check or
    a ticket used before (401), too large (413), invalid values (422), the database (which
    remembers used tickets) unavailable (503)."""
    return _errors(400, 401, 413, 422, 503)


def current_session() -> dict[int, ResponseSpec]:
    """Who a browser is: not logged in, or no longer (401)."""
    return _errors(401)


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


def bounded(ge: int, le: int, *, description: str | None = None) -> ParameterKwarg:
    """An integer parameter in ``[ge, le]`` (400 otherwise), its bounds documented exactly:
    Litestar writes integer bounds as floats (2^63 - 1 becomes 2^63, one past what the API
    takes) and leaves a bound of 0 out of an optional parameter's schema."""
    return ParameterKwarg(
        ge=ge, le=le, description=description, schema_extra={"minimum": ge, "maximum": le}
    )


def texts(*, max_length: int, pattern: str) -> ParameterKwarg:
    """A repeatable text parameter whose every value is at most ``max_length`` characters and
    matches ``pattern``, as its item type checks: Litestar documents the item type of a
    sequence parameter without its constraints."""
    item = Schema(type=OpenAPIType.STRING, max_length=max_length, pattern=pattern)
    return ParameterKwarg(schema_extra={"items": item})


def document_body(
    document: OpenAPI,
    path: str,
    schema: dict[str, Any],
    components: dict[str, dict[str, Any]],
    description: str,
) -> None:
    """Declare the JSON body of the POST route at ``path``, which reads its body itself (so
    Litestar has no ``data`` parameter to document): ``schema`` (a JSON Schema, its
    references to ``#/components/schemas/``) and the ``components`` it refers to."""
    operation = (document.paths or {})[path].post
    assert operation is not None, path
    # Litestar writes plain dicts into the document as they are.
    operation.request_body = RequestBody(
        content={"application/json": OpenAPIMediaType(schema=cast(Schema, schema))},
        description=description,
        required=True,
    )
    _add(document, components)


# A free-form JSON object of a request body (evidence, action details): each of its texts,
# keys too, at any depth, one PostgreSQL can store (``domain.values.check_object``).
_STORABLE_JSON = "StorableJson"
_STORABLE_JSON_REF = f"#/components/schemas/{_STORABLE_JSON}"


def document_components(document: OpenAPI) -> None:
    """Add the schemas the documented request bodies refer to (``ClosedStructs``)."""
    text = {"type": "string", "pattern": DOCUMENTED_TEXT_PATTERN}
    value = {"$ref": _STORABLE_JSON_REF}
    storable_json = {
        "description": "A JSON value whose texts and keys PostgreSQL can store",
        "anyOf": [
            text,
            {"type": ["number", "boolean", "null"]},
            {"type": "array", "items": value},
            {"type": "object", "propertyNames": text, "additionalProperties": value},
        ],
    }
    _add(document, {_STORABLE_JSON: storable_json})


def _add(document: OpenAPI, components: dict[str, dict[str, Any]]) -> None:
    document.components = document.components or Components()
    schemas = document.components.schemas = dict(document.components.schemas or {})
    for name, component in components.items():
        assert name not in schemas, f"two schemas named {name}"
        # Litestar writes plain dicts into the document as they are.
        schemas[name] = cast(Schema, component)


def _storable(schema: Schema) -> None:
    """A property of a ``Checked`` Struct, documented with what its check refuses: a text
    with the characters PostgreSQL cannot store, a free-form object holding one."""
    if schema.enum is not None:
        return
    options = [schema, *(s for s in schema.one_of or () if isinstance(s, Schema))]
    if any(option.type == OpenAPIType.STRING for option in options):
        schema.pattern = schema.pattern or DOCUMENTED_TEXT_PATTERN
    elif schema.type == OpenAPIType.OBJECT and not schema.properties:
        schema.property_names = Schema(type=OpenAPIType.STRING, pattern=DOCUMENTED_TEXT_PATTERN)
        schema.additional_properties = Reference(ref=_STORABLE_JSON_REF)


class ClosedStructs(StructSchemaPlugin):
    """A Struct with ``forbid_unknown_fields`` documented with ``additionalProperties:
    false``: the request bodies answer 422 for a field they do not know, and a client (or a
    generator of requests) must not take an unknown field as allowed. A ``Checked`` one's
    texts are documented with the characters they may not hold (422 otherwise)."""

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        return super().is_plugin_supported_field(field_definition) and bool(
            field_definition.type_.__struct_config__.forbid_unknown_fields
        )

    def to_openapi_schema(
        self, field_definition: FieldDefinition, schema_creator: SchemaCreator
    ) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        schema.additional_properties = False
        if issubclass(field_definition.type_, Checked):
            for prop in (schema.properties or {}).values():
                if isinstance(prop, Schema):
                    _storable(prop)
        return schema
