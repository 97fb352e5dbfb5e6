"""Read models: one module per model, each folding issue events into its tables.

``PROJECTIONS`` names every read model; ``inbox project`` keeps them all up to date and
``inbox rebuild NAME`` rebuilds one.
"""

from __future__ import annotations

from projections.follower import Projection
from projections.inbox import InboxProjection
from projections.orders import OrdersProjection
from projections.stats import StatsProjection

PROJECTIONS: dict[str, Projection] = {
    projection.name: projection
    for projection in (InboxProjection(), StatsProjection(), OrdersProjection())
}
