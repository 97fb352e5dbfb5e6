"""SIGHUP while a process starts (app/cli.py Hangups): remembered and acted on once the
rules are up, instead of the signal's default, which ends the process (a reload sent just
after the start's activation killed ``inbox api`` in a slow run)."""

from __future__ import annotations

import asyncio
import os
import signal

from app.cli import Hangups


def _pending(hangups: Hangups) -> bool:
    return hangups.pending  # read afresh (the handler sets it between awaits)


async def _handled(hangups: Hangups, seen: list[str]) -> None:
    """Send this process SIGHUP and wait (with a deadline) until the loop has handled it."""
    before = hangups.pending, len(seen)
    os.kill(os.getpid(), signal.SIGHUP)
    async with asyncio.timeout(5):
        while (hangups.pending, len(seen)) == before:
            await asyncio.sleep(0)


async def test_a_sighup_before_the_rules_are_up_is_acted_on_once_they_are() -> None:
    seen: list[str] = []
    hangups = Hangups()
    try:
        await _handled(hangups, seen)  # the process is alive: not the default action
        assert _pending(hangups)
        assert seen == []
        hangups.ready(lambda: seen.append("reload"))
        assert seen == ["reload"]
        assert not _pending(hangups)
        await _handled(hangups, seen)
        assert seen == ["reload", "reload"]
    finally:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)


async def test_no_sighup_no_reload() -> None:
    seen: list[str] = []
    hangups = Hangups()
    try:
        hangups.ready(lambda: seen.append("reload"))
        assert seen == []
    finally:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
