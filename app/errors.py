"""The application layer's errors (mapped to HTTP in ``app/http/errors.py``).

Exception tree::

    ApplicationError
    ├── IssueNotFound        no issue with that id
    ├── IssueAlreadyExists   detect on an (order, kind) that already has an issue
    ├── VersionMismatch      If-Match named another version than the current one
    ├── ConcurrentWrite      another writer saved the issue between our read and our write
    ├── KeyReused            an idempotency key already used for a different request
    ├── AnsweredBefore       an idempotency key whose first request was refused: that answer
    └── Unavailable          the database did not answer in time: outcome unknown
        └── NotApplied       never carried out (queue full, timed out waiting, shutdown)

The domain's refusals (``domain/errors.py``: an invalid value, a transition not allowed)
and the adapters' ``DatabaseUnavailable`` (``adapters/postgres.py``: the database gone,
whatever the driver) are trees of their own.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID


class ApplicationError(Exception):
    """Base of the application layer's errors."""


class IssueNotFound(ApplicationError):
    def __init__(self, issue_id: UUID) -> None:
        self.issue_id = issue_id
        super().__init__(f"issue {issue_id} not found")


class IssueAlreadyExists(ApplicationError):
    def __init__(self, issue_id: UUID) -> None:
        self.issue_id = issue_id
        super().__init__(f"issue {issue_id} already exists for this order and kind")


class VersionMismatch(ApplicationError):
    def __init__(self, issue_id: UUID, expected: int, actual: int) -> None:
        self.issue_id = issue_id
        self.expected = expected
        self.actual = actual
        super().__init__(f"issue {issue_id} is at version {actual}, not {expected}")


class ConcurrentWrite(ApplicationError):
    def __init__(self, issue_id: UUID) -> None:
        self.issue_id = issue_id
        super().__init__(f"issue {issue_id} was changed by another writer; read it and retry")


class KeyReused(ApplicationError):
    def __init__(self) -> None:
        super().__init__(
            "this Idempotency-Key was already used for a different request; use a new key"
        )


class AnsweredBefore(ApplicationError):
    """The first request with this idempotency key was refused: the same answer again."""

    def __init__(self, status_code: int, body: dict[str, Any]) -> None:
        self.status_code = status_code
        self.body = body
        super().__init__(str(body.get("detail", "refused")))


class Unavailable(ApplicationError):
    """No answer in time: the command may or may not have been carried out."""


class NotApplied(Unavailable):
    """The command was not carried out; trying again is safe."""
