"""Issue counts for ``GET /api/stats``: ``stats_counts`` holds how many issues stand at each
(status, severity, kind, vertical, country, city); ``stats_issues`` remembers where each
issue is counted, so that an event moving it is a -1 there and a +1 at its new place.
A rebuild writes ``stats_issues`` and then counts it into ``stats_counts`` in one query."""

from __future__ import annotations

from collections import Counter
from operator import itemgetter
from typing import Any

import asyncpg

from domain.issue import EVENT_NAMES
from projections import rows
from projections.folds import detected_row, fold_batch, next_status
from projections.follower import Batch, ProjectionError
from projections.rows import Row

DIMENSIONS = ("status", "severity", "kind", "vertical", "country", "city")
_COLUMNS = ("issue_id", "status_before_snooze", *DIMENSIONS)
_RECORD = itemgetter(*_COLUMNS)


def fold(row: Row | None, event: Any) -> Row:
    name = EVENT_NAMES.get(type(event))
    if name == "detected":
        detected = detected_row(event)
        return {key: detected[key] for key in _COLUMNS}
    if row is None or name is None:
        raise ProjectionError(f"stats cannot apply {type(event).__qualname__} here")
    row = dict(row)
    next_status(row, name, event)
    return row


class StatsProjection:
    name: str = "stats"
    tables: tuple[str, ...] = ("stats_counts", "stats_issues")
    issue_table: str = "stats_issues"
    issue_columns: tuple[str, ...] = _COLUMNS

    async def apply(self, conn: asyncpg.Connection, batch: Batch, tables: dict[str, str]) -> None:
        issues = tables["stats_issues"]
        before = await rows.load(conn, issues, _COLUMNS, {e.originator_id for _, e in batch})
        after = fold_batch(before, batch, self.fold)
        delta: Counter[tuple[str, ...]] = Counter()
        for issue_id, row in after.items():
            if issue_id in before:
                delta[tuple(before[issue_id][d] for d in DIMENSIONS)] -= 1
            delta[tuple(row[d] for d in DIMENSIONS)] += 1
        changes = [(*key, n) for key, n in delta.items() if n != 0]
        emptied = any(n < 0 for n in delta.values())
        counts = tables["stats_counts"]
        await conn.executemany(
            f"INSERT INTO {counts} ({', '.join(DIMENSIONS)}, n) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            f" ON CONFLICT ({', '.join(DIMENSIONS)}) DO UPDATE SET n = {counts}.n + EXCLUDED.n",
            changes,
        )
        if emptied:
            await conn.execute(f"DELETE FROM {counts} WHERE n = 0")
        await rows.upsert(conn, issues, _COLUMNS, after.values())

    def fold(self, row: Row | None, event: Any, position: int) -> Row:
        return fold(row, event)

    def record(self, row: Row) -> tuple[Any, ...]:
        record: tuple[Any, ...] = _RECORD(row)
        return record

    async def derive(self, conn: asyncpg.Connection, tables: dict[str, str]) -> None:
        """Each place's count is how many issues stand there: count ``stats_issues``."""
        dimensions = ", ".join(DIMENSIONS)
        await conn.execute(
            f"INSERT INTO {tables['stats_counts']} ({dimensions}, n)"
            f" SELECT {dimensions}, count(*) FROM {tables['stats_issues']} GROUP BY {dimensions}"
        )
