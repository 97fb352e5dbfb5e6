"""``inbox rebuild`` and ``inbox dead-letters`` build only what they use: they run with no
NATS server to connect to (app/bootstrap.py's builders for each entrypoint)."""

from __future__ import annotations

from tests.integration.helpers import inbox_without_nats


async def test_dead_letters_and_rebuild_need_no_nats(db: str) -> None:
    listed = inbox_without_nats(db, "dead-letters")
    assert listed.returncode == 0, listed.stderr
    replayed = inbox_without_nats(db, "dead-letters", "--replay")
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 0 dead letters" in replayed.stdout
    rebuilt = inbox_without_nats(db, "rebuild", "inbox", "--no-swap")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "rebuilt inbox" in rebuilt.stdout
