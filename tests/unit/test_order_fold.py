"""The order fold: arrival order and applying one by one change nothing."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.order import OrderEvent, apply, fold, sort_key

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

# (minute offset, kind, courier, metres north of the start) per step after placement.
step = st.tuples(
    st.integers(min_value=1, max_value=120),
    st.sampled_from(["courier_location"] * 6 + ["courier_assigned", "order_picked_up"]),
    st.sampled_from(["k1", "k2"]),
    st.integers(min_value=0, max_value=400),
)


def events_of(steps: list[tuple[int, str, str, int]]) -> list[OrderEvent]:
    events = [
        OrderEvent("e-placed", "order_placed", "o", T0, "restaurant", "FI", "Turku", {}),
    ]
    for n, (minute, kind, courier, north) in enumerate(steps):
        data: dict[str, object] = {"courier_id": courier}
        if kind == "courier_location":
            # 0.00001 degrees of latitude is about 1.1 metres.
            data.update(lat=60.0 + north * 0.00001, lon=24.0)
        events.append(
            OrderEvent(
                f"e{n:03d}",
                kind,
                "o",
                T0 + timedelta(minutes=minute),
                "restaurant",
                "FI",
                "Turku",
                data,
            )
        )
    return events


@settings(max_examples=300, deadline=None)
@given(st.lists(step, max_size=60), st.randoms())
def test_folding_shuffled_or_one_by_one_gives_one_state(
    steps: list[tuple[int, str, str, int]], rng: random.Random
) -> None:
    events = events_of(steps)
    whole = fold(events)
    shuffled = list(events)
    rng.shuffle(shuffled)
    assert fold(shuffled) == whole
    one_by_one = None
    for event in sorted(events, key=sort_key):
        one_by_one = apply(one_by_one, event)
    assert one_by_one == whole


def event(n: int, kind: str, minute: float, **data: object) -> OrderEvent:
    return OrderEvent(
        f"f{n}", kind, "o", T0 + timedelta(minutes=minute), "restaurant", "FI", "Turku", data
    )


def test_a_contact_is_an_event_but_not_progress() -> None:
    state = fold(
        [event(0, "order_placed", 0), event(1, "customer_contacted_support", 9, channel="chat")]
    )
    assert state is not None
    assert (state.last_event_at, state.last_progress_at) == (T0 + timedelta(minutes=9), T0)


def test_the_ready_estimate_and_the_unassignment_are_kept() -> None:
    ready = T0 + timedelta(minutes=15)
    events = [
        event(0, "order_placed", 0),
        event(1, "venue_accepted", 1, estimated_ready_at=ready),
        event(2, "courier_assigned", 10, courier_id="a"),
        event(3, "courier_unassigned", 11, courier_id="a"),
    ]
    state = fold(events)
    assert state is not None
    assert (state.estimated_ready_at, state.unassigned_at) == (ready, T0 + timedelta(minutes=11))
    again = fold([*events, event(4, "courier_assigned", 12, courier_id="b")])
    assert again is not None
    assert (again.courier_id, again.unassigned_at) == ("b", None)
