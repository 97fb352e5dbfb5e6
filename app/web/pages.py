"""The web page's routes: one HTML shell for every page, its vendored scripts and styles.

The page is a client of the public JSON API: the shell at ``/``, ``/issues/{id}`` and
``/dashboard`` is the same static document, and the browser's code (``static/js``, Preact
with htm as ES modules) reads and acts through ``/api/*`` with the same tokens and checks
as any other client. Nothing here reads the database, and nothing needs a token: the
shell holds no data; a browser without a session gets the login form.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Response, Router, get
from litestar.datastructures import CacheControlHeader
from litestar.static_files import create_static_files_router

from app.http.headers import SECURITY

STATIC = Path(__file__).parent / "static"
_SHELL = (STATIC / "index.html").read_bytes()

# The paths the shell answers on (the browser's code routes among them).
PAGE_PATHS = ["/", "/issues/{issue_id:str}", "/dashboard", "/login"]


@get(PAGE_PATHS, include_in_schema=False, cache_control=CacheControlHeader(no_cache=True))
async def shell() -> Response[bytes]:
    """The page's HTML: the same document for every page (no data in it)."""
    return Response(_SHELL, media_type="text/html; charset=utf-8")


async def _secured(response: Any) -> Any:
    for name, value in SECURITY.items():
        response.headers[name] = value
    return response


def router() -> Router:
    """The shell and ``/static/*`` (revalidated on each load: a new release shows at once)."""
    static = create_static_files_router(
        path="/static",
        directories=[STATIC],
        cache_control=CacheControlHeader(no_cache=True),
        include_in_schema=False,
        # Its file responses skip the app's layered headers: added here.
        after_request=_secured,
    )
    return Router(path="/", route_handlers=[shell, static])
