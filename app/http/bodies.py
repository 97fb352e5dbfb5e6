"""The JSON bodies of the issue commands (``/api/issues``, CONTRACT §5) and the ``If-Match``
header they take.

Every body is a ``Checked`` Struct (``app/edge.py``: its texts PostgreSQL can store, its
times in range) that refuses unknown fields (422); its free-form objects (evidence, action
details) are walked by the controller before they reach the bus.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec
from litestar.params import HeaderParameter

from app.edge import Aware, Checked, Name
from app.http.errors import BadRequest
from domain.values import MAX_TEXT_LENGTH, Action, Resolution, Severity

AgentId = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
# The acting agent is the token's sub (CONTRACT §6): a body may repeat it or leave it out.
ActingAgent = AgentId | None
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT_LENGTH)]
OptionalText = Annotated[str, msgspec.Meta(max_length=MAX_TEXT_LENGTH)]
Country = Annotated[str, msgspec.Meta(pattern="^[A-Z]{2}$")]

# A free-form JSON object (evidence, action details) may encode to at most this many bytes,
# which with the batch size bounds the bytes of one save() (DESIGN.md, "Known traps").
MAX_OBJECT_BYTES = 8192
# The most bytes a command body may take: the longest text (4,000 characters, each up to
# twelve bytes as a JSON escape) or object, with room for whitespace. A larger one is
# refused (413) before it is read.
MAX_COMMAND_BODY = 256 * 1024


class ReportIssue(Checked, forbid_unknown_fields=True):
    order_id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    kind: Name
    severity: Severity
    vertical: Name
    country: Country
    city: Annotated[str, msgspec.Meta(max_length=200)] = ""
    evidence: dict[str, Any] = msgspec.field(default_factory=dict)
    agent_id: ActingAgent = None


class Escalate(Checked, forbid_unknown_fields=True):
    severity: Severity
    reason: Text
    agent_id: ActingAgent = None


class Assign(Checked, forbid_unknown_fields=True):
    assignee: AgentId | None = None
    agent_id: ActingAgent = None


class ActorOnly(Checked, forbid_unknown_fields=True):
    agent_id: ActingAgent = None


class AddNote(Checked, forbid_unknown_fields=True):
    text: Text
    agent_id: ActingAgent = None


class TakeAction(Checked, forbid_unknown_fields=True):
    action: Action
    details: dict[str, Any] = msgspec.field(default_factory=dict)
    agent_id: ActingAgent = None


class Snooze(Checked, forbid_unknown_fields=True):
    until: Aware
    agent_id: ActingAgent = None


class Resolve(Checked, forbid_unknown_fields=True):
    resolution: Resolution
    note: OptionalText = ""
    agent_id: ActingAgent = None


class Reopen(Checked, forbid_unknown_fields=True):
    reason: Text
    agent_id: ActingAgent = None


# ``*`` or a version, quoted or not (a weak ETag's W/ allowed); the header declares it too.
_IF_MATCH = re.compile(r'^[ \t]*(?:\*|(?:W/)?"?([0-9]{1,18})"?)[ \t]*$')

# "*" (the default, as no header): any version.
IfMatch = Annotated[
    str,
    HeaderParameter(
        name="If-Match",
        required=False,
        description='Expected version, e.g. "3" (``*`` or no header: any version)',
        # Documented only: expected_version checks it, naming the header when it fails.
        schema_extra={"pattern": _IF_MATCH.pattern},
    ),
]


def expected_version(if_match: str) -> int | None:
    """The version an ``If-Match`` header names; None for ``*``: any version."""
    found = _IF_MATCH.match(if_match)
    if found is None:
        raise BadRequest("If-Match", 'must be a version in quotes, e.g. "3", or *')
    return None if found.group(1) is None else int(found.group(1))
