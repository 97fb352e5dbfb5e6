"""Thresholds per vertical and country: which tiers each rule uses for one order.

The most specific setting wins: defaults < vertical < country < (vertical, country).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType

from domain.errors import InvalidValue
from domain.rules import RULES, OrderRules, Tiers, Tuning
from domain.values import SEVERITY_RANK, VERTICALS

KindTiers = Mapping[str, Tiers]


def check_tiers(where: str, kind: str, tiers: Tiers) -> None:
    """Tiers ascend in threshold and never lower the severity; names are known."""
    if kind not in RULES:
        raise InvalidValue(where, f"unknown rule {kind!r}; known: {', '.join(sorted(RULES))}")
    previous_threshold, previous_rank = -1.0, -1
    for threshold, severity in tiers:
        if severity not in SEVERITY_RANK:
            raise InvalidValue(f"{where}.{kind}", f"unknown severity {severity!r}")
        if kind == "courier_reassigned_repeatedly" and threshold < 1:
            raise InvalidValue(f"{where}.{kind}", "counts unassignments: thresholds >= 1")
        if threshold < 0 or threshold <= previous_threshold:
            raise InvalidValue(f"{where}.{kind}", "thresholds must be >= 0 and ascending")
        if SEVERITY_RANK[severity] < previous_rank:
            raise InvalidValue(f"{where}.{kind}", "a later tier cannot lower the severity")
        previous_threshold, previous_rank = threshold, SEVERITY_RANK[severity]


@dataclass(frozen=True)
class Thresholds:
    defaults: KindTiers
    by_vertical: Mapping[str, KindTiers] = field(default_factory=dict)
    by_country: Mapping[str, KindTiers] = field(default_factory=dict)
    by_vertical_country: Mapping[tuple[str, str], KindTiers] = field(default_factory=dict)
    # A condition must stay clear this long before its issue resolves itself (no flapping).
    clear_for_seconds: float = 60.0
    # A courier unassigned and replaced within this many minutes was never missing.
    reassignment_grace_minutes: float = 0.0
    # Per vertical: typical minutes from acceptance to ready (no estimate from the venue).
    preparation_minutes: Mapping[str, float] = field(default_factory=dict)
    # Per kind: how far below its first threshold a condition must drop to be clear.
    clear_margins: Mapping[str, float] = field(default_factory=dict)
    # Per kind: minutes of order time a condition must stay clear (else clear_for_seconds).
    clear_for_minutes: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for where, kinds in [
            ("defaults", self.defaults),
            *((f"vertical.{v}", k) for v, k in self.by_vertical.items()),
            *((f"country.{c}", k) for c, k in self.by_country.items()),
            *((f"vertical.{v}.country.{c}", k) for (v, c), k in self.by_vertical_country.items()),
        ]:
            for kind, tiers in kinds.items():
                check_tiers(where, kind, tiers)
        if self.clear_for_seconds < 0:
            raise InvalidValue("clear_for_seconds", "must be >= 0")
        if self.reassignment_grace_minutes < 0:
            raise InvalidValue("detector.reassignment_grace_minutes", "must be >= 0")
        for vertical, minutes in self.preparation_minutes.items():
            if vertical not in VERTICALS:
                raise InvalidValue(
                    f"preparation_minutes.{vertical}",
                    f"unknown vertical; known: {', '.join(sorted(VERTICALS))}",
                )
            if minutes < 0:
                raise InvalidValue(f"preparation_minutes.{vertical}", "must be >= 0")
        for setting, values in (
            ("margin", self.clear_margins),
            ("for_minutes", self.clear_for_minutes),
        ):
            for kind, value in values.items():
                if kind not in RULES:
                    raise InvalidValue(
                        f"clear.{kind}", f"unknown rule; known: {', '.join(sorted(RULES))}"
                    )
                if value < 0:
                    raise InvalidValue(f"clear.{kind}.{setting}", "must be >= 0")

    def rules_for(self, vertical: str, country: str) -> OrderRules:
        """Everything the rules of an order of (vertical, country) are judged with."""
        tuning = Tuning(
            preparation_minutes=self.preparation_minutes.get(vertical, Tuning.preparation_minutes),
            reassignment_grace_minutes=self.reassignment_grace_minutes,
            clear_margins=MappingProxyType(dict(self.clear_margins)),
        )
        clear_for = {k: timedelta(minutes=m) for k, m in self.clear_for_minutes.items()}
        return OrderRules(self.for_order(vertical, country), tuning, MappingProxyType(clear_for))

    def for_order(self, vertical: str, country: str) -> dict[str, Tiers]:
        merged = dict(self.defaults)
        merged.update(self.by_vertical.get(vertical, {}))
        merged.update(self.by_country.get(country, {}))
        merged.update(self.by_vertical_country.get((vertical, country), {}))
        return merged
