"""The inbox read model: one row per issue in ``inbox_issues``, every field the API shows.

:func:`fold` is the pure heart: (row or None, event, position) → row. A unit test checks
that folding any command sequence's events gives what the aggregate itself holds, so the
two cannot drift. :class:`InboxProjection` loads the rows a batch touches, folds the batch
in memory, and writes each touched row once; a rebuild folds each issue's events into its
row and COPYs it.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

import asyncpg
import msgspec

from domain.issue import EVENT_NAMES, due_at, priority_of
from projections import rows
from projections.folds import detected_row, fold_batch, next_status
from projections.follower import Batch, ProjectionError
from projections.rows import Row

COLUMNS = (
    "issue_id",
    "order_id",
    "kind",
    "status",
    "status_before_snooze",
    "severity",
    "priority",
    "vertical",
    "country",
    "city",
    "assignee",
    "detected_at",
    "updated_at",
    "due_at",
    "sla_minutes",
    "resolved_at",
    "resolved_by",
    "resolution",
    "snoozed_until",
    "evidence",
    "note_count",
    "action_count",
    "reopen_count",
    "version",
    "position",
)

_JSON = frozenset({"evidence", "sla_minutes"})
_RECORD = itemgetter(*COLUMNS)
_EVIDENCE = COLUMNS.index("evidence")
_SLA = COLUMNS.index("sla_minutes")
_ENCODE_JSON = msgspec.json.Encoder().encode


def fold(row: Row | None, event: Any, position: int) -> Row:
    """The row after ``event``; ``row`` is the row before it (None before Detected)."""
    name = EVENT_NAMES.get(type(event))
    if name is None:
        raise ProjectionError(f"no inbox mapping for {type(event).__qualname__}")
    if name == "detected":
        row = {
            **detected_row(event),
            "assignee": None,
            "resolved_at": None,
            "resolved_by": None,
            "resolution": None,
            "snoozed_until": None,
            "evidence": dict(event.evidence),
            # The vertical's SLA minutes (None: raised by hand, or stored before they
            # were recorded: the fixed table), for due_at as the aggregate computes it.
            "sla_minutes": vars(event).get("sla_minutes"),
            "note_count": 0,
            "action_count": 0,
            "reopen_count": 0,
        }
    elif row is None:
        raise ProjectionError(f"{name} event of issue {event.originator_id} before detected")
    else:
        row = dict(row)
        _transition(row, name, event)
    row["priority"] = priority_of(row["severity"])
    row["due_at"] = due_at(row["detected_at"], row["severity"], row["sla_minutes"])
    row["updated_at"] = event.at
    row["version"] = event.originator_version
    row["position"] = position
    return row


def _transition(row: Row, name: str, event: Any) -> None:
    next_status(row, name, event)
    if name == "escalated":
        row["evidence"] = {**row["evidence"], **event.evidence}
    elif name == "assigned":
        row["assignee"] = event.assignee
    elif name == "unassigned":
        row["assignee"] = None
    elif name == "note_added":
        row["note_count"] += 1
    elif name == "action_taken":
        row["action_count"] += 1
    elif name == "snoozed":
        row["snoozed_until"] = event.until
    elif name in ("woken", "resolved"):
        row["snoozed_until"] = None
    if name == "resolved":
        row["resolution"] = event.resolution
        row["resolved_by"] = event.resolved_by
        row["resolved_at"] = event.at
    elif name == "reopened":
        row["reopen_count"] += 1
        row["resolution"] = None
        row["resolved_at"] = None
        row["resolved_by"] = None


class InboxProjection:
    name: str = "inbox"
    tables: tuple[str, ...] = ("inbox_issues",)
    issue_table: str = "inbox_issues"
    issue_columns: tuple[str, ...] = COLUMNS

    async def apply(self, conn: asyncpg.Connection, batch: Batch, tables: dict[str, str]) -> None:
        table = tables["inbox_issues"]
        issue_ids = {event.originator_id for _, event in batch}
        before = await rows.load(conn, table, COLUMNS, issue_ids, json_columns=_JSON)
        touched = fold_batch(before, batch, fold)
        await rows.upsert(conn, table, COLUMNS, touched.values(), json_columns=_JSON)

    def fold(self, row: Row | None, event: Any, position: int) -> Row:
        return fold(row, event, position)

    def record(self, row: Row) -> tuple[Any, ...]:
        values = list(_RECORD(row))
        values[_EVIDENCE] = _ENCODE_JSON(values[_EVIDENCE]).decode()
        if values[_SLA] is not None:
            values[_SLA] = _ENCODE_JSON(values[_SLA]).decode()
        return tuple(values)

    async def derive(self, conn: asyncpg.Connection, tables: dict[str, str]) -> None:
        """Nothing to derive: ``inbox_issues`` is the whole model."""
