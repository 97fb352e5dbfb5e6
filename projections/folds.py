"""The folds every read model shares: a batch folded onto the rows it touches, what an
issue's Detected event says, and how its status moves (the inbox, stats and orders
models each keep these columns)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any
from uuid import UUID

from projections.rows import Row

# (row before or None, event, position) -> row after
Fold = Callable[[Row | None, Any, int], Row]


def fold_batch(
    before: Mapping[UUID, Row], batch: Sequence[tuple[int, Any]], fold: Fold
) -> dict[UUID, Row]:
    """Fold a batch (position order) onto the rows it touches, from ``before`` (the
    stored rows); returns the touched rows."""
    touched: dict[UUID, Row] = {}
    for position, event in batch:
        issue_id = event.originator_id
        touched[issue_id] = fold(touched.get(issue_id, before.get(issue_id)), event, position)
    return touched


def detected_row(event: Any) -> Row:
    """What every read model knows of an issue from its Detected event."""
    return {
        "issue_id": event.originator_id,
        "order_id": event.order_id,
        "kind": event.kind,
        "status": "open",
        "status_before_snooze": None,
        "severity": event.severity,
        "vertical": event.vertical,
        "country": event.country,
        "city": event.city,
        "detected_at": event.at,
    }


def next_status(row: Row, name: str, event: Any) -> None:
    """Move ``status``, ``status_before_snooze`` and ``severity`` of a row (the part of the
    state machine every read model keeps)."""
    if name == "escalated":
        row["severity"] = event.severity
    elif name == "acknowledged":
        row["status"] = "acknowledged"
    elif name == "snoozed":
        row["status_before_snooze"] = event.previous_status
        row["status"] = "snoozed"
    elif name == "woken":
        row["status"] = row["status_before_snooze"] or "open"
        row["status_before_snooze"] = None
    elif name == "resolved":
        row["status"] = "resolved"
        row["status_before_snooze"] = None
    elif name == "reopened":
        row["status"] = "open"
