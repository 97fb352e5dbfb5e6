"""The documented error body (app/http/openapi.py) is what the error mapper answers."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest
from litestar import Request
from litestar.exceptions import ClientException, NotFoundException, ValidationException
from litestar.testing import RequestFactory

from adapters.postgres import DatabaseUnavailable
from app.errors import (
    ConcurrentWrite,
    IssueAlreadyExists,
    IssueNotFound,
    Unavailable,
    VersionMismatch,
)
from app.http.errors import BadRequest, NotFound, Unprocessable, exception_to_response
from app.http.openapi import ErrorBody
from app.queries import InvalidQuery
from domain.errors import InvalidValue, TransitionNotAllowed

ISSUE = uuid.uuid4()


class StrictErrorBody(ErrorBody, forbid_unknown_fields=True):
    """The documented body, refusing any key it does not declare."""


def _request() -> Request[Any, Any, Any]:
    return RequestFactory().post("/x")


CASES = [
    (ValidationException("bad", extra=[{"message": "x", "key": "limit", "source": "query"}]), 400),
    (ValidationException("bad", extra=[{"message": "x", "key": "text", "source": "body"}]), 422),
    (ValidationException("bad", extra=[{"message": "missing"}]), 400),
    (RecursionError(), 400),
    (InvalidQuery("cursor", "not a cursor"), 400),
    (BadRequest("If-Match", "not a version"), 400),
    (Unprocessable("details", "too large"), 422),
    (InvalidValue("until", "in the past"), 422),
    (TransitionNotAllowed(ISSUE, "wake", "open", "not snoozed"), 409),
    (IssueNotFound(ISSUE), 404),
    (NotFound("order x not found"), 404),
    (NotFoundException(), 404),
    (VersionMismatch(ISSUE, 2, 3), 412),
    (ConcurrentWrite(ISSUE), 409),
    (IssueAlreadyExists(ISSUE), 409),
    (ClientException(status_code=413, detail="Request Entity Too Large"), 413),
    (Unavailable("not in time"), 503),
    (DatabaseUnavailable("connection refused"), 503),
]


@pytest.mark.parametrize(("exc", "status"), CASES, ids=lambda v: type(v).__name__)
def test_every_error_answer_is_the_documented_body(exc: Exception, status: int) -> None:
    response = exception_to_response(_request(), exc)

    assert response.status_code == status
    body = msgspec.convert(response.content, StrictErrorBody)
    assert body.status_code == status
    if status == 503:
        assert response.headers["Retry-After"].isdigit()
