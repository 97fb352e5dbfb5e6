"""The rules a process judges with: one immutable :class:`domain.ruleset.RuleSet` at a
time, swapped whole (a batch of events takes ``current`` once, so no event is judged by a
half-loaded file)."""

from __future__ import annotations

from domain.ruleset import RuleSet


class RulesSource:
    def __init__(self, rules: RuleSet) -> None:
        self._current = rules

    @property
    def current(self) -> RuleSet:
        return self._current

    def swap(self, rules: RuleSet) -> None:
        self._current = rules
