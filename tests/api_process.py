"""Run ``inbox api`` as a separate process, the way an operator does, for e2e and benches."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx

from app.bootstrap import Endpoints
from tests.conftest import wait_until
from tests.tokens import TEST_SECRET


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ready(base_url: str, path: str) -> bool:
    try:
        return httpx.get(f"{base_url}{path}", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@contextlib.contextmanager
def running_api(
    endpoints: Endpoints,
    log_path: Path,
    *,
    log_level: str = "INFO",
    command: str = "api",
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    ready_path: str = "/ready",
) -> Iterator[str]:
    """Start ``inbox api`` (or ``inbox up``) on a free port, wait for ``ready_path`` to
    answer 200 (``/health`` where no projection worker runs, so ``/ready`` would report
    the read models stalled), yield its base URL; on exit stop it with SIGTERM and check
    that it exited 0."""
    port = free_port()
    environment = (
        os.environ
        | {
            "INBOX_DATABASE_URL": endpoints.database_url,
            "INBOX_NATS_URL": endpoints.nats_url,
            "INBOX_HTTP_PORT": str(port),
            "INBOX_LOG_LEVEL": log_level,
            "INBOX_JWT_SECRET": TEST_SECRET,
        }
        | (env or {})
    )
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", command, *args],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: process.poll() is not None or _ready(base_url, ready_path),
            timeout=30,
            what="API ready",
        )
        assert process.poll() is None, log_path.read_text()
        yield base_url
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(20)
    assert code == 0, f"inbox api exited {code} on SIGTERM:\n{log_path.read_text()}"
