"""The command bus: collects commands from the event loop into batches for the issue
service (``app/service.py``), one writer per hash partition of the issue ids, so that
commands on one issue keep their order and never race each other inside one process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio.to_thread

from app.commands import Command
from app.errors import NotApplied, Unavailable
from app.service import CommandResult, IssueService, Outcome

log = logging.getLogger(__name__)


class CommandBus:
    """Collects commands from the event loop into batches for :class:`IssueService`.

    Each writer owns one hash partition of the issue ids and one thread at a time: it takes
    what has queued up (at most ``batch_size``) while its previous batch was being saved,
    so under load batches grow by themselves and under light load a command waits for no
    one. What a caller hears matches what happened: :class:`NotApplied` when its command
    was never taken (queue full, timed out while waiting, shutting down), a plain
    :class:`Unavailable` ("may have been applied") only when a writer had taken it.
    """

    def __init__(
        self,
        service: IssueService,
        *,
        batch_size: int,
        writers: int,
        timeout: float,
        queue_limit: int = 10_000,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self._service = service
        self._batch_size = batch_size
        self._timeout = timeout
        self._on_batch = on_batch
        self._queues: list[asyncio.Queue[_Pending]] = [
            asyncio.Queue(maxsize=queue_limit) for _ in range(writers)
        ]
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    @property
    def queued(self) -> int:
        return sum(queue.qsize() for queue in self._queues)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(queue), name=f"command-writer-{n}")
            for n, queue in enumerate(self._queues)
        ]
        for task in self._tasks:
            task.add_done_callback(_report_writer_end)

    async def submit(self, command: Command) -> CommandResult:
        if self._closing:
            raise NotApplied("shutting down")
        pending = _Pending(command, asyncio.get_running_loop().create_future())
        try:
            self._queues[command.issue_id.int % len(self._queues)].put_nowait(pending)
        except asyncio.QueueFull:
            raise NotApplied("too many commands are waiting for the event store") from None
        try:
            return await asyncio.wait_for(asyncio.shield(pending.future), self._timeout)
        except TimeoutError:
            if not pending.taken:
                pending.abandoned = True  # the writer will skip it
                raise NotApplied(
                    f"the event store did not take the command within {self._timeout:g}s"
                ) from None
            pending.future.add_done_callback(_consume_outcome)
            raise Unavailable(
                f"no answer from the event store within {self._timeout:g}s; the command "
                "may still have been applied: read the issue before retrying"
            ) from None

    async def stop(self) -> None:
        """Refuse new commands, fail the ones no writer took yet, finish the batches
        already taken (waiting at most the command timeout for them)."""
        self._closing = True
        for queue in self._queues:
            while not queue.empty():
                pending = queue.get_nowait()
                if not pending.future.done():
                    pending.future.set_exception(NotApplied("shutting down"))
            queue.put_nowait(_STOP)
        if not self._tasks:
            return
        _, running = await asyncio.wait(self._tasks, timeout=self._timeout)
        for task in running:
            log.error("a command writer did not finish its batch in time; abandoning it")
            task.cancel()

    async def _run(self, queue: asyncio.Queue[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await queue.get()
            if first is _STOP:
                return
            batch = [first]
            while len(batch) < self._batch_size and not queue.empty():
                batch.append(queue.get_nowait())
            stop_after = any(item is _STOP for item in batch)
            batch = [item for item in batch if item is not _STOP and not item.abandoned]
            for item in batch:
                item.taken = True
            if batch:
                started = loop.time()
                outcomes = await self._execute([item.command for item in batch])
                if self._on_batch is not None:
                    self._on_batch(len(batch), loop.time() - started)
                for item, outcome in zip(batch, outcomes, strict=True):
                    if item.future.done():
                        continue
                    if isinstance(outcome, Exception):
                        item.future.set_exception(outcome)
                    else:
                        item.future.set_result(outcome)
            if stop_after:
                return

    async def _execute(self, commands: list[Command]) -> list[Outcome]:
        try:
            return await anyio.to_thread.run_sync(self._service.execute_batch, commands)
        except Exception:
            log.exception("a batch of %d commands failed in the event store", len(commands))
            return [
                Unavailable("the event store failed; the command may not have been applied")
                for _ in commands
            ]


@dataclass(eq=False)
class _Pending:
    command: Command
    future: asyncio.Future[CommandResult]
    taken: bool = False  # a writer has it: its outcome is no longer ours to decide
    abandoned: bool = False  # its caller gave up before a writer took it


# What a writer's queue ends with: not a command.
_STOP: Any = _Pending(None, None)  # type: ignore[arg-type]


def _consume_outcome(future: asyncio.Future[CommandResult]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.info("a timed-out command finished late: %s", future.exception())


def _report_writer_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("command writer %s died", task.get_name(), exc_info=task.exception())
