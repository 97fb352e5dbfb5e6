"""``/api/issues``: the inbox (the list), one issue as the inbox shows it, raise, triage and
audit one issue (CONTRACT §5).

Command handlers are thin: parse the body (a msgspec Struct of ``app/http/bodies.py``),
name the acting agent, hand one named command (``app/commands.py``) to the bus, map the
result. The free-form objects of the bodies (evidence, action details) are walked at the
edge (``domain.values.check_object``: keys, values, depth) before they reach the bus.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Response, get, post
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency, Provide
from litestar.exceptions import PermissionDeniedException
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from prometheus_client import Counter

from app import commands as use_cases
from app.detection import Detector
from app.history import History
from app.http import cache, openapi
from app.http.access import may_assign_others
from app.http.auth import actor
from app.http.bodies import (
    MAX_COMMAND_BODY,
    MAX_OBJECT_BYTES,
    ActorOnly,
    AddNote,
    Assign,
    Escalate,
    IfMatch,
    Reopen,
    ReportIssue,
    Resolve,
    Snooze,
    TakeAction,
    expected_version,
)
from app.http.errors import NotFound, Unprocessable
from app.http.idempotency import Commands, commands
from app.http.reads import InboxItem, MinPosition, caught_up, inbox_item
from app.integration import EventItem, IssueView, issue_view
from app.principal import Principal
from app.queries import Filters, Positions, ReadModels, Sort
from app.scope import Scope
from app.settings import Settings
from domain.values import check_object

COMMANDS = Counter("inbox_commands_total", "Commands by name and outcome", ["command", "outcome"])


# GET /api/issues: the read model's position the page reflects at least.
POSITION_HEADER = "Inbox-Position"


class CommandAccepted(msgspec.Struct):
    issue_id: UUID
    version: int
    position: int


class InboxPage(msgspec.Struct):
    items: list[InboxItem]
    next_cursor: str | None


class EventPage(msgspec.Struct):
    items: list[EventItem]


def _check_object(field: str, value: dict[str, Any]) -> None:
    check_object(field, value)  # before encoding: it bounds the depth
    if len(msgspec.json.encode(value)) > MAX_OBJECT_BYTES:
        raise Unprocessable(field, f"must encode to at most {MAX_OBJECT_BYTES} bytes of JSON")


async def _send(
    bus: Commands, command: use_cases.Command, counter: Counter = COMMANDS
) -> CommandAccepted:
    try:
        result = await bus.submit(command)
    except Exception as exc:
        counter.labels(command.name, type(exc).__name__).inc()
        raise
    counter.labels(command.name, "ok").inc()
    return CommandAccepted(result.issue_id, result.version, result.position)


def assignee(caller: Principal, named: str | None) -> str:
    """Whom an ``assign`` gives the issue to: the caller when the body names no one; an
    agent may take an issue, only a lead (or admin) may give it to someone else (403)."""
    if named is None or named == caller.sub:
        return caller.sub
    if not may_assign_others(caller):
        raise PermissionDeniedException("an agent may assign an issue only to itself")
    return named


class IssueController(Controller):
    path = "/api/issues"
    tags = ["issues"]
    request_max_body_size = MAX_COMMAND_BODY
    # Every command's bus carries the request's Idempotency-Key.
    dependencies = {"bus": Provide(commands)}

    @get(
        "/",
        summary="The inbox: filtered, sorted, keyset-paginated",
        cache=True,
        cache_key_builder=cache.keyed_by("inbox", single=("sort", "limit", "cursor")),
        responses=openapi.read(),
        response_headers=[
            ResponseHeader(
                name=POSITION_HEADER,
                description="The inbox read model's position the page reflects at least",
                documentation_only=True,
            )
        ],
    )
    async def list_issues(
        self,
        filters: NamedDependency[Filters],
        read_models: NamedDependency[ReadModels],
        positions: NamedDependency[Positions],
        settings: NamedDependency[Settings],
        sort: FromQuery[Sort] = "priority",
        limit: Annotated[int, openapi.bounded(1, 200)] = 50,
        cursor: Annotated[str | None, QueryParameter(max_length=400)] = None,
        min_position: MinPosition = 0,
    ) -> Response[InboxPage]:
        """The page reflects at least the inbox read model's position in the header
        ``Inbox-Position`` (taken before the read): a client opening ``/api/stream`` with
        ``after`` it misses no change made since the page."""
        await caught_up(positions, settings, "inbox", min_position)
        reached = max(positions.known("inbox"), min_position)
        rows, next_cursor = await read_models.issues(filters, sort, limit, cursor)
        page = InboxPage([inbox_item(row) for row in rows], next_cursor)
        return Response(page, headers={POSITION_HEADER: str(reached)})

    @get(
        "/{issue_id:uuid}",
        summary="One issue's current state",
        responses=openapi.read(by_id=True),
    )
    async def get_issue(
        self,
        issue_id: FromPath[UUID],
        caller: NamedDependency[Principal],
        read_models: NamedDependency[ReadModels],
        positions: NamedDependency[Positions],
        settings: NamedDependency[Settings],
        min_position: MinPosition = 0,
    ) -> Response[InboxItem]:
        await caught_up(positions, settings, "inbox", min_position)
        row = await read_models.issue(issue_id, Scope.of(caller))
        if row is None:
            raise NotFound(f"issue {issue_id} not found")
        return Response(inbox_item(row), headers={"ETag": f'"{row["version"]}"'})

    @post(
        "/",
        status_code=201,
        summary="Raise an issue by hand",
        responses=openapi.command(by_id=False, if_match=False),
    )
    async def report(
        self,
        data: JSONBody[ReportIssue],
        bus: NamedDependency[Commands],
        caller: NamedDependency[Principal],
        detector: NamedDependency[Detector],
    ) -> CommandAccepted:
        _check_object("evidence", data.evidence)
        rules = detector.rules
        if data.vertical not in rules.verticals:
            declared = ", ".join(sorted(rules.verticals))
            raise Unprocessable("vertical", f"not declared in the rules file; declared: {declared}")
        if data.kind not in rules.kinds:
            raise Unprocessable("kind", f"unknown; known: {', '.join(sorted(rules.kinds))}")
        return await _send(
            bus,
            use_cases.Report(
                actor=actor(caller, data.agent_id),
                actor_name=caller.name,
                order_id=data.order_id,
                kind=data.kind,
                severity=data.severity,
                vertical=data.vertical,
                country=data.country,
                city=data.city,
                evidence=data.evidence,
                sla_minutes=dict(rules.verticals[data.vertical].sla_minutes),
            ),
        )

    @post("/{issue_id:uuid}/escalate", status_code=200, responses=openapi.command())
    async def escalate(
        self,
        issue_id: FromPath[UUID],
        data: JSONBody[Escalate],
        bus: NamedDependency[Commands],
        caller: NamedDependency[Principal],
        if_match: IfMatch = "*",
    ) -> CommandAccepted:
        return await _send(
            bus,
            use_cases.Escalate(
                issue_id=issue_id,
                actor=actor(caller, data.agent_id),
                actor_name=caller.name,
                severity=data.severity,
                evidence={"escalation_reason": data.reason},
                expected_version=expected_version(if_match),
            ),
        )

    @post("/{issue_id:uuid}/assign", status_code=200, responses=openapi.command())
    async def assign(
        self,
        issue_id: FromPath[UUID],
        data: JSONBody[Assign],
        bus: NamedDependency[Commands],
        caller: NamedDependency[Principal],
        if_match: IfMatch = "*",
    ) -> CommandAccepted:
        return await _send(
            bus,
            use_cases.Assign(
                issue_id=issue_id,
                actor=actor(caller, data.agent_id),
                actor_name=caller.name,
                assignee=assignee(caller, data.assignee),
                expected_version=expected_version(if_match),
            ),
        )

    @post("/{issue_id:uuid}/unassign", status_code=200, responses=openapi.command())
    async def unassign(
        self,
        issue_id: FromPath[UUID],
        data: JSONBody[ActorOnly],
        bus: NamedDependency[Commands],
        caller: NamedDependency[Principal],
        if_match: IfMatch = "*",
    ) -> CommandAccepted:
        return await _send(
            bus,
            use_cases.Unassign(
                issue_id=issue_id,
                actor=actor(caller, data.agent_id),
                actor_name=caller.name,
                expected_version=expected_version(if_match),
            ),
        )

    @post("/{issue_id:uuid}/acknowledge", status_code=200, responses=openapi.command())
    async def acknowledge(
        self,
        issue_id: FromPath[UUID],
        data: JSONBody[ActorOnly],
        bus: NamedDependency[Commands],
        caller: NamedDependency[Principal],
        if_match: IfMatch = "*",
    ) -> CommandAccepted:
        return await _send(
            bus,
            use_cases.Acknowledge(
                issue_id=issue_id,
                actor=actor(caller, data.agent_id),
                actor_name=caller.name,
                expected_version=expected_version(if_match),
            ),
        )

    @post("/{issue_id:uuid}/notes", status_code=200, responses=openapi.command())
    async def add_note(
        self,
        issue_id: FromPath[UUID],
        data: JSONBody[AddNote],
        bus: NamedDependency[Commands],
        caller: NamedDependency[Principal],
        if_match: IfMatch = "*",
    ) -> CommandAccepted:
        return await _send(
            bus,
            use_cases.AddNote(
                issue_id=issue_id,
                actor=actor(caller, data.agent_id),
                actor_name=caller.name,
                text=data.text,
                expected_version=expected_version(if_match),
            ),
        )

    @post("/{issue_id:uuid}/actions", status_code=200, responses=openapi.command())
    async def take_action(
        self,
        issue_id: FromPath[UUID],
        data: JSONBody[TakeAction],
        bus: NamedDependency[Commands],
        caller: NamedDependency[Principal],
        if_match: IfMatch = "*",
    ) -> CommandAccepted:
        _check_object("details", data.details)
        return await _send(
            bus,
            use_cases.TakeAction(
                issue_id=issue_id,
                actor=actor(caller, data.agent_id),
                actor_name=caller.name,
                action=data.action,
                details=data.details,
                expected_version=expected_version(if_match),
            ),
        )

    @post("/{issue_id:uuid}/snooze", status_code=200, responses=openapi.command())
    async def snooze(
        self,
        issue_id: FromPath[UUID],
        data: JSONBody[Snooze],
        bus: NamedDependency[Commands],
        caller: NamedDependency[Principal],
        if_match: IfMatch = "*",
    ) -> CommandAccepted:
        return await _send(
            bus,
            use_cases.Snooze(
                issue_id=issue_id,
                actor=actor(caller, data.agent_id),
                actor_name=caller.name,
                until=data.until,
                expected_version=expected_version(if_match),
            ),
        )

    @post("/{issue_id:uuid}/wake", status_code=200, responses=openapi.command())
    async def wake(
        self,
        issue_id: FromPath[UUID],
        data: JSONBody[ActorOnly],
        bus: NamedDependency[Commands],
        caller: NamedDependency[Principal],
        if_match: IfMatch = "*",
    ) -> CommandAccepted:
        return await _send(
            bus,
            use_cases.Wake(
                issue_id=issue_id,
                actor=actor(caller, data.agent_id),
                actor_name=caller.name,
                expected_version=expected_version(if_match),
            ),
        )

    @post("/{issue_id:uuid}/resolve", status_code=200, responses=openapi.command())
    async def resolve(
        self,
        issue_id: FromPath[UUID],
        data: JSONBody[Resolve],
        bus: NamedDependency[Commands],
        caller: NamedDependency[Principal],
        if_match: IfMatch = "*",
    ) -> CommandAccepted:
        return await _send(
            bus,
            use_cases.Resolve(
                issue_id=issue_id,
                actor=actor(caller, data.agent_id),
                actor_name=caller.name,
                resolution=data.resolution,
                note=data.note,
                expected_version=expected_version(if_match),
            ),
        )

    @post("/{issue_id:uuid}/reopen", status_code=200, responses=openapi.command())
    async def reopen(
        self,
        issue_id: FromPath[UUID],
        data: JSONBody[Reopen],
        bus: NamedDependency[Commands],
        caller: NamedDependency[Principal],
        if_match: IfMatch = "*",
    ) -> CommandAccepted:
        return await _send(
            bus,
            use_cases.Reopen(
                issue_id=issue_id,
                actor=actor(caller, data.agent_id),
                actor_name=caller.name,
                reason=data.reason,
                expected_version=expected_version(if_match),
            ),
        )

    @get(
        "/{issue_id:uuid}/events",
        summary="One issue's full history, oldest first",
        responses=openapi.read(by_id=True),
    )
    async def events(
        self,
        issue_id: FromPath[UUID],
        caller: NamedDependency[Principal],
        history: NamedDependency[History],
    ) -> EventPage:
        items = await history.issue_history(issue_id, Scope.of(caller))
        if not items:
            raise NotFound(f"issue {issue_id} not found")
        return EventPage(items)

    @get(
        "/{issue_id:uuid}/state",
        summary="One issue's state as it was at a version",
        responses=openapi.read(by_id=True),
    )
    async def state(
        self,
        issue_id: FromPath[UUID],
        caller: NamedDependency[Principal],
        history: NamedDependency[History],
        version: Annotated[int, openapi.bounded(1, 10**12)],
    ) -> Response[IssueView]:
        issue = await history.issue_state(issue_id, Scope.of(caller), version)
        if issue is None:
            raise NotFound(f"issue {issue_id} not found")
        if issue.version < version:
            raise NotFound(f"issue {issue_id} has no version {version} (latest {issue.version})")
        return Response(issue_view(issue), headers={"ETag": f'"{issue.version}"'})
