"""Where a caller may look and act (CONTRACT §6): the verticals and countries its token
names. Every read takes one (``app/queries.py``, ``app/history.py``: enforced in the SQL
that reads the rows) and every command carries one (``app/commands.py``: checked by the
issue service before it acts). Outside it, an issue is treated as unknown."""

from __future__ import annotations

import json
from dataclasses import dataclass

from app.principal import Principal


@dataclass(frozen=True)
class Scope:
    """The verticals and countries in scope (None: every one; an empty set: none)."""

    verticals: frozenset[str] | None = None
    countries: frozenset[str] | None = None

    @classmethod
    def of(cls, principal: Principal) -> Scope:
        return cls(principal.verticals, principal.countries)

    @property
    def everywhere(self) -> bool:
        return self.verticals is None and self.countries is None

    def sees(self, vertical: str, country: str) -> bool:
        """Whether an issue (or order) of this vertical and country is in scope."""
        return self.outside(vertical, country) is None

    def outside(self, vertical: str, country: str) -> str | None:
        """The field that puts an issue of this vertical and country out of scope
        (``vertical`` first), or None when it is in scope."""
        if self.verticals is not None and vertical not in self.verticals:
            return "vertical"
        if self.countries is not None and country not in self.countries:
            return "country"
        return None

    def key(self) -> str:
        """A text naming the scope, the same for the same scope and different for any
        other (JSON: no value can pass for a separator), for a cache key."""
        bounds = (self.verticals, self.countries)
        return json.dumps([None if allowed is None else sorted(allowed) for allowed in bounds])


# The system's scope (the detector, the waker) and an unscoped token's.
EVERYWHERE = Scope()
