"""The embedded nats-server (adapters/embedded.py): a server of its own session, stopped
by the run that started it; one a killed run left behind is stopped before a new one
starts on the same store (two servers on one JetStream store would both write it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.embedded import EmbeddedServerError, embedded_nats, server_on_store
from tests.conftest import REPO, wait_until

_HOLD = """
import sys, time
from pathlib import Path
from adapters.embedded import embedded_nats
with embedded_nats(Path(sys.argv[1])) as url:
    print(url, flush=True)
    time.sleep(600)
"""


def test_a_server_left_by_a_killed_run_is_stopped_before_the_next_starts(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().startswith("nats://")
        leftover = server_on_store(tmp_path.resolve() / "nats")
        assert leftover is not None
        holder.send_signal(signal.SIGKILL)  # no cleanup: its server runs on, in its session
        holder.wait()
        assert server_on_store(tmp_path.resolve() / "nats") == leftover
        with embedded_nats(tmp_path):
            assert server_on_store(tmp_path.resolve() / "nats") not in (None, leftover)
            assert not _running(leftover), "the leftover server still runs"
        wait_until(lambda: server_on_store(tmp_path.resolve() / "nats") is None, what="stopped")
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        left = server_on_store(tmp_path.resolve() / "nats")
        if left is not None:  # the test failed: leave no server behind
            os.kill(left, signal.SIGTERM)


def test_the_server_has_a_session_of_its_own(tmp_path: Path) -> None:
    with embedded_nats(tmp_path):
        pid = server_on_store(tmp_path.resolve() / "nats")
        assert pid is not None
        assert os.getsid(pid) != os.getsid(0)


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_server_whose_run_is_alive_is_left_alone(tmp_path: Path) -> None:
    with embedded_nats(tmp_path):
        pid = server_on_store(tmp_path.resolve() / "nats")
        with pytest.raises(EmbeddedServerError, match="already serves"), embedded_nats(tmp_path):
            pass
        assert server_on_store(tmp_path.resolve() / "nats") == pid
