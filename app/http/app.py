"""The Litestar application: controllers, dependencies, the error mapper, OpenAPI, metrics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from litestar import HttpMethod, Litestar, MediaType, Request, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from litestar.response import Response
from litestar.routes import HTTPRoute
from prometheus_client import CONTENT_TYPE_LATEST

from app.bootstrap import Container
from app.bus import CommandBus
from app.detection import Detector
from app.history import History
from app.http import cache, idempotency, openapi
from app.http.errors import exception_to_response
from app.http.events import EventLogController
from app.http.health import HealthController
from app.http.inbox import InboxController, InboxPages, filters
from app.http.issues import IssueController
from app.http.orders import DetectionController, OrderEventsController, order_events_body
from app.queries import Positions, ReadModels
from app.settings import Settings


def _container(state: State) -> Container:
    container: Container = state.container
    return container


def _bus(state: State) -> CommandBus:
    return _container(state).bus


def _history(state: State) -> History:
    return _container(state).history


def _read_models(state: State) -> ReadModels:
    return _container(state).read_models


def _positions(state: State) -> Positions:
    return _container(state).positions


def _settings(state: State) -> Settings:
    return _container(state).settings


def _detector(state: State) -> Detector:
    return _container(state).detector


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


def create_app(container: Container) -> Litestar:
    """The HTTP app over a built container (the caller owns the container's lifetime)."""

    @contextlib.asynccontextmanager
    async def keep_state(app: Litestar) -> AsyncIterator[None]:
        app.state.container = container
        stop = asyncio.Event()
        sweeper = asyncio.create_task(idempotency.sweep_forever(container.issues, stop))
        try:
            yield
        finally:
            stop.set()
            await sweeper

    pages = InboxPages(container.read_models, container.settings.read_cache_seconds)

    def _pages() -> InboxPages:
        return pages

    prometheus = PrometheusConfig(app_name="inbox", group_path=True, prefix="inbox_http")
    app = Litestar(
        route_handlers=[
            IssueController,
            InboxController,
            OrderEventsController,
            DetectionController,
            EventLogController,
            HealthController,
            MetricsController,
        ],
        dependencies={
            "container": Provide(_container, sync_to_thread=False),
            "bus": Provide(_bus, sync_to_thread=False),
            "history": Provide(_history, sync_to_thread=False),
            "read_models": Provide(_read_models, sync_to_thread=False),
            "positions": Provide(_positions, sync_to_thread=False),
            "settings": Provide(_settings, sync_to_thread=False),
            "filters": Provide(filters, sync_to_thread=False),
            "pages": Provide(_pages, sync_to_thread=False),
            "detector": Provide(_detector, sync_to_thread=False),
        },
        exception_handlers={Exception: exception_to_response},
        before_request=answer_options,
        response_cache_config=cache.config(container.settings.read_cache_seconds),
        stores={
            cache.STORE_NAME: cache.ReadCache(
                container.settings.read_cache_mb * 2**20, container.settings.read_cache_seconds
            )
        },
        middleware=[prometheus.middleware],
        lifespan=[keep_state],
        openapi_config=OpenAPIConfig(
            title="Support Inbox", version="0.1.0", path="/schema", render_plugins=[]
        ),
        plugins=[openapi.ClosedStructs()],
        debug=False,
    )
    openapi.document_headers(app.openapi_schema)
    openapi.document_components(app.openapi_schema)
    openapi.document_body(
        app.openapi_schema,
        "/api/order-events",
        *order_events_body(),
        description="One order event (CONTRACT §2), or a list of them",
    )
    return app
