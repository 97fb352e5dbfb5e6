""" "The database is unavailable" is one exception: the adapters turn their drivers'
errors into ``DatabaseUnavailable`` and leave every other error as it is."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest
from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError

from adapters import eventstore
from adapters.postgres import DatabaseUnavailable, raises_unavailable


@raises_unavailable
class Reads:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def read(self) -> int:
        raise self.error

    async def _private(self) -> int:
        raise self.error

    def not_a_coroutine(self) -> int:
        raise self.error

    @asynccontextmanager
    async def transaction(self, *, fail_on_enter: bool) -> AsyncIterator[int]:
        if fail_on_enter:
            raise self.error
        yield 1
        raise self.error  # as a failed COMMIT would, on leaving the block


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(),
        TimeoutError(),
        asyncpg.exceptions.ConnectionDoesNotExistError("gone"),
        asyncpg.exceptions.TooManyConnectionsError("busy"),
        asyncpg.exceptions.DeadlockDetectedError("deadlock"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_a_lost_or_refused_connection_is_database_unavailable(error: Exception) -> None:
    with pytest.raises(DatabaseUnavailable) as raised:
        await Reads(error).read()
    assert raised.value.__cause__ is error


async def test_a_transaction_block_that_loses_its_connection_is_database_unavailable() -> None:
    error = asyncpg.exceptions.ConnectionDoesNotExistError("gone")
    for fail_on_enter in (True, False):
        with pytest.raises(DatabaseUnavailable) as raised:
            async with Reads(error).transaction(fail_on_enter=fail_on_enter) as value:
                assert value == 1
        assert raised.value.__cause__ is error


async def test_other_errors_and_private_methods_are_left_alone() -> None:
    with pytest.raises(asyncpg.exceptions.UndefinedTableError):
        await Reads(asyncpg.exceptions.UndefinedTableError("no table")).read()
    with pytest.raises(ConnectionRefusedError):
        await Reads(ConnectionRefusedError())._private()
    with pytest.raises(ConnectionRefusedError):
        Reads(ConnectionRefusedError()).not_a_coroutine()


@pytest.mark.parametrize("error", [OperationalError("down"), InterfaceError("closed")])
def test_the_event_store_libraries_errors_are_database_unavailable(error: Exception) -> None:
    @eventstore._unavailable
    def save() -> None:
        raise error

    with pytest.raises(DatabaseUnavailable):
        save()


def test_a_conflict_is_not_unavailability() -> None:
    @eventstore._unavailable
    def save() -> None:
        raise IntegrityError("duplicate key")

    with pytest.raises(IntegrityError):
        save()
