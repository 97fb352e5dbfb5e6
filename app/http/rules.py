"""``GET /api/rules``: the rules this API process judges with now (``Detector.rules``, one
:class:`domain.ruleset.RuleSet`): the verticals, the kinds of issue and where each applies,
the declared waiting rules, and the version (the rules file's content hash).

The page takes its filter choices from here rather than from a list of its own, so a
vertical or a kind the rules file declares shows without a release. The answer is a
function of the version alone: it carries ``ETag: "<version>"`` and
``Cache-Control: no-cache``, so a client keeps its copy and revalidates it with
``If-None-Match`` (304, no body, while the rules are unchanged).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, cast

import msgspec
from litestar import Controller, Response, get
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import HeaderParameter

from app.detection import Detector
from app.http import openapi
from app.http.errors import BadRequest
from domain.rules import RULES
from domain.ruleset import DeliveryModel, RuleSet, Vertical
from domain.values import SEVERITIES, Severity

# A declared event's data field: its type, with a trailing ? when it may be left out (as
# the rules file writes it).
FieldSpec = Literal[
    "text",
    "text?",
    "time",
    "time?",
    "integer",
    "integer?",
    "number",
    "number?",
    "boolean",
    "boolean?",
]


class RulesVertical(msgspec.Struct, kw_only=True):
    name: str
    delivery: DeliveryModel  # whose couriers deliver: marketplace, own_staff or pickup
    rules: list[str]  # the kinds of issue that apply to its orders, sorted
    sla_minutes: dict[Severity, float]  # minutes from detection to the SLA, per severity
    # The event types it sends besides the built-in ones: their data fields and types.
    events: dict[str, dict[str, FieldSpec]]


class RulesKind(msgspec.Struct, kw_only=True):
    name: str
    declared: bool  # a rule the rules file declares ([waiting.*]), not a built-in one
    verticals: list[str]  # the verticals it applies to (in the file's order)


class RulesWaiting(msgspec.Struct, kw_only=True, rename={"start": "from"}):
    """A declared waiting rule: holds from the latest ``from`` event until an ``until``
    event (or the order's end); each tier is [minutes since ``from``, severity]."""

    name: str
    start: str
    until: list[str]
    tiers: list[tuple[float, Severity]]
    evidence: list[str]  # the ``from`` event's data fields shown with its issue


class Rules(msgspec.Struct, kw_only=True):
    version: str  # the rules file's content hash, recorded on every event the detector causes
    verticals: list[RulesVertical]  # in the file's order
    kinds: list[RulesKind]  # the built-in rules, then the declared ones
    waiting: list[RulesWaiting]


def _vertical(spec: Vertical) -> RulesVertical:
    return RulesVertical(
        name=spec.name,
        delivery=spec.delivery,
        rules=sorted(spec.rules),
        sla_minutes={severity: float(spec.sla_minutes[severity]) for severity in SEVERITIES},
        events={
            name: {
                one.name: cast(FieldSpec, one.type + ("" if one.required else "?"))
                for one in event.fields
            }
            for name, event in spec.events.items()
        },
    )


def rules_view(rules: RuleSet) -> Rules:
    verticals = list(rules.verticals.values())
    kinds = [*RULES, *rules.waiting]  # a declared rule never takes a built-in one's name
    return Rules(
        version=rules.version,
        verticals=[_vertical(spec) for spec in verticals],
        kinds=[
            RulesKind(
                name=kind,
                declared=kind in rules.waiting,
                verticals=[spec.name for spec in verticals if kind in spec.rules],
            )
            for kind in kinds
        ],
        waiting=[
            RulesWaiting(
                name=name,
                start=rule.start,
                until=list(rule.until),
                tiers=[(float(at), cast(Severity, severity)) for at, severity in rule.tiers],
                evidence=list(rule.evidence),
            )
            for name, rule in rules.waiting.items()
        ],
    )


# RFC 9110 §13.1.2: "*", or entity tags (weak or strong) separated by commas; bounded.
_ENTITY_TAG = r'(?:W/)?"[\x21\x23-\x7e]{0,64}"'
# Empty, as no header: the copy the client has, if any, is not this version's. (Matched
# without the whitespace around it, which HTTP drops.)
_IF_NONE_MATCH = re.compile(rf"^(?:\*|{_ENTITY_TAG}(?:[ \t]*,[ \t]*{_ENTITY_TAG}){{0,15}})?$")
_TAG = re.compile(r'(?:W/)?"([^"]*)"')

IfNoneMatch = Annotated[
    str,
    HeaderParameter(
        name="If-None-Match",
        required=False,
        description='The ETag of a copy the client has, e.g. "9cc5e3a1b2c4d5e6": 304 while '
        "the rules are still that version",
        # Documented only: the handler checks it, naming the header when it fails.
        schema_extra={"pattern": _IF_NONE_MATCH.pattern, "maxLength": 1200},
    ),
]


def _unchanged(if_none_match: str, version: str) -> bool:
    """Whether ``If-None-Match`` names this version (weak comparison, as for a GET)."""
    given = if_none_match.strip(" \t")
    if len(given) > 1200 or _IF_NONE_MATCH.match(given) is None:
        raise BadRequest("If-None-Match", 'must be "*" or entity tags such as "9cc5e3a1b2c4d5e6"')
    return given == "*" or version in _TAG.findall(given)


def _responses() -> dict[int, ResponseSpec]:
    return {
        304: ResponseSpec(None, description="Not modified: the rules are still that version"),
        **openapi.read(),
    }


class RulesController(Controller):
    path = "/api/rules"
    tags = ["rules"]

    @get(
        "/",
        summary="The rules this process judges with now",
        responses=_responses(),
        response_headers=[
            ResponseHeader(
                name="ETag", documentation_only=True, description="The rules version, quoted"
            ),
            ResponseHeader(
                name="Cache-Control",
                documentation_only=True,
                description="no-cache: keep a copy, revalidate it with If-None-Match",
            ),
        ],
    )
    async def current(
        self, detector: NamedDependency[Detector], if_none_match: IfNoneMatch = ""
    ) -> Response[Rules]:
        """The verticals (delivery model, the kinds that apply, SLA minutes, declared event
        types), every kind of issue (built-in or declared, and the verticals it applies to)
        and the declared waiting rules, of the version the detector of this process judges
        with. ``ETag`` is the version; with ``If-None-Match`` of it, 304 without a body."""
        rules = detector.rules  # taken once: a reload swaps the whole set
        headers = {"ETag": f'"{rules.version}"', "Cache-Control": "no-cache"}
        if _unchanged(if_none_match, rules.version):
            # No body: Litestar sends none with a 304, whatever the content.
            return Response(cast(Any, None), status_code=304, headers=headers)
        return Response(rules_view(rules), headers=headers)
