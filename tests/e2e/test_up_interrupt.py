"""Ctrl+C on ``./dev run``: the terminal sends SIGINT to the whole foreground process group.
``inbox up`` must stop its workers, then the embedded servers, print no traceback and exit
0 (CONTRACT §1)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.api_process import free_port
from tests.conftest import REPO, wait_until


def _ready(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/ready", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _demo_token(log_path: Path) -> str | None:
    """The ready token ``inbox up`` prints beside its URL (its data directory's secret)."""
    found = re.search(r"^token: (\S+)$", log_path.read_text(), re.MULTILINE)
    return found.group(1) if found else None


def _issues(base_url: str, token: str) -> int:
    try:
        answer = httpx.get(
            f"{base_url}/api/stats", timeout=2, headers={"Authorization": f"Bearer {token}"}
        )
    except httpx.TransportError:
        return 0
    return int(answer.json()["total"]) if answer.status_code == 200 else 0


def test_ctrl_c_on_up_with_embedded_servers_stops_in_order_and_exits_0(tmp_path: Path) -> None:
    data_dir = tmp_path / "inbox"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("INBOX_DATABASE_URL", "INBOX_NATS_URL")}
    env |= {"INBOX_DATA_DIR": str(data_dir), "INBOX_HTTP_PORT": str(port)}
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log:
        # A group of its own, led by `inbox up`, as a shell makes for a foreground job.
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "up", "--rate", "120"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: process.poll() is not None or _ready(base_url), timeout=120, what="up ready"
        )
        assert process.poll() is None, log_path.read_text()
        # Busy: the simulator publishing, the detector raising issues, the relay relaying.
        token = wait_until(lambda: _demo_token(log_path), what="the demo token printed")
        wait_until(lambda: _issues(base_url, token) > 0, timeout=60, what="issues detected")
        os.killpg(process.pid, signal.SIGINT)
        code = process.wait(60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = log_path.read_text()
    assert code == 0, f"inbox up exited {code} on SIGINT:\n{output}"
    assert "Traceback" not in output, output
    assert " ERROR " not in output, output
    assert not (data_dir / "postgres" / "postmaster.pid").exists(), "PostgreSQL left running"
    nats_log = (data_dir / "nats" / "nats-server.log").read_text()
    assert "Server Exiting" in nats_log, nats_log
