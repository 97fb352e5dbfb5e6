"""Rows keyed by issue id: load the ones a batch touches, write them back in one go."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

import asyncpg

Row = dict[str, Any]


async def load(
    conn: asyncpg.Connection,
    table: str,
    columns: Sequence[str],
    issue_ids: Iterable[UUID],
    *,
    json_columns: frozenset[str] = frozenset(),
) -> dict[UUID, Row]:
    records = await conn.fetch(
        f"SELECT {', '.join(columns)} FROM {table} WHERE issue_id = ANY($1::uuid[])",
        list(issue_ids),
    )
    rows = {}
    for record in records:
        row = dict(record)
        for column in json_columns:
            if row[column] is not None:  # SQL NULL: a nullable JSON column left empty
                row[column] = json.loads(row[column])
        rows[record["issue_id"]] = row
    return rows


async def upsert(
    conn: asyncpg.Connection,
    table: str,
    columns: Sequence[str],
    rows: Iterable[Row],
    *,
    json_columns: frozenset[str] = frozenset(),
) -> None:
    placeholders = ", ".join(
        f"${n}::jsonb" if column in json_columns else f"${n}"
        for n, column in enumerate(columns, start=1)
    )
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != "issue_id")
    await conn.executemany(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})"
        f" ON CONFLICT (issue_id) DO UPDATE SET {updates}",
        [
            tuple(
                json.dumps(row[c]) if c in json_columns and row[c] is not None else row[c]
                for c in columns
            )
            for row in rows
        ],
    )
