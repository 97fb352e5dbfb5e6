"""Who may call what (CONTRACT §6): one rule per route, one guard that enforces them.

``RULES`` names, for each ``(method, path template)`` of the API, the roles that may call
it. :func:`authorize` is the app's only guard: a route the table does not name is refused
(403) to every role, so a new route is closed until it has a rule, and the matrix test
(tests/e2e/test_access.py) fails until it does. Scopes (verticals, countries) are not
decided here: every read and command filters by them where the rows are read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import PermissionDeniedException
from litestar.handlers import BaseRouteHandler

from app.principal import ROLES, Principal, Role

# Paths that need no token at all: operations and the API's own description, the session
# route that turns a token into a cookie (it checks the token in its body), and the web
# page's shell and files, which hold no data (the page reads through /api with its session).
OPEN_PATHS = re.compile(
    r"^/(?:health|ready|metrics)$|^/schema(?:/.*)?$|^/api/session$"
    r"|^/(?:|dashboard|login|issues/\{issue_id\})$|^/static/"
)

READERS: frozenset[Role] = frozenset({"agent", "lead", "auditor", "admin"})
AUDITORS: frozenset[Role] = frozenset({"auditor", "admin"})
TRIAGE: frozenset[Role] = frozenset({"agent", "lead", "admin"})
LEADS: frozenset[Role] = frozenset({"lead", "admin"})
SERVICES: frozenset[Role] = frozenset({"service", "admin"})

_ISSUE = "/api/issues/{issue_id}"

RULES: Mapping[tuple[str, str], frozenset[Role]] = {
    # Reads: the inbox, one issue, its history, the counts, the stream, orders, the KPI.
    ("GET", "/api/issues"): READERS,
    ("GET", _ISSUE): READERS,
    ("GET", f"{_ISSUE}/events"): READERS,
    ("GET", "/api/stats"): READERS,
    ("GET", "/api/stream"): READERS,
    ("GET", "/api/orders/{order_id}"): READERS,
    ("GET", "/api/detection/kpi"): READERS,
    # The rules judged with now (verticals, kinds, declared rules): no issue data, and what
    # every client needs to name what it sends or filters by, order services included.
    ("GET", "/api/rules"): frozenset(ROLES),
    # The detection dashboard: how each rule does, and how the agents judged its issues
    # (false positives), over time; for who tunes rules and answers for the team (leads) and
    # who reviews them (auditors), not the queue's daily work.
    ("GET", "/api/detection/rules"): LEADS | AUDITORS,
    ("GET", "/api/detection/timeline"): LEADS | AUDITORS,
    ("GET", "/api/detection/overdue"): LEADS | AUDITORS,
    # Audit: an issue as it was, the global log.
    ("GET", f"{_ISSUE}/state"): AUDITORS,
    ("GET", "/api/events"): AUDITORS,
    # Triage of one issue (an agent assigns only to itself: the assign handler checks).
    ("POST", f"{_ISSUE}/assign"): TRIAGE,
    ("POST", f"{_ISSUE}/acknowledge"): TRIAGE,
    ("POST", f"{_ISSUE}/notes"): TRIAGE,
    ("POST", f"{_ISSUE}/actions"): TRIAGE,
    ("POST", f"{_ISSUE}/escalate"): TRIAGE,
    ("POST", f"{_ISSUE}/snooze"): TRIAGE,
    ("POST", f"{_ISSUE}/wake"): TRIAGE,
    ("POST", f"{_ISSUE}/resolve"): TRIAGE,
    ("POST", f"{_ISSUE}/reopen"): TRIAGE,
    # Leads: take an issue from whoever has it, raise one by hand.
    ("POST", f"{_ISSUE}/unassign"): LEADS,
    ("POST", "/api/issues"): LEADS,
    # Order services feed the detector.
    ("POST", "/api/order-events"): SERVICES,
    # The rules: which version runs here and everywhere, why a reload was refused (who
    # tunes and reviews them); making the deployed file live is an operator's act.
    ("GET", "/api/rules/status"): LEADS | AUDITORS,
    ("POST", "/api/rules/reload"): frozenset({"admin"}),
}


def allowed(method: str, path: str) -> frozenset[Role]:
    """The roles that may call ``method path`` (a route's path template); none when the
    table has no rule for it. ``OPTIONS`` (which methods a path serves) is for every role."""
    if OPEN_PATHS.match(path):
        return frozenset(ROLES)
    if method == "OPTIONS":
        return frozenset(ROLES) if any(p == path for _, p in RULES) else frozenset()
    return RULES.get((method, path), frozenset())


def may_assign_others(principal: Principal) -> bool:
    """Whether the caller may assign an issue to someone other than itself."""
    return principal.role in LEADS


def authorize(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """The app's guard: 403 unless the caller's role may call this route."""
    path = connection.scope.get("path_template", "")
    if OPEN_PATHS.match(path):
        return
    user = connection.scope.get("user")
    method = str(connection.scope.get("method", "GET"))
    if not isinstance(user, Principal) or user.role not in allowed(method, path):
        raise PermissionDeniedException("this role may not call this route")
