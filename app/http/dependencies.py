"""What the HTTP layer is given to work with, and how its routes receive it.

``create_app`` takes ``Services``: the built pieces the routes use. The composition root's
container (``app/bootstrap.Container``) is one; the HTTP layer never imports the composition
root. A route asks for a piece by name and type (``read_models: NamedDependency[ReadModels]``),
from the dependencies :func:`provide` declares.
"""

from __future__ import annotations

from typing import Protocol

from litestar.di import Provide
from nats.aio.client import Client as NATS

from adapters.clock import Clock
from app.bus import CommandBus
from app.detection import Detector
from app.history import History
from app.http.reads import filters
from app.ports import LoginTickets
from app.queries import Positions, ReadModels
from app.rules_source import RulesSource
from app.service import IssueService
from app.settings import Settings


class Services(Protocol):
    """The built pieces the HTTP routes use (their owner closes them)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def nats(self) -> NATS: ...
    @property
    def issues(self) -> IssueService: ...
    @property
    def bus(self) -> CommandBus: ...
    @property
    def history(self) -> History: ...
    @property
    def read_models(self) -> ReadModels: ...
    @property
    def positions(self) -> Positions: ...
    @property
    def detector(self) -> Detector: ...
    @property
    def login_tickets(self) -> LoginTickets: ...
    @property
    def rules(self) -> RulesSource: ...


def _value(value: object) -> Provide:
    def provide() -> object:
        return value

    return Provide(provide, use_cache=True, sync_to_thread=False)


def provide(services: Services) -> dict[str, Provide]:
    """The app's dependencies, by the names the routes ask for them."""
    return {
        "settings": _value(services.settings),
        "clock": _value(services.clock),
        "nats": _value(services.nats),
        "issue_service": _value(services.issues),
        "command_bus": _value(services.bus),
        "history": _value(services.history),
        "read_models": _value(services.read_models),
        "positions": _value(services.positions),
        "detector": _value(services.detector),
        "login_tickets": _value(services.login_tickets),
        "rules_source": _value(services.rules),
        "filters": Provide(filters, sync_to_thread=False),
    }
