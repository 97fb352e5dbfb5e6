"""The folds every read model shares: what an issue's Detected event says, and how its
status moves (the inbox, stats and orders models each keep these columns)."""

from __future__ import annotations

from typing import Any

from projections.rows import Row


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
