"""The rules as data: the verticals, their event types, the declared rules and every
threshold, parsed from the rules file (``app/rules_config.py``) into one immutable
:class:`RuleSet`, judged by the pure rule functions of ``domain/rules.py``.

A vertical is a name, a delivery model, the rules that apply to it, its SLA minutes per
severity and the event types it sends besides the built-in ones. A *waiting* rule is a
kind of issue declared in the file: its condition holds from the latest event of one type
until an event of one of a list of types (or the order's end), with tiers of minutes.

A :class:`RuleSet` is checked as a whole when it is built (:meth:`RuleSet.check`), so a
running detector only ever swaps one valid set for another; its ``version`` is the hash
of the file it was parsed from, recorded on every issue event the detector causes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Final, Literal

from domain.errors import InvalidValue
from domain.order import ORDER_EVENT_TYPES, OrderState
from domain.rules import (
    CLEAR,
    RULES,
    Check,
    OrderRules,
    Tiers,
    Tuning,
    tiered,
)
from domain.values import SEVERITIES, SEVERITY_RANK, check_minutes, check_name

DeliveryModel = Literal["marketplace", "own_staff", "pickup"]
DELIVERY_MODELS: Final = frozenset(DeliveryModel.__args__)  # type: ignore[attr-defined]

# The built-in rules that judge the marketplace's couriers: an order its merchant's own
# staff delivers, or the customer picks up, never sends a courier event, so they cannot
# apply to such a vertical (they would raise on every healthy order).
COURIER_RULES: Final = frozenset(
    {
        "no_courier_assigned",
        "courier_waiting_at_venue",
        "courier_stationary",
        "courier_reassigned_repeatedly",
    }
)


# The types a declared event's data field may have (JSON values, as the validator takes
# them), and the longest text one takes.
FieldType = Literal["text", "time", "integer", "number", "boolean"]
FIELD_TYPES: Final = frozenset(FieldType.__args__)  # type: ignore[attr-defined]
MAX_DECLARED_TEXT: Final = 1000

DEFAULT_SLA_MINUTES: Final[Mapping[str, float]] = MappingProxyType(
    {"low": 60.0, "medium": 30.0, "high": 15.0, "critical": 5.0}
)


@dataclass(frozen=True)
class EventField:
    name: str
    type: FieldType
    required: bool = True


@dataclass(frozen=True)
class EventType:
    """An event type a vertical sends besides the built-in ones, with its data fields."""

    name: str
    fields: tuple[EventField, ...] = ()


@dataclass(frozen=True)
class WaitingRule:
    """A declared kind: holds from the latest ``start`` event until an ``until`` event at
    or after it, or the order's end; tiers count minutes since ``start``; ``evidence``
    names the start event's data fields shown with the issue."""

    kind: str
    start: str
    until: tuple[str, ...]
    tiers: Tiers
    evidence: tuple[str, ...] = ()

    def check(self, order: OrderState, now: datetime, tiers: Tiers) -> Check:
        since = order.seen.get(self.start)
        if since is None or order.finished:
            return CLEAR
        if any((t := order.seen.get(name)) is not None and t >= since for name in self.until):
            return CLEAR
        elapsed = max(0.0, (now - since).total_seconds() / 60)
        if tiers and elapsed < tiers[0][0]:
            return Check(recheck_at=since + timedelta(minutes=tiers[0][0]))
        data = order.facts.get(self.start, {})
        return tiered(
            elapsed,
            since,
            tiers,
            lambda: {
                "waiting_for": " or ".join(self.until),
                "since": since.isoformat(),
                **{name: data[name] for name in self.evidence if name in data},
            },
        )


@dataclass(frozen=True)
class Vertical:
    name: str
    delivery: DeliveryModel = "marketplace"
    rules: frozenset[str] = frozenset()  # the kinds that apply (built-in and declared)
    sla_minutes: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_SLA_MINUTES))
    events: Mapping[str, EventType] = field(default_factory=dict)
    preparation_minutes: float = Tuning.preparation_minutes
    # When a courier is due: at the venue's ready time (just-in-time dispatch) or as soon
    # as the order is accepted (nothing to prepare: parcels).
    courier_due: Literal["ready", "accepted"] = "ready"

    def event_types(self) -> frozenset[str]:
        return ORDER_EVENT_TYPES | frozenset(self.events)


@dataclass(frozen=True)
class RuleSet:
    """One version of the rules file, validated as a whole."""

    version: str  # a content hash of the file
    verticals: Mapping[str, Vertical]
    defaults: Mapping[str, Tiers] = field(default_factory=dict)
    by_vertical: Mapping[str, Mapping[str, Tiers]] = field(default_factory=dict)
    by_country: Mapping[str, Mapping[str, Tiers]] = field(default_factory=dict)
    by_vertical_country: Mapping[tuple[str, str], Mapping[str, Tiers]] = field(default_factory=dict)
    waiting: Mapping[str, WaitingRule] = field(default_factory=dict)
    # A condition must stay clear this long before its issue resolves itself (no flapping).
    clear_for_seconds: float = 60.0
    # A courier unassigned and replaced within this many minutes was never missing.
    reassignment_grace_minutes: float = 0.0
    # Per kind: how far below its first threshold a condition must drop to be clear.
    clear_margins: Mapping[str, float] = field(default_factory=dict)
    # Per kind: minutes of order time a condition must stay clear (else clear_for_seconds).
    clear_for_minutes: Mapping[str, float] = field(default_factory=dict)
    _merged: dict[tuple[str, str], OrderRules] = field(
        default_factory=dict, compare=False, repr=False
    )
    _kinds: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_kinds", frozenset(RULES) | frozenset(self.waiting))
        self.check()

    # ---- what the detector asks -----------------------------------------------------

    @property
    def kinds(self) -> frozenset[str]:
        """Every kind of issue this set can raise: the built-in rules and the declared."""
        return self._kinds

    @property
    def clear_for(self) -> timedelta:
        return timedelta(seconds=self.clear_for_seconds)

    def vertical(self, name: str) -> Vertical | None:
        return self.verticals.get(name)

    def rules_for(self, vertical: str, country: str) -> OrderRules:
        """Everything the rules of an order of (vertical, country) are judged with: the
        tiers of the kinds that apply to the vertical, merged, and its tuning (memoised:
        a set never changes)."""
        key = (vertical, country)
        merged = self._merged.get(key)
        if merged is None:
            if len(self._merged) >= 4096:
                self._merged.clear()
            merged = self._merged[key] = self._rules_for(vertical, country)
        return merged

    def _rules_for(self, vertical: str, country: str) -> OrderRules:
        spec = self.verticals.get(vertical)
        if spec is None:
            # An order stored under a vertical since taken out of the file: judged by no
            # rule, its open issues resolve as cleared.
            return OrderRules(MappingProxyType({}))
        tiers = self.for_order(vertical, country)
        tuning = Tuning(
            preparation_minutes=spec.preparation_minutes,
            reassignment_grace_minutes=self.reassignment_grace_minutes,
            clear_margins=MappingProxyType(dict(self.clear_margins)),
            courier_due_at_acceptance=spec.courier_due == "accepted",
        )
        clear_for = {k: timedelta(minutes=m) for k, m in self.clear_for_minutes.items()}
        waiting = {k: w for k, w in self.waiting.items() if k in tiers}
        return OrderRules(
            MappingProxyType(tiers),
            tuning,
            MappingProxyType(clear_for),
            waiting=MappingProxyType(waiting),
            settled=frozenset(waiting),
        )

    def for_order(self, vertical: str, country: str) -> dict[str, Tiers]:
        """The tiers of each kind that applies to the vertical, for (vertical, country):
        the most specific table wins, defaults < vertical < country < (vertical, country)."""
        merged = {k: w.tiers for k, w in self.waiting.items()}
        merged.update(self.defaults)
        merged.update(self.by_vertical.get(vertical, {}))
        merged.update(self.by_country.get(country, {}))
        merged.update(self.by_vertical_country.get((vertical, country), {}))
        spec = self.verticals.get(vertical)
        return {k: t for k, t in merged.items() if spec is not None and k in spec.rules}

    def sla(self, vertical: str, severity: str) -> timedelta:
        spec = self.verticals.get(vertical)
        minutes = (spec.sla_minutes if spec else DEFAULT_SLA_MINUTES)[severity]
        return timedelta(minutes=minutes)

    # ---- validation -----------------------------------------------------------------

    def check(self) -> None:
        """Raise InvalidValue naming the table and key of the first fault."""
        kinds = self.kinds
        for name, rule in self.waiting.items():
            _check_declared(name, rule, kinds)
        for where, table in [
            ("defaults", self.defaults),
            *((f"vertical.{v}.tiers", t) for v, t in self.by_vertical.items()),
            *((f"country.{c}", t) for c, t in self.by_country.items()),
            *((f"vertical.{v}.country.{c}", t) for (v, c), t in self.by_vertical_country.items()),
        ]:
            for kind, tiers in table.items():
                _check_tiers(where, kind, tiers, kinds)
        for vertical, _country in self.by_vertical_country:
            if vertical not in self.verticals:
                raise InvalidValue(f"vertical.{vertical}", "not a declared vertical")
        for name, spec in self.verticals.items():
            self._check_vertical(name, spec, kinds)
        check_minutes("detector.clear_for_seconds", self.clear_for_seconds / 60)
        check_minutes("detector.reassignment_grace_minutes", self.reassignment_grace_minutes)
        for setting, values in (
            ("margin", self.clear_margins),
            ("for_minutes", self.clear_for_minutes),
        ):
            for kind, value in values.items():
                if kind not in kinds:
                    raise InvalidValue(f"clear.{kind}", f"unknown rule; known: {_known(kinds)}")
                check_minutes(f"clear.{kind}.{setting}", value)
        if not self.verticals:
            raise InvalidValue(
                "vertical", "declare at least one vertical, e.g. [vertical.restaurant]"
            )

    def _check_vertical(self, name: str, spec: Vertical, kinds: frozenset[str]) -> None:
        where = f"vertical.{name}"
        check_name(where, name)
        if spec.delivery not in DELIVERY_MODELS:
            raise InvalidValue(f"{where}.delivery", f"must be one of {_known(DELIVERY_MODELS)}")
        for kind in sorted(spec.rules):
            if kind not in kinds:
                raise InvalidValue(
                    f"{where}.rules", f"unknown rule {kind!r}; known: {_known(kinds)}"
                )
            if spec.delivery != "marketplace" and kind in COURIER_RULES:
                raise InvalidValue(
                    f"{where}.rules",
                    f"{kind} judges the marketplace's couriers; delivery is {spec.delivery}",
                )
        for severity in SEVERITIES:
            minutes = spec.sla_minutes.get(severity)
            if minutes is None:
                raise InvalidValue(f"{where}.sla_minutes.{severity}", "must be set")
            check_minutes(f"{where}.sla_minutes.{severity}", minutes, positive=True)
        for named in spec.sla_minutes:
            if named not in SEVERITY_RANK:
                raise InvalidValue(f"{where}.sla_minutes.{named}", "unknown severity")
        check_minutes(f"{where}.preparation_minutes", spec.preparation_minutes)
        _check_events(where, spec)
        self._check_waiting(name, spec)

    def _check_waiting(self, name: str, spec: Vertical) -> None:
        """The declared rules a vertical applies wait on event types it has."""
        types = spec.event_types()
        for kind in sorted(spec.rules & set(self.waiting)):
            rule = self.waiting[kind]
            for role, event_name in [("from", rule.start), *(("until", u) for u in rule.until)]:
                if event_name not in types:
                    raise InvalidValue(
                        f"vertical.{name}.rules",
                        f"{kind} waits on {event_name!r} ({role}), an event type "
                        f"{name} does not declare",
                    )
            declared = spec.events.get(rule.start)
            fields = {f.name for f in declared.fields} if declared else set()
            for evidence in rule.evidence:
                if declared is not None and evidence not in fields:
                    raise InvalidValue(
                        f"waiting.{kind}.evidence",
                        f"{evidence!r} is not a field of {rule.start} in vertical {name}",
                    )


def _check_events(where: str, spec: Vertical) -> None:
    for event_name, event_type in spec.events.items():
        check_name(f"{where}.events.{event_name}", event_name)
        if event_name in ORDER_EVENT_TYPES:
            raise InvalidValue(f"{where}.events.{event_name}", "is a built-in event type")
        for event_field in event_type.fields:
            check_name(f"{where}.events.{event_name}.fields.{event_field.name}", event_field.name)
            if event_field.type not in FIELD_TYPES:
                raise InvalidValue(
                    f"{where}.events.{event_name}.fields.{event_field.name}",
                    f"must be one of {_known(FIELD_TYPES)}",
                )


def _check_declared(name: str, rule: WaitingRule, kinds: frozenset[str]) -> None:
    """A [waiting.K] table on its own (what it waits on is checked per vertical)."""
    where = f"waiting.{name}"
    check_name(where, name)
    if name in RULES:
        raise InvalidValue(where, "is a built-in rule; a declared rule needs its own name")
    if not rule.until:
        raise InvalidValue(f"{where}.until", "name at least one event type")
    if rule.start in rule.until:
        raise InvalidValue(f"{where}.until", f"holds {rule.start!r}, its own from: it never waits")
    if rule.evidence and rule.start in ORDER_EVENT_TYPES:
        raise InvalidValue(
            f"{where}.evidence",
            f"names fields of a declared event; {rule.start!r} is a built-in one",
        )
    _check_tiers("waiting", name, rule.tiers, kinds)


def _check_tiers(where: str, kind: str, tiers: Tiers, kinds: frozenset[str]) -> None:
    """Tiers ascend in threshold and never lower the severity; names are known."""
    if kind not in kinds:
        raise InvalidValue(where, f"unknown rule {kind!r}; known: {_known(kinds)}")
    previous_threshold, previous_rank = -1.0, -1
    for threshold, severity in tiers:
        check_minutes(f"{where}.{kind}", threshold)
        if severity not in SEVERITY_RANK:
            raise InvalidValue(f"{where}.{kind}", f"unknown severity {severity!r}")
        if kind == "courier_reassigned_repeatedly" and threshold < 1:
            raise InvalidValue(f"{where}.{kind}", "counts unassignments: thresholds >= 1")
        if threshold < 0 or threshold <= previous_threshold:
            raise InvalidValue(f"{where}.{kind}", "thresholds must be >= 0 and ascending")
        if SEVERITY_RANK[severity] < previous_rank:
            raise InvalidValue(f"{where}.{kind}", "a later tier cannot lower the severity")
        previous_threshold, previous_rank = threshold, SEVERITY_RANK[severity]


def _known(names: frozenset[str] | Mapping[str, Any]) -> str:
    return ", ".join(sorted(names))
