"""``inbox rebuild`` and ``inbox dead-letters`` build only what they use: they run with no
NATS server to connect to (app/bootstrap.py's builders for each entrypoint)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.integration.conftest import REPO

# A port nothing listens on: a command that connected to NATS would fail or hang.
_NO_NATS = "nats://127.0.0.1:9"


def _inbox(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INBOX_DATABASE_URL": db, "INBOX_NATS_URL": _NO_NATS}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_dead_letters_and_rebuild_need_no_nats(db: str) -> None:
    listed = _inbox(db, "dead-letters")
    assert listed.returncode == 0, listed.stderr
    replayed = _inbox(db, "dead-letters", "--replay")
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 0 dead letters" in replayed.stdout
    rebuilt = _inbox(db, "rebuild", "inbox", "--no-swap")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "rebuilt inbox" in rebuilt.stdout
