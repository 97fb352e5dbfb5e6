"""Who is calling (CONTRACT §6): the checked claims of a token, as the HTTP layer hands
them to the application. Nothing here reads a token; ``app/http/auth.py`` does that."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Role = Literal["agent", "lead", "auditor", "service", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)


@dataclass(frozen=True)
class Principal:
    """The caller: ``sub`` acts in every command it sends; ``verticals`` and ``countries``
    bound what it may see (None: all of them)."""

    sub: str
    role: Role
    name: str | None = None
    verticals: frozenset[str] | None = None
    countries: frozenset[str] | None = None

    def sees(self, vertical: str, country: str) -> bool:
        """Whether an issue of this vertical and country is in scope."""
        return (self.verticals is None or vertical in self.verticals) and (
            self.countries is None or country in self.countries
        )

    @property
    def unscoped(self) -> bool:
        return self.verticals is None and self.countries is None
