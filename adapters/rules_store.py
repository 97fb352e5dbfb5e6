"""The rules versions in PostgreSQL (migration 0014): every activated rules file's text by
its version, and the active version of one ORDERS stream. Activating is one transaction:
the version stored (once), the pointer moved, ``NOTIFY rules_activated`` sent, so every
process that follows the channel (``app/rules_source.py``) reads the new pointer after the
commit and swaps in the same version."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from adapters.postgres import raises_unavailable

# NOTIFY channel of an activation; the payload is "<orders stream>:<generation>".
RULES_CHANNEL = "rules_activated"


@dataclass(frozen=True)
class ActiveRules:
    """The active version of a stream: its text and where it came from."""

    version: str
    text: str
    source: str
    generation: int  # activations so far; a newer one is a higher number
    activated_at: datetime
    activated_by: str


@dataclass(frozen=True)
class Activation:
    active: ActiveRules
    previous: str | None  # the version active before (None: none was)

    @property
    def changed(self) -> bool:
        return self.previous != self.active.version


ACTIVE_RULES = _ACTIVE = (
    "SELECT a.version, v.text, v.source, a.generation, a.activated_at, a.activated_by"
    " FROM rules_active AS a JOIN rules_versions AS v USING (version)"
    " WHERE a.orders_stream = $1"
)


@raises_unavailable
class PostgresRulesStore:
    """The rules versions of the ``orders_stream`` deployment, on ``pool``."""

    def __init__(self, pool: asyncpg.Pool, orders_stream: str) -> None:
        self._pool = pool
        self._stream = orders_stream

    async def active(self) -> ActiveRules | None:
        row = await self._pool.fetchrow(_ACTIVE, self._stream)
        return None if row is None else ActiveRules(**dict(row))

    async def open_issues(self, kinds: Collection[str]) -> dict[str, int]:
        """How many issues of each of ``kinds`` are not resolved (the inbox read model;
        kinds with none are left out)."""
        rows = await self._pool.fetch(
            "SELECT kind, count(*) AS n FROM inbox_issues"
            " WHERE kind = ANY($1::text[]) AND status <> 'resolved' GROUP BY kind",
            list(kinds),
        )
        return {row["kind"]: row["n"] for row in rows}

    async def activate(self, version: str, text: str, source: str, by: str) -> Activation:
        """Make ``version`` (the hash of ``text``) the active one; nothing moves (and
        nothing is announced) when it is already."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO rules_versions (version, text, source) VALUES ($1, $2, $3)"
                " ON CONFLICT (version) DO NOTHING",
                version,
                text,
                source,
            )
            # Activations of one stream take turns on its row (created on the first).
            await conn.execute(
                "INSERT INTO rules_active (orders_stream, version, generation, activated_by)"
                " VALUES ($1, $2, 0, $3) ON CONFLICT (orders_stream) DO NOTHING",
                self._stream,
                version,
                by,
            )
            before = await conn.fetchrow(
                "SELECT version, generation FROM rules_active WHERE orders_stream = $1 FOR UPDATE",
                self._stream,
            )
            assert before is not None
            previous: str | None = before["version"]
            if before["generation"] == 0:  # the row this transaction made
                previous = None
            if previous != version:
                await conn.execute(
                    "UPDATE rules_active SET version = $2, generation = $3,"
                    " activated_at = now(), activated_by = $4 WHERE orders_stream = $1",
                    self._stream,
                    version,
                    before["generation"] + 1,
                    by,
                )
                await conn.execute(
                    "SELECT pg_notify($1, $2)",
                    RULES_CHANNEL,
                    f"{self._stream}:{before['generation'] + 1}",
                )
            row = await conn.fetchrow(_ACTIVE, self._stream)
        assert row is not None
        return Activation(ActiveRules(**dict(row)), previous)
