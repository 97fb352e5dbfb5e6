"""The Litestar HTTP API: one controller per resource, one error mapper."""
