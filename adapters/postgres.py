"""PostgreSQL: connection parameters, asyncpg pools, the migrations runner, and the one
exception for "the database is unavailable" (:class:`DatabaseUnavailable`)."""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
from psycopg.conninfo import conninfo_to_dict

log = logging.getLogger(__name__)

# pg_advisory_lock key held while migrations run, so replicas starting at once take turns.
_MIGRATIONS_LOCK_KEY = 0x1B0C_0001


class DatabaseUnavailable(Exception):
    """The database did not answer, or refused for a reason that passes (the connection
    lost, too many connections, a deadlock rolled back): not done, or its outcome
    unknown; trying again later may succeed. The adapters raise it in place of their
    drivers' errors (asyncpg here, psycopg through the event store library in
    ``adapters/eventstore.py``), so that nothing above them knows the drivers."""


class MigrationError(Exception):
    """A migration file failed, or an applied one was edited afterwards."""


def connection_params(url: str) -> dict[str, Any]:
    """Split a libpq URL (TCP or ``?host=/socket/dir``) into its parts."""
    return conninfo_to_dict(url)


def with_database(url: str, dbname: str) -> str:
    """The same server (TCP or Unix socket), another database, still a URL."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(dbname)))


async def connect(
    url: str, *, name: str = "inbox", command_timeout: float | None = None
) -> asyncpg.Connection:
    """One connection; ``name`` shows as application_name in pg_stat_activity."""
    return await asyncpg.connect(
        **_asyncpg_kwargs(url),
        server_settings={"application_name": name},
        command_timeout=command_timeout,
        timeout=30,
    )


async def _no_reset(_conn: asyncpg.Connection) -> None:
    """Pool connections keep no session state here (no LISTEN, no session locks, no SET):
    skipping asyncpg's reset query saves a round trip on every release (7% of the read
    API's time under load)."""


async def create_pool(url: str, *, max_size: int, min_size: int = 1) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        **_asyncpg_kwargs(url),
        min_size=min(min_size, max_size),
        max_size=max_size,
        reset=_no_reset,
    )
    assert pool is not None
    return pool


def _asyncpg_kwargs(url: str) -> dict[str, Any]:
    params = connection_params(url)
    return {
        "host": params.get("host"),
        "port": int(params["port"]) if params.get("port") else None,
        "user": params.get("user"),
        "password": params.get("password") or None,
        "database": params.get("dbname"),
    }


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def read_migrations(directory: Path) -> list[Migration]:
    files = sorted(directory.glob("[0-9][0-9][0-9][0-9]_*.sql"))
    if not files:
        raise MigrationError(f"no migrations found in {directory}")
    return [Migration(path.name, path.read_text()) for path in files]


async def apply_migrations(url: str, directory: Path) -> Sequence[str]:
    """Apply pending migrations in name order, each once, each in its own transaction.

    A session advisory lock makes replicas that start at once wait for each other; the
    checksum of every applied file is kept, and an edited one stops the run.
    """
    migrations = read_migrations(directory)
    conn = await connect(url)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATIONS_LOCK_KEY)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            applied = {
                row["name"]: row["checksum"]
                for row in await conn.fetch("SELECT name, checksum FROM schema_migrations")
            }
            done: list[str] = []
            for migration in migrations:
                if migration.name in applied:
                    if applied[migration.name] != migration.checksum:
                        raise MigrationError(
                            f"{migration.name} was changed after it was applied; "
                            "add a new migration instead"
                        )
                    continue
                try:
                    async with conn.transaction():
                        await conn.execute(migration.sql)
                        await conn.execute(
                            "INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)",
                            migration.name,
                            migration.checksum,
                        )
                except asyncpg.PostgresError as exc:
                    raise MigrationError(f"{migration.name} failed: {exc}") from exc
                log.info("applied migration %s", migration.name)
                done.append(migration.name)
            return done
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATIONS_LOCK_KEY)
    finally:
        await conn.close()


# What a lost or refused database connection raises: worth reconnecting for, unlike a
# programming error (an unknown table, a bad query), which should stop the process.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    # Routine on a busy or failing-over server: too many connections, a cancelled query,
    # a primary that became a read-only replica.
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.QueryCanceledError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    # asyncpg raises this when the server ends a session while a query is in flight
    # ("cannot switch to state ...; another operation is in progress"), seen here with
    # pg_terminate_backend; the connection is useless afterwards, like the others.
    asyncpg.exceptions.InternalClientError,
)

# The asyncpg errors an adapter answers with DatabaseUnavailable: the connection errors,
# and a transaction the server rolled back (a deadlock, a serialization failure).
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    *CONNECTION_ERRORS,
    asyncpg.TransactionRollbackError,
)

_P = ParamSpec("_P")
_R = TypeVar("_R")
_C = TypeVar("_C", bound=type)


def raises_unavailable(cls: _C) -> _C:
    """Class decorator: each public coroutine method of ``cls``, and each public method
    made with ``@asynccontextmanager`` (a transaction block: its entry, its commit), raises
    :class:`DatabaseUnavailable` where asyncpg raised one of :data:`UNAVAILABLE_ERRORS`."""
    for name, attribute in list(vars(cls).items()):
        if name.startswith("_"):
            continue
        if inspect.iscoroutinefunction(attribute):
            setattr(cls, name, _unavailable(attribute))
        elif inspect.isasyncgenfunction(getattr(attribute, "__wrapped__", None)):
            setattr(cls, name, _unavailable_block(attribute))
    return cls


def _unavailable(method: Callable[_P, Awaitable[_R]]) -> Callable[_P, Awaitable[_R]]:
    @functools.wraps(method)
    async def translated(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return await method(*args, **kwargs)
        except UNAVAILABLE_ERRORS as exc:
            raise DatabaseUnavailable(str(exc) or type(exc).__name__) from exc

    return translated


def _unavailable_block(
    factory: Callable[_P, AbstractAsyncContextManager[_R]],
) -> Callable[_P, AbstractAsyncContextManager[_R]]:
    # The block's body is covered too: a connection error raised there (OSError and
    # TimeoutError included) means the transaction is lost. So keep other I/O (NATS, an
    # asyncio timeout of your own) out of such a block, or it reads as "database down".
    @asynccontextmanager
    async def translated(*args: _P.args, **kwargs: _P.kwargs) -> AsyncIterator[_R]:
        try:
            async with factory(*args, **kwargs) as value:
                yield value
        except UNAVAILABLE_ERRORS as exc:
            raise DatabaseUnavailable(str(exc) or type(exc).__name__) from exc

    return functools.wraps(factory)(translated)
