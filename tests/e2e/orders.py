"""Order events (CONTRACT §2) as the e2e tests post them to ``/api/order-events``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any


def event(
    order_id: str,
    kind: str,
    ago_minutes: float,
    *,
    country: str = "FI",
    city: str = "Helsinki",
    **data: Any,
) -> dict[str, Any]:
    """An event of a restaurant order that happened ``ago_minutes`` ago."""
    return {
        "event_id": str(uuid.uuid4()),
        "type": kind,
        "order_id": order_id,
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=ago_minutes)).isoformat(),
        "vertical": "restaurant",
        "country": country,
        "city": city,
        "data": data,
    }


def placed(order_id: str, ago_minutes: float, **where: str) -> dict[str, Any]:
    """``order_placed``, promised in 30 minutes (``where``: ``country``, ``city``)."""
    promise = (datetime.now(UTC) + timedelta(minutes=30)).isoformat()
    return event(
        order_id,
        "order_placed",
        ago_minutes,
        **where,
        venue_id="v",
        customer_id="c",
        promised_delivery_at=promise,
        amount=2500,
        currency="EUR",
    )
