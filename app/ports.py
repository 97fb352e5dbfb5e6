"""The ports: what the detector (and the login of a browser) need of storage, as small
Protocols.

The real adapters are ``adapters/watch.py``, ``adapters/dead_letters.py`` and
``adapters/login_tickets.py`` (PostgreSQL);
the in-memory fakes are in ``tests/unit/fakes.py``; ``tests/watch_contract.py`` holds the
contract both must keep. The values in and out are the adapters' plain Structs.
"""

from __future__ import annotations

from collections.abc import Collection, MutableMapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable
from uuid import UUID

from adapters.dead_letters import DeadLetter, Rejected
from adapters.watch import (
    BrokenOrder,
    StoredEvent,
    SupportContact,
    SweptWatch,
    WatchRow,
    WatchUpdate,
)
from app.commands import Command
from app.service import Outcome
from domain.issue import OrderIssue
from domain.order import OrderEvent

__all__ = [
    "BrokenOrder",
    "DeadLetter",
    "DeadLetterStore",
    "IssueCommands",
    "LoginTickets",
    "Rejected",
    "StoredEvent",
    "SupportContact",
    "SweptWatch",
    "WatchBatch",
    "WatchRow",
    "WatchStore",
    "WatchUpdate",
]


class WatchBatch(Protocol):
    """One batch's transaction on its locked watch rows: what it writes is kept only if
    the block that holds it ends without an exception."""

    @property
    def rows(self) -> list[WatchRow]:
        """The locked rows, as they stood."""
        ...

    async def insert_events(self, events: Sequence[OrderEvent]) -> set[tuple[str, str]]:
        """Store the events; the (order id, event id) of those never stored before."""
        ...

    async def events_of(self, order_ids: Collection[str]) -> list[StoredEvent]:
        """Every stored event of these orders."""
        ...

    async def issue_versions(self, issue_ids: Sequence[UUID]) -> dict[UUID, int]:
        """The latest version of each of these issues that exists."""
        ...

    async def record_contacts(self, contacts: Sequence[SupportContact]) -> None:
        """Keep each support contact once."""
        ...

    async def store(self, updates: Sequence[WatchUpdate], broken: Sequence[BrokenOrder]) -> None:
        """Write the watch rows back; drop the state of the broken orders."""
        ...


class WatchStore(Protocol):
    def lock(self, order_ids: Sequence[str]) -> AbstractAsyncContextManager[WatchBatch]:
        """A batch holding the rows of ``order_ids`` (sorted; created where missing, then
        ``created``), locked in order-id order: a second batch naming one of them waits."""
        ...

    def claim_due(self, now: datetime, limit: int) -> AbstractAsyncContextManager[WatchBatch]:
        """A batch holding up to ``limit`` rows whose timer is due at ``now``, earliest
        first; rows another batch holds are skipped, not waited for."""
        ...

    async def sweep(self, *, orders: timedelta, contacts: timedelta, batch: int) -> SweptWatch:
        """Delete orders unchanged for ``orders`` (row and events) and support contacts
        older than ``contacts``."""
        ...


class DeadLetterStore(Protocol):
    async def park(self, letters: Sequence[Rejected]) -> None: ...

    async def list(self, limit: int) -> list[DeadLetter]:
        """The oldest ``limit`` parked events, oldest first."""
        ...

    async def delete(self, letter_id: int) -> None: ...

    async def sweep(self, *, older_than: timedelta, batch: int) -> int:
        """Delete what was parked longer ago than ``older_than``; how many."""
        ...


class IssueCommands(Protocol):
    """What the detector needs of the issue service (``app/service.IssueService``)."""

    def current(self, issue_ids: set[UUID]) -> dict[UUID, OrderIssue]:
        """The issues among ``issue_ids`` that exist, as they stand."""
        ...

    def execute_batch(
        self,
        commands: Sequence[Command],
        preloaded: MutableMapping[UUID, OrderIssue | None] | None = None,
    ) -> list[Outcome]:
        """Each command's outcome, in order; ``preloaded`` as IssueService says."""
        ...


@runtime_checkable  # a route's dependency: Litestar checks its type
class LoginTickets(Protocol):
    """The one-time login tickets used so far (``POST /api/session`` with a ticket)."""

    async def use(self, jti: str) -> bool:
        """Mark the ticket ``jti`` used: True the first time, False ever after."""
        ...
