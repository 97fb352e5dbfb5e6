"""The one mapping from exceptions to HTTP responses (CONTRACT §5).

Every error body is ``{"status_code": N, "detail": "...", ...}``; a 4xx names the field and
the reason where there is one; a 5xx is logged with its context and says nothing inside.
A client that went away before its body arrived is one line in the log, not an error.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, InternalServerException, ValidationException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge

from adapters.postgres import DatabaseUnavailable
from app.edge import explain
from app.errors import (
    AnsweredBefore,
    ConcurrentWrite,
    IssueAlreadyExists,
    IssueNotFound,
    KeyReused,
    Unavailable,
    VersionMismatch,
)
from app.http.headers import SECURITY
from app.queries import InvalidQuery
from app.rules_config import RulesError
from domain.errors import InvalidValue, TransitionNotAllowed

log = logging.getLogger(__name__)

# What Litestar raises (an InternalServerException) when the client disconnects while it
# reads the body; it has no exception type of its own.
_DISCONNECTED = "client disconnected prematurely"


class BadRequest(Exception):
    """Malformed input the HTTP layer itself finds (a header, a cursor)."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class Unprocessable(Exception):
    """Well-formed input with a value no state could accept."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class NotFound(Exception):
    pass


class Unauthenticated(Exception):
    """No token, or one that does not check (401). The message is all a client learns."""

    def __init__(self, detail: str, *, missing: bool = False) -> None:
        self.detail = detail
        # RFC 6750 §3.1: a request without credentials gets the challenge but no error code.
        self.challenge = 'Bearer realm="inbox"' + ("" if missing else ', error="invalid_token"')
        super().__init__(detail)


def _body(
    status_code: int, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> Response[dict[str, Any]]:
    headers = {**SECURITY, **(headers or {})}
    if status_code == 503:
        headers["Retry-After"] = "1"
    return Response(
        {"status_code": status_code, "detail": detail, **extra},
        status_code=status_code,
        media_type=MediaType.JSON,
        headers=headers,
    )


def _validation(exc: ValidationException) -> Response[dict[str, Any]]:
    errors = exc.extra if isinstance(exc.extra, list) else []
    for error in errors:
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            error["message"] = explain(error["message"])
    # Valid JSON whose values are wrong is 422; a malformed body, query or header is 400.
    in_body = any(isinstance(e, dict) and e.get("source") == "body" for e in errors)
    status = 422 if in_body else 400
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    field = first.get("key")
    detail = f"{field}: {first.get('message')}" if field else str(exc.detail)
    return _body(status, detail, field=field, errors=errors)


def refusal(exc: Exception) -> tuple[int, dict[str, Any]] | None:
    """The status and body a command refused by the domain or the application is
    answered with (the same answer is kept for repeats of its Idempotency-Key); None for
    any other exception."""
    match exc:
        case InvalidValue():
            return 422, {"detail": str(exc), "field": exc.field}
        case TransitionNotAllowed():
            return 409, {"detail": str(exc), "status": exc.status}
        case IssueNotFound():
            return 404, {"detail": str(exc)}
        case VersionMismatch():
            return 412, {"detail": str(exc), "current_version": exc.actual}
        case IssueAlreadyExists():
            return 409, {"detail": str(exc)}
    return None


def exception_to_response(  # noqa: PLR0911, PLR0912 (one case per error kind)
    request: Request[Any, Any, Any], exc: Exception
) -> Response[Any]:
    match exc:
        case ValidationException():
            return _validation(exc)
        case RecursionError():
            # msgspec gives up on absurdly deep JSON with a RecursionError.
            return _body(400, "body: the JSON is nested too deeply", field="body")
        case RequestEntityTooLarge():
            limit = request.route_handler.resolve_request_max_body_size()
            return _body(413, f"body: must be at most {limit} bytes", field="body")
        case InternalServerException() if exc.detail == _DISCONNECTED:
            log.info(
                "client disconnected before its body arrived: %s %s",
                request.method,
                request.url.path,
            )
            return _body(400, "the client disconnected before its body arrived")
        case InvalidQuery():
            return _body(400, str(exc), field=exc.field)
        case BadRequest() | Unprocessable():
            status = 400 if isinstance(exc, BadRequest) else 422
            return _body(status, str(exc), field=exc.field)
        case (
            InvalidValue()
            | TransitionNotAllowed()
            | IssueNotFound()
            | VersionMismatch()
            | IssueAlreadyExists()
        ):
            status, body = refusal(exc) or (500, {"detail": "Internal Server Error"})
            return _body(status, **body)
        case NotFound():
            return _body(404, str(exc))
        case Unauthenticated():
            return _body(401, exc.detail, headers={"WWW-Authenticate": exc.challenge})
        case ConcurrentWrite():
            return _body(409, str(exc))
        case AnsweredBefore():
            return _body(exc.status_code, **exc.body)
        case RulesError():
            # A reload of an invalid rules file: the running rules stay (app/rules_source.py).
            return _body(422, str(exc), field="INBOX_RULES_FILE")
        case KeyReused():
            return _body(422, str(exc), field="Idempotency-Key")
        case Unavailable():
            return _body(503, str(exc))
        case DatabaseUnavailable():
            # The database gone, or a transaction it rolled back (a deadlock): try again.
            log.warning("database unavailable in %s %s: %s", request.method, request.url.path, exc)
            return _body(503, "the database is unavailable; try again")
        case HTTPException() if exc.status_code < 500:
            # With the headers Litestar gives it: a 405's ``Allow`` (RFC 9110 §15.5.6).
            return _body(exc.status_code, str(exc.detail), headers=exc.headers)
        case _:
            log.error(
                "unhandled error in %s %s",
                request.method,
                request.url.path,
                exc_info=exc,
            )
            return _body(500, "Internal Server Error")
