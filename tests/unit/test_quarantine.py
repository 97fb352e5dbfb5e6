"""Which errors skip an event and which retry its batch (projections/quarantine.py; the
classification is adapters/eventlog.py's)."""

from __future__ import annotations

import asyncpg
import pytest
from eventsourcing.utils import TopicError

from adapters.eventlog import about_the_event
from projections.follower import ProjectionError
from projections.quarantine import describe


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence: 0x00"),
        asyncpg.exceptions.UntranslatableCharacterError("unsupported Unicode escape"),
        asyncpg.exceptions.NumericValueOutOfRangeError("out of range"),
        asyncpg.exceptions.NotNullViolationError("null value"),
        asyncpg.exceptions.DataError("invalid input for query argument $1"),
        ProjectionError("note_added before detected"),
        TopicError("Failed to resolve topic"),
        KeyError("evidence"),
        UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
    ],
)
def test_errors_about_the_event_skip_it(error: Exception) -> None:
    assert about_the_event(error)


@pytest.mark.parametrize(
    "error",
    [
        ConnectionResetError(),
        TimeoutError(),
        asyncpg.exceptions.ConnectionDoesNotExistError("closed"),
        asyncpg.exceptions.UndefinedTableError("relation does not exist"),
        asyncpg.exceptions.DeadlockDetectedError("deadlock"),
        asyncpg.exceptions.LockNotAvailableError("lock timeout"),
        asyncpg.exceptions.QueryCanceledError("statement timeout"),
        asyncpg.exceptions.DiskFullError("no space"),
        MemoryError(),
    ],
)
def test_errors_about_the_database_retry_the_batch(error: Exception) -> None:
    assert not about_the_event(error)


def test_a_described_error_is_text_postgresql_takes() -> None:
    text = describe(ValueError("a \x00 and a \ud800"))
    assert "\x00" not in text
    text.encode("utf-8")  # no lone surrogate left
    assert text.startswith("ValueError: a \\x00 and a ")
