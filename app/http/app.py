"""The Litestar application: controllers, dependencies, the error mapper, OpenAPI, metrics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from litestar import HttpMethod, Litestar, MediaType, Request, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from litestar.response import Response
from litestar.routes import HTTPRoute
from prometheus_client import CONTENT_TYPE_LATEST

from app.http import cache, headers, idempotency, openapi
from app.http.access import OPEN_PATHS, authorize
from app.http.auth import Authenticate, authentication, caller
from app.http.dependencies import Services, provide
from app.http.detection import DetectionController
from app.http.errors import exception_to_response
from app.http.events import EventLogController
from app.http.health import HealthController
from app.http.issues import IssueController
from app.http.orders import OrderController, OrderEventsController, order_events_body
from app.http.rules import RulesController
from app.http.rules_admin import RulesAdminController
from app.http.session import SessionController
from app.http.stats import StatsController
from app.http.stream import StreamController
from app.web import pages


class MetricsController(PrometheusController):
    path = "/metrics"
    tags = ["operations"]

    # The plugin's handler, documented with the content type it answers with (Prometheus
    # text format), not the default JSON.
    @get(media_type=CONTENT_TYPE_LATEST, summary="Prometheus metrics")
    async def get(self) -> Response[bytes]:
        response: Response[bytes] = await PrometheusController.get.fn(self)
        return response


def answer_options(request: Request[Any, Any, Any]) -> Response[None] | None:
    """``OPTIONS`` answered with every method of the path (RFC 9110 §9.3.7). Litestar 2's own
    answer lists only the methods of the first handler registered on a path that several
    handlers serve (GET and POST /api/issues): litestar#4169, fixed in Litestar 3."""
    if request.method != HttpMethod.OPTIONS:
        return None
    path = request.scope["path_template"]
    methods = {
        method
        for route in request.app.routes
        if isinstance(route, HTTPRoute) and route.path_format == path
        for method in route.methods
    }
    return Response(
        None,
        status_code=204,
        headers={"Allow": ", ".join(sorted(methods))},
        media_type=MediaType.TEXT,
    )


def _document_open_paths(app: Litestar) -> None:
    """The routes that need no token say so (``security: []``) over the document's default
    (a bearer token or the session cookie)."""
    for path, item in (app.openapi_schema.paths or {}).items():
        if OPEN_PATHS.match(path):
            for method in ("get", "post", "delete"):
                operation = getattr(item, method)
                if operation is not None:
                    operation.security = []


def create_app(services: Services) -> Litestar:
    """The HTTP app over the built pieces (the caller owns their lifetime). ValueError
    when the settings give no way to check tokens (neither a secret nor a JWKS)."""

    @contextlib.asynccontextmanager
    async def sweep_keys(_app: Litestar) -> AsyncIterator[None]:
        stop = asyncio.Event()
        sweeper = asyncio.create_task(idempotency.sweep_forever(services.issues, stop))
        try:
            yield
        finally:
            stop.set()
            await sweeper

    settings = services.settings
    auth = authentication(settings)
    prometheus = PrometheusConfig(app_name="inbox", group_path=True, prefix="inbox_http")
    app = Litestar(
        route_handlers=[
            IssueController,
            StatsController,
            StreamController,
            OrderController,
            OrderEventsController,
            DetectionController,
            RulesController,
            EventLogController,
            RulesAdminController,
            SessionController,
            HealthController,
            MetricsController,
            pages.router(),
        ],
        dependencies={
            **provide(services),
            "authentication": Provide(lambda: auth, use_cache=True, sync_to_thread=False),
            "caller": Provide(caller, sync_to_thread=False),
        },
        # Every /api route: a token (Authenticate), and a role its rule allows (authorize).
        guards=[authorize],
        exception_handlers={Exception: exception_to_response},
        before_request=answer_options,
        response_headers=headers.RESPONSE_HEADERS,
        # The read cache's keys hold the positions this process knows.
        state=State({"positions": services.positions}),
        response_cache_config=cache.config(settings.read_cache_seconds),
        stores={
            cache.STORE_NAME: cache.ReadCache(
                settings.read_cache_mb * 2**20, settings.read_cache_seconds
            )
        },
        middleware=[prometheus.middleware, DefineMiddleware(Authenticate, authentication=auth)],
        lifespan=[sweep_keys],
        openapi_config=OpenAPIConfig(
            title="Support Inbox",
            version="0.1.0",
            path="/schema",
            render_plugins=[],
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT"),
                    "session": SecurityScheme(
                        type="apiKey", name="inbox_session", security_scheme_in="cookie"
                    ),
                }
            ),
            security=[{"bearer": []}, {"session": []}],
        ),
        plugins=[openapi.ClosedStructs()],
        debug=False,
    )
    openapi.document_headers(app.openapi_schema)
    _document_open_paths(app)
    openapi.document_components(app.openapi_schema)
    openapi.document_body(
        app.openapi_schema,
        "/api/order-events",
        *order_events_body(),
        description="One order event (CONTRACT §2), or a list of them",
    )
    return app
