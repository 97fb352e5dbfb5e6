"""The one place that reads the wall clock; the domain gets time as an argument.

:class:`SystemClock` is real time. :class:`ScaledClock` is the demo's order time: the
wall clock running ``speed`` times faster from ``anchor`` (``inbox up --speed``,
``INBOX_DEMO_SPEED``), shared by the simulator that stamps the events and the detector
that judges them. Monotonic timers (timeouts, loop pacing) are not "now" and stay with
their loops.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ScaledClock:
    """Wall-clock time, optionally running ``speed`` times faster from ``anchor``."""

    def __init__(self, speed: float = 1.0, anchor: datetime | None = None) -> None:
        self.speed = speed
        self.anchor = anchor or datetime.now(UTC)

    def now(self) -> datetime:
        real = datetime.now(UTC)
        return self.anchor + (real - self.anchor) * self.speed


def demo_clock(speed: float, anchor: datetime | None) -> ScaledClock | None:
    """Compressed order time shared with a separate simulator (``INBOX_DEMO_SPEED`` and
    ``INBOX_DEMO_ANCHOR``), or None for the real clock at speed 1."""
    if speed == 1:
        return None
    return ScaledClock(speed, anchor)
