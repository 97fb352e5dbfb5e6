"""The domain's exception tree.

DomainError
├── TransitionNotAllowed   the command is not allowed from the issue's current state
└── InvalidValue           a value is wrong in itself (names the field and the reason)
"""

from __future__ import annotations

from uuid import UUID


class DomainError(Exception):
    """Base of every error the domain raises."""


class TransitionNotAllowed(DomainError):
    """A command that the issue's state machine refuses."""

    def __init__(self, issue_id: UUID, command: str, status: str, reason: str) -> None:
        self.issue_id = issue_id
        self.command = command
        self.status = status
        self.reason = reason
        super().__init__(f"cannot {command} issue {issue_id} (status {status}): {reason}")


class InvalidValue(DomainError):
    """A value that no state could accept."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")
