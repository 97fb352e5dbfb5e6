"""The one backoff every retry loop waits (adapters/loops.py)."""

from __future__ import annotations

import pytest

from adapters.loops import backoff


def test_it_doubles_from_base_up_to_the_cap() -> None:
    assert [backoff(n, base=0.2, cap=5.0) for n in range(6)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0]


@pytest.mark.parametrize("attempt", [1024, 10_000, 10**9])
def test_a_long_outage_waits_the_cap_and_never_overflows(attempt: int) -> None:
    # 2.0**1024 overflows a float: after about 85 minutes of retrying at a 5 s cap, every
    # loop that waits this would have crashed inside its own except block.
    assert backoff(attempt, base=0.05, cap=30.0) == 30.0
