"""How GET /ready judges a projection (app/http/health.py)."""

from __future__ import annotations

import pytest

from app.http.health import projection_status

STALL = 30.0


@pytest.mark.parametrize(
    ("position", "lag", "checked_ago", "last_error", "expected"),
    [
        (0, 0, None, None, "not started"),  # an API alone, nothing written: ready
        (0, 5, None, None, "stalled"),  # events written, no follower ever read them
        (90, 0, 3600.0, None, "running"),  # nothing to do for an hour
        (90, 0, 0.5, None, "running"),
        (90, 1, 0.5, None, "running"),  # an event just arrived: the follower is on it
        (90, 1, 29.9, None, "running"),
        (90, 1, 30.1, None, "stalled"),  # its follower stopped reading the log
        (90, 0, 0.5, "UndefinedTableError: ...", "failing"),
        (90, 7, 3600.0, "DeadlockDetectedError: ...", "failing"),
    ],
)
def test_projection_status(
    position: int, lag: int, checked_ago: float | None, last_error: str | None, expected: str
) -> None:
    assert projection_status(position, lag, checked_ago, last_error, STALL) == expected
