"""Value types shared by the domain: kinds, severities, statuses, resolutions, actions."""

from __future__ import annotations

from typing import Final, Literal

Kind = Literal[
    "venue_acceptance_delayed",
    "venue_rejected",
    "no_courier_assigned",
    "courier_waiting_at_venue",
    "ready_not_picked_up",
    "eta_slipped",
    "delivery_overdue",
    "courier_stationary",
    "courier_reassigned_repeatedly",
    "payment_failed",
    "order_stale",
]
KINDS: Final = frozenset(Kind.__args__)  # type: ignore[attr-defined]

Severity = Literal["low", "medium", "high", "critical"]
SEVERITIES: Final[tuple[Severity, ...]] = ("low", "medium", "high", "critical")
SEVERITY_RANK: Final[dict[str, int]] = {name: rank for rank, name in enumerate(SEVERITIES)}

Status = Literal["open", "acknowledged", "snoozed", "resolved"]

ResolvedBy = Literal["agent", "system"]

Resolution = Literal[
    "fixed", "compensated", "no_action_needed", "false_positive", "duplicate", "other"
]
RESOLUTIONS: Final = frozenset(Resolution.__args__)  # type: ignore[attr-defined]

Action = Literal[
    "contact_customer",
    "contact_venue",
    "contact_courier",
    "compensate",
    "reassign_courier",
    "cancel_order",
    "other",
]
ACTIONS: Final = frozenset(Action.__args__)  # type: ignore[attr-defined]

Vertical = Literal["restaurant", "grocery", "retail", "parcel"]
VERTICALS: Final = frozenset(Vertical.__args__)  # type: ignore[attr-defined]

SYSTEM_ACTOR: Final = "system"

# Longest free text a note, reason or resolution note may carry. Together with the
# command batch size this bounds the bytes of one save() (DESIGN.md, "Known traps").
MAX_TEXT_LENGTH: Final = 4000
