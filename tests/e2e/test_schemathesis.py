"""The running API against its own OpenAPI document: schemathesis generates valid and
invalid requests for every operation and runs all its default checks on each answer (no
server error, declared status codes, content types, headers and bodies, invalid data
refused, valid data accepted, unsupported methods answered 405 with ``Allow``).

Bounded and repeatable: a fixed number of generated requests per operation (on top of the
coverage phase's deterministic ones), the same ones on every run, no example database.
Each allowance in CONFIG says what the document cannot express.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import hypothesis
import pytest
import schemathesis
from schemathesis.specs.openapi.schemas import OpenApiSchema

from app.bootstrap import Endpoints
from app.edge import DOCUMENTED_TEXT_PATTERN as TEXT
from app.http.idempotency import _KEY as VALID_KEY
from app.settings import Settings
from tests.e2e.conftest import inbox_up
from tests.tokens import headers_for

if TYPE_CHECKING:
    from schemathesis.specs.openapi.schemas import OpenApiCase

MAX_EXAMPLES = 25
ADMIN = "schemathesis"

# What the document cannot say, and so no generated request can know (the state the
# API is in):
# - 503 with Retry-After is the documented answer to a `min_position` the read model has
#   not reached in time (a generated position is mostly far ahead);
# - 404: an issue that does not exist (yet); 409: a transition its state does not allow, or
#   an issue that exists already; 412: an If-Match of a version the issue is not at.
_STATE = ["404", "409", "412", "503"]
_ACCEPTED = ["2xx", "3xx", "401", "403", "429", *_STATE]
CONFIG: dict[str, Any] = {
    "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
    "checks": {
        "not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503"]},
        "positive_data_acceptance": {"expected-statuses": _ACCEPTED},
    },
    "operations": [
        {
            # A cursor is opaque: only the ones the API gave out are valid (test_inbox_api.py
            # tests them), so a generated one is refused with 400.
            "include-name": "GET /api/issues",
            "checks": {"positive_data_acceptance": {"expected-statuses": [*_ACCEPTED, "400"]}},
        },
        {
            # `since` must not be after `until`: a rule across two parameters, which a
            # schema cannot state (tested in test_hostile_input.py).
            "include-name": "GET /api/detection/kpi",
            "checks": {"positive_data_acceptance": {"expected-statuses": [*_ACCEPTED, "400"]}},
        },
        {
            # The dashboard's windows: `since` not after `until`, and at most 31 days before
            # it: rules across two parameters (tests/integration/test_detection_dashboard.py).
            "include-name": "GET /api/detection/rules",
            "checks": {"positive_data_acceptance": {"expected-statuses": [*_ACCEPTED, "400"]}},
        },
        {
            "include-name": "GET /api/detection/timeline",
            "checks": {"positive_data_acceptance": {"expected-statuses": [*_ACCEPTED, "400"]}},
        },
        {
            # Which verticals and kinds there are, the rules file says (run-time state, and
            # it can be reloaded): a well-formed name it does not declare is 422 naming the
            # field (tests/unit/test_ruleset.py, tests/e2e/test_detection.py).
            "include-name": "POST /api/issues",
            "checks": {"positive_data_acceptance": {"expected-statuses": [*_ACCEPTED, "422"]}},
        },
        {
            "include-name": "POST /api/order-events",
            "checks": {"positive_data_acceptance": {"expected-statuses": [*_ACCEPTED, "422"]}},
        },
        {
            # `until` must be in the future: a rule of time, not of the schema.
            "include-name": "POST /api/issues/{issue_id}/snooze",
            "checks": {"positive_data_acceptance": {"expected-statuses": [*_ACCEPTED, "422"]}},
        },
    ],
}


@pytest.fixture(scope="module")
def quick_api(
    endpoints: Endpoints, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An API of its own that waits for a ``min_position`` a moment only: most generated ones
    are far ahead, and each would wait the default's seconds before its 503."""
    env = {"INBOX_MIN_POSITION_WAIT_SECONDS": "0.05"}
    folder = tmp_path_factory.mktemp("schemathesis")
    with inbox_up(endpoints, settings, folder, streams_suffix="_ST", env=env) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def api_schema(quick_api: str) -> OpenApiSchema:
    schema = schemathesis.openapi.from_url(
        f"{quick_api}/schema/openapi.json", config=schemathesis.Config.from_dict(CONFIG)
    )
    schema.config.update(base_url=quick_api, request_timeout=10)
    return schema


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    # schemathesis 4.32 reads and writes `Function._nodeid`, which pytest 9.2 no longer has
    # (it keeps `_id`): give it the attribute, so `from_fixture` works with both.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema").exclude(
    # An endless Server-Sent Events feed: no answer ends, so none can be checked.
    path="/api/stream"
)


@schema.parametrize()
@hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow, hypothesis.HealthCheck.filter_too_much],
)
def test_the_api_keeps_its_openapi_document(case: OpenApiCase) -> None:
    # An Idempotency-Key names one request: the same key with another request is refused
    # (422), which the generator, drawing the same few keys for every operation, cannot
    # know. So a key it drew valid is made unique (still valid); an invalid one is kept.
    key = case.headers.get("Idempotency-Key")
    if isinstance(key, str) and VALID_KEY.match(key):
        case.headers["Idempotency-Key"] = str(uuid.uuid4())
    # The acting agent is the token's sub: a valid agent_id the generator drew is made the
    # sub (still valid), an invalid one is kept.
    if isinstance(case.body, dict) and _valid_agent_id(case.body.get("agent_id")):
        case.body["agent_id"] = ADMIN
    case.call_and_validate(headers=headers_for(ADMIN, "admin"))


def _valid_agent_id(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 200 and re.match(TEXT, value) is not None
