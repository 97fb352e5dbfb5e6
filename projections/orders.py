"""Each order's issues, for ``GET /api/orders/{order_id}``: ``order_issues`` holds one row per
issue with the facts of its order, looked up by order id."""

from __future__ import annotations

from operator import itemgetter
from typing import Any

import asyncpg

from domain.issue import EVENT_NAMES
from projections import rows
from projections.folds import detected_row, fold_batch, next_status
from projections.follower import Batch, ProjectionError
from projections.rows import Row

_COLUMNS = (
    "issue_id",
    "order_id",
    "kind",
    "status",
    "status_before_snooze",
    "severity",
    "vertical",
    "country",
    "city",
    "detected_at",
    "updated_at",
    "version",
)
_RECORD = itemgetter(*_COLUMNS)


def fold(row: Row | None, event: Any) -> Row:
    name = EVENT_NAMES.get(type(event))
    if name == "detected":
        row = detected_row(event)
    elif row is None or name is None:
        raise ProjectionError(f"orders cannot apply {type(event).__qualname__} here")
    else:
        row = dict(row)
        next_status(row, name, event)
    row["updated_at"] = event.at
    row["version"] = event.originator_version
    return row


class OrdersProjection:
    name: str = "orders"
    tables: tuple[str, ...] = ("order_issues",)
    issue_table: str = "order_issues"
    issue_columns: tuple[str, ...] = _COLUMNS

    async def apply(self, conn: asyncpg.Connection, batch: Batch, tables: dict[str, str]) -> None:
        table = tables["order_issues"]
        before = await rows.load(conn, table, _COLUMNS, {e.originator_id for _, e in batch})
        after = fold_batch(before, batch, self.fold)
        await rows.upsert(conn, table, _COLUMNS, after.values())

    def fold(self, row: Row | None, event: Any, position: int) -> Row:
        return fold(row, event)

    def record(self, row: Row) -> tuple[Any, ...]:
        record: tuple[Any, ...] = _RECORD(row)
        return record

    async def derive(self, conn: asyncpg.Connection, tables: dict[str, str]) -> None:
        """Nothing to derive: ``order_issues`` is the whole model."""
