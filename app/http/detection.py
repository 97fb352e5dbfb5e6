"""``/api/detection``: how well the inbox detects problems before customers report them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter, SkipValidation

from adapters.clock import Clock
from app.edge import TIME_PATTERN, Aware
from app.http import openapi
from app.http.errors import BadRequest
from app.principal import Principal
from app.queries import ReadModels
from app.scope import Scope
from domain.errors import InvalidValue
from domain.values import check_time

# A time in a query: taken as text and converted strictly, as RFC 3339 (Litestar converts
# query values leniently, and took a number for seconds since 1970).
_QueryTime = Annotated[
    str | None, QueryParameter(schema_extra={"format": "date-time", "pattern": TIME_PATTERN})
]


def _time(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        at = msgspec.convert(value, Aware, strict=True)
        check_time(name, at)
    except msgspec.ValidationError as exc:
        raise BadRequest(name, f"must be an RFC 3339 time with an offset ({exc})") from None
    except InvalidValue as exc:
        raise BadRequest(exc.field, exc.reason) from None
    return at


class DetectionKpi(msgspec.Struct):
    since: datetime
    until: datetime
    contacts: int  # customers who contacted support about an order in the window
    detected: int  # ... whose order had a problem and an open issue then
    # ... whose order had none open then, but has a problem: an issue raised before or
    # after the contact that agents did not resolve as a false positive
    missed: int
    # ... about an order the inbox knows no problem of (a question on a healthy order):
    # neither detected nor missed
    no_problem: int
    detected_share: float | None  # detected / (detected + missed): contacts about problems
    median_lead_minutes: float | None  # how much earlier the inbox knew, for detected ones


class DetectionController(Controller):
    path = "/api/detection"
    tags = ["order events"]

    @get(
        "/kpi",
        summary="Share of support contacts the inbox had already detected",
        responses=openapi.read(),
    )
    async def kpi(
        self,
        caller: NamedDependency[Principal],
        read_models: NamedDependency[ReadModels],
        clock: NamedDependency[SkipValidation[Clock]],  # a Protocol: no isinstance()
        since: _QueryTime = None,
        until: _QueryTime = None,
    ) -> DetectionKpi:
        """Counts only the contacts about orders in the caller's scope."""
        # The system's clock: in a demo, order time, like the contacts it counts.
        until_at = _time("until", until) or clock.now()
        since_at = _time("since", since) or until_at - timedelta(days=1)
        if since_at > until_at:
            raise BadRequest("since", "must not be after until")
        counted = await read_models.contacts(since_at, until_at, Scope.of(caller))
        about_problems = counted.detected + counted.missed
        lead = counted.median_lead_minutes
        return DetectionKpi(
            since=since_at,
            until=until_at,
            contacts=counted.contacts,
            detected=counted.detected,
            missed=counted.missed,
            no_problem=counted.contacts - about_problems,
            detected_share=counted.detected / about_problems if about_problems else None,
            median_lead_minutes=round(lead, 2) if lead is not None else None,
        )
