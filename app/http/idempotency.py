"""The command bus as a request sees it: each command carries the caller's scope
(CONTRACT §6; the issue service treats an issue outside it as unknown), and the
request's ``Idempotency-Key``.

``Idempotency-Key`` on commands: a client that retries (after a 503, a timeout, a lost
connection) sends the same key, and gets the first outcome instead of a second effect.

The key travels with the command to the event store (``app/service.py``), which stores it
in the transaction of the command's event; a refusal (4xx) is kept beside it, so a repeat
gets the same answer. A key is remembered for ``INBOX_IDEMPOTENCY_WINDOW_HOURS``; the same
key with a different request (method, path, ``If-Match``, body, caller and its scope) is
422: another caller's key never answers with that caller's outcome.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import re
from dataclasses import dataclass
from typing import Annotated, Any

import anyio.to_thread
from litestar import Request as HttpRequest
from litestar.di import NamedDependency
from litestar.params import HeaderParameter

from adapters.loops import wait_or_stop
from app.bus import CommandBus
from app.commands import Command, Request
from app.errors import IssueAlreadyExists, VersionMismatch
from app.http.errors import BadRequest, refusal
from app.principal import Principal
from app.scope import EVERYWHERE, Scope
from app.service import CommandResult, IssueService, Outcome
from domain.errors import InvalidValue, TransitionNotAllowed

log = logging.getLogger(__name__)

# The refusals a key keeps: answers about the request itself, which a repeat of the same
# request would get again. Not "not found" (the issue may still be on its way, raised by a
# command answered 503), nor a conflict with another writer, nor unavailability.
REMEMBERED = (InvalidValue, TransitionNotAllowed, VersionMismatch, IssueAlreadyExists)

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
# Visible ASCII: what a header carries unchanged and a text column stores.
_KEY = re.compile(rf"^[\x21-\x7e]{{1,{MAX_KEY_LENGTH}}}$")

IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name=HEADER,
        required=False,
        description="A key of the client's choosing (e.g. a UUID), the same on every retry of"
        " one command: a repeat within the window gets the first answer and is applied once",
        # Documented only: commands() checks it, naming the header when it fails.
        schema_extra={"pattern": _KEY.pattern},
    ),
]


@dataclass(frozen=True)
class Commands:
    """The command bus as one HTTP request sees it: its command carries the caller's
    scope and the request's idempotency key, and a refusal is remembered for the key's
    repeats."""

    bus: CommandBus
    issues: IssueService
    request: Request | None = None
    scope: Scope = EVERYWHERE

    async def submit(self, command: Command) -> CommandResult:
        command = dataclasses.replace(command, scope=self.scope)
        if self.request is None:
            return await self.bus.submit(command)
        try:
            return await self.bus.submit(dataclasses.replace(command, request=self.request))
        except REMEMBERED as exc:
            refused = refusal(exc)
            assert refused is not None
            first = await self._remember(*refused)
            if isinstance(first, CommandResult):
                return first
            if first is not None:
                raise first from None
            raise

    async def _remember(self, status_code: int, body: dict[str, Any]) -> Outcome | None:
        """The key's first outcome if another attempt stored one first, else None."""
        assert self.request is not None
        try:
            outcome: Outcome | None = await anyio.to_thread.run_sync(
                self.issues.remember_refusal, self.request, status_code, body
            )
        except Exception:
            # The refusal is still answered; a repeat is judged afresh (nothing was applied).
            log.exception("could not remember the refusal of an idempotency key")
            return None
        return outcome


async def commands(
    request: HttpRequest[Any, Any, Any],
    caller: NamedDependency[Principal],
    command_bus: NamedDependency[CommandBus],
    issue_service: NamedDependency[IssueService],
    idempotency_key: IdempotencyKey,
) -> Commands:
    """The dependency ``bus`` of the command routes."""
    scope = Scope.of(caller)
    if idempotency_key is None:
        return Commands(command_bus, issue_service, scope=scope)
    if not _KEY.match(idempotency_key):
        raise BadRequest(HEADER, f"must be 1 to {MAX_KEY_LENGTH} visible ASCII characters")
    digest = hashlib.sha256()
    # The caller is part of what was asked: the body may leave the actor out (it is the
    # token's sub), and a key must not replay one caller's outcome to another.
    asked = (request.method, request.url.path, request.headers.get("if-match") or "")
    for part in (*asked, caller.sub, scope.key()):
        digest.update(part.encode())
        digest.update(b"\0")
    digest.update(await request.body())
    return Commands(command_bus, issue_service, Request(idempotency_key, digest.hexdigest()), scope)


SWEEP_SECONDS = 600.0


async def sweep_forever(issues: IssueService, stop: asyncio.Event) -> None:
    """Delete expired keys now and then every ``SWEEP_SECONDS`` (each API replica; they
    skip each other's rows). Expired keys are ignored before they are swept."""
    while not stop.is_set():
        try:
            swept = await anyio.to_thread.run_sync(issues.sweep_requests)
        except Exception:
            log.exception("idempotency keys: sweep failed; trying again later")
        else:
            if swept:
                log.info("idempotency keys: %d expired keys deleted", swept)
        await wait_or_stop(stop, SWEEP_SECONDS)
