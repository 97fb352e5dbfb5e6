"""``/api/rules``: the rules version this process judges with and the active one
(``/status``), and making the deployed rules file live everywhere (``/reload``, what
SIGHUP does: app/rules_source.py)."""

from __future__ import annotations

from datetime import datetime

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec

from app.http import openapi
from app.principal import Principal
from app.rules_source import RulesSource


class RulesFailureBody(msgspec.Struct):
    message: str  # the RulesError: it names the file, the table and the key
    at: datetime


class RulesStatus(msgspec.Struct):
    version: str  # the version this process judges with
    source: str  # the file it was read from
    active_version: str | None  # the version active everywhere (None: none yet)
    activated_at: datetime | None
    activated_by: str | None
    last_error: RulesFailureBody | None  # why the last reload here was refused


class ReloadResult(msgspec.Struct):
    version: str  # active now, here and (once they follow) everywhere
    previous: str | None  # active before
    changed: bool


def failure(rules: RulesSource) -> RulesFailureBody | None:
    error = rules.last_error
    return None if error is None else RulesFailureBody(error.message, error.at)


class RulesAdminController(Controller):
    path = "/api/rules"
    tags = ["rules"]

    @get(
        "/status",
        summary="The rules version here and the active one; why a reload failed",
        responses=openapi.read(),
    )
    async def status(self, rules_source: NamedDependency[RulesSource]) -> RulesStatus:
        active = await rules_source.active()
        return RulesStatus(
            version=rules_source.current.version,
            source=rules_source.source,
            active_version=active.version if active else None,
            activated_at=active.activated_at if active else None,
            activated_by=active.activated_by if active else None,
            last_error=failure(rules_source),
        )

    @post(
        "/reload",
        status_code=200,
        summary="Read and validate the rules file; valid, make it the active version",
        responses={
            # As any body-taking route (none is read: a body is ignored), with its own 422.
            **openapi.ingest(),
            422: ResponseSpec(
                openapi.ErrorBody,
                description="The rules file is invalid (`detail` names the file, the table"
                " and the key); the running rules stay",
                generate_examples=False,
            ),
        },
    )
    async def reload(
        self, rules_source: NamedDependency[RulesSource], caller: NamedDependency[Principal]
    ) -> ReloadResult:
        done = await rules_source.activate_file(f"POST /api/rules/reload by {caller.sub}")
        return ReloadResult(done.version, done.previous, done.changed)
