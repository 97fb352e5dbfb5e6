"""CommandBus with a fake service: what a caller is told matches what was executed."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Sequence

import pytest

from app.bus import CommandBus
from app.commands import AddNote, Command
from app.errors import NotApplied, Unavailable
from app.service import CommandResult, Outcome


class SlowService:
    """Executes nothing until released; records what it was asked to execute."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.executed: list[Command] = []
        self.started = threading.Event()

    def execute_batch(self, commands: Sequence[Command]) -> list[Outcome]:
        self.started.set()
        assert self.release.wait(10)
        self.executed += commands
        return [CommandResult(c.issue_id, 2, n) for n, c in enumerate(commands, start=1)]


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.001)


def note(issue_id: uuid.UUID | None = None) -> Command:
    return AddNote(issue_id=issue_id or uuid.UUID(int=0), actor="ann", text="n")


async def test_a_command_that_timed_out_in_the_queue_is_never_executed() -> None:
    service = SlowService()
    bus = CommandBus(service, batch_size=10, writers=1, timeout=0.2, queue_limit=100)  # type: ignore[arg-type]
    bus.start()
    first = asyncio.create_task(bus.submit(note()))
    await asyncio.to_thread(service.started.wait, 5)  # the writer holds the first command
    with pytest.raises(NotApplied):
        await bus.submit(note())  # waits in the queue past its timeout
    with pytest.raises(Unavailable, match="may"):
        await first  # taken by the writer, not answered in time: outcome unknown
    service.release.set()
    await bus.stop()
    assert len(service.executed) == 1


async def test_a_full_queue_refuses_at_once() -> None:
    service = SlowService()
    bus = CommandBus(service, batch_size=1, writers=1, timeout=5, queue_limit=2)  # type: ignore[arg-type]
    bus.start()
    waiting = [asyncio.create_task(bus.submit(note()))]
    await asyncio.to_thread(service.started.wait, 5)  # the writer holds the first
    waiting += [asyncio.create_task(bus.submit(note())) for _ in range(2)]
    await until(lambda: bus.queued == 2)
    with pytest.raises(NotApplied, match="too many"):
        await bus.submit(note())
    service.release.set()
    await asyncio.gather(*waiting)
    await bus.stop()


async def test_stop_fails_what_was_not_taken_and_finishes_what_was() -> None:
    service = SlowService()
    bus = CommandBus(service, batch_size=1, writers=1, timeout=5, queue_limit=10)  # type: ignore[arg-type]
    bus.start()
    taken = asyncio.create_task(bus.submit(note()))
    await asyncio.to_thread(service.started.wait, 5)
    queued = [asyncio.create_task(bus.submit(note())) for _ in range(3)]
    await until(lambda: bus.queued == 3)
    stopping = asyncio.create_task(bus.stop())
    await until(lambda: bus.queued == 1)  # the three failed, the stop marker queued
    service.release.set()
    await asyncio.wait_for(stopping, 5)
    assert isinstance(await taken, CommandResult)
    for one in queued:
        with pytest.raises(NotApplied):
            await one
    assert len(service.executed) == 1
    with pytest.raises(NotApplied):
        await bus.submit(note())
