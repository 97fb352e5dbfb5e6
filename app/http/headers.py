"""The headers every response carries, the API's and the page's alike: a JSON body sniffed as
HTML, or any answer framed by another site, is as much a risk as the page itself."""

from __future__ import annotations

from litestar.datastructures import ResponseHeader

# No inline script or style, nothing from elsewhere, never inside a frame.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

SECURITY = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # No window another site opens shares a browsing context group with the page.
    "Cross-Origin-Opener-Policy": "same-origin",
}

# For the app's handlers (Litestar's layered response headers); the error mapper
# (app/http/errors.py) adds the same to every error it answers.
RESPONSE_HEADERS = [ResponseHeader(name=name, value=value) for name, value in SECURITY.items()]
