"""Shared by the relay tests: a relay of a stream of the test's own, and the checks that
nothing was lost, nothing doubled and each issue's events are in version order."""

from __future__ import annotations

import asyncio
import contextlib
import io
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import msgspec
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from adapters import postgres
from app.integration import INTEGRATION_EVENTS
from app.service import IssueService
from app.workers.relay import Relay, RelayConfig, RelayError
from tests.conftest import RUN_ID

_STRUCTS = {entry.ce_type: entry.struct for entry in INTEGRATION_EVENTS.values()}


def relay_config(**overrides: object) -> RelayConfig:
    name = f"INBOX_{RUN_ID}_{uuid.uuid4().hex[:6]}"
    values: dict[str, object] = {
        "stream": name,
        "subject_prefix": f"{name.lower()}.issue",
        "source": "/support-inbox-test",
        "duplicate_window": 20 * 60.0,
        "ack_timeout": 2.0,
        "poll_interval": 0.2,
        "max_backoff": 0.5,
        "batch_size": 200,
    }
    return RelayConfig(**(values | overrides))  # type: ignore[arg-type]


@dataclass
class RunningRelay:
    relay: Relay
    config: RelayConfig
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def check_alive(self) -> None:
        """Fail at once, with its own error, if the relay died."""
        assert self.task is not None
        if self.task.done():
            self.task.result()
            raise AssertionError("the relay stopped by itself")

    async def ended(self, timeout: float = 30) -> None:
        """Wait for it to end by itself, re-raising what it died of."""
        assert self.task is not None
        await asyncio.wait_for(asyncio.shield(self.task), timeout)


@contextlib.asynccontextmanager
async def running_relay(
    url: str, nc: NATS, service: IssueService, config: RelayConfig, *, max_pending: int = 4000
) -> AsyncIterator[RunningRelay]:
    relay = Relay(
        database_url=url,
        nats=nc,
        mapper=service.app.mapper,
        config=config,
        max_pending=max_pending,
    )
    running = RunningRelay(relay, config)
    running.task = asyncio.create_task(relay.run(running.stop))
    try:
        yield running
    finally:
        running.stop.set()
        if not running.task.done() or not isinstance(running.task.exception(), RelayError):
            # A relay that crashed, or hangs on stop, fails the test (an expected halt
            # was already checked by the test itself).
            await asyncio.wait_for(running.task, 30)


async def relay_position(url: str, stream: str) -> int:
    conn = await postgres.connect(url)
    try:
        position = await conn.fetchval("SELECT position FROM relay_state WHERE stream=$1", stream)
        return int(position or 0)
    finally:
        await conn.close()


async def wait_progress(url: str, stream: str, beyond: int, *, timeout: float = 30.0) -> None:
    """Wait until the relay stores a position beyond ``beyond``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while await relay_position(url, stream) <= beyond:
        assert asyncio.get_running_loop().time() < deadline, f"relay stuck at {beyond}"
        await asyncio.sleep(0.02)


async def newest_position(url: str) -> int:
    conn = await postgres.connect(url)
    try:
        return int(await conn.fetchval("SELECT coalesce(max(notification_id),0) FROM inbox_events"))
    finally:
        await conn.close()


async def wait_caught_up(url: str, stream: str, *, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        newest = await newest_position(url)
        position = await relay_position(url, stream)
        if newest > 0 and position == newest:
            return
        if asyncio.get_running_loop().time() > deadline:
            stacks = io.StringIO()
            for task in asyncio.all_tasks():
                task.print_stack(file=stacks)
            raise AssertionError(
                f"relay at {position}, newest event {newest} after {timeout}s; tasks:\n"
                + stacks.getvalue()
            )
        await asyncio.sleep(0.05)


@dataclass(frozen=True)
class Published:
    msg_id: str
    subject: str
    headers: dict[str, str]
    data: bytes


async def stream_messages(js: JetStreamContext, config: RelayConfig) -> list[Published]:
    """Every message in the stream, in stream order."""
    info = await js.stream_info(config.stream)
    total = info.state.messages
    if total == 0:
        return []
    subscription = await js.pull_subscribe(f"{config.subject_prefix}.>", stream=config.stream)
    found: list[Published] = []
    try:
        while len(found) < total:
            for message in await subscription.fetch(min(1000, total - len(found)), timeout=5):
                await message.ack()
                headers = dict(message.headers or {})
                found.append(
                    Published(headers["Nats-Msg-Id"], message.subject, headers, message.data)
                )
    finally:
        await subscription.unsubscribe()
    return found


async def assert_exactly_once_in_order(
    url: str, js: JetStreamContext, config: RelayConfig
) -> list[Published]:
    """Every stored event once in the stream; each issue's versions strictly increasing."""
    conn = await postgres.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT notification_id, originator_id, originator_version FROM inbox_events"
        )
    finally:
        await conn.close()
    expected = {
        f"{r['originator_id']}:{r['originator_version']}": r["notification_id"] for r in rows
    }
    messages = await stream_messages(js, config)
    ids = [m.msg_id for m in messages]
    doubled = len(ids) - len(set(ids))
    assert doubled == 0, f"{doubled} events were published twice"
    missing = set(expected) - set(ids)
    assert not missing, f"{len(missing)} of {len(expected)} events never reached the stream"
    assert set(ids) == set(expected)
    last_version: dict[str, int] = defaultdict(int)
    for message in messages:
        issue_id, version = message.msg_id.split(":")
        assert int(version) > last_version[issue_id], f"{message.msg_id} out of order"
        last_version[issue_id] = int(version)
        assert int(message.headers["Inbox-Position"]) == expected[message.msg_id]
        # the payload decodes as its own versioned integration event
        msgspec.json.decode(message.data, type=_STRUCTS[message.headers["ce-type"]])
    return messages


async def delete_stream(nc: NATS, stream: str) -> None:
    with contextlib.suppress(Exception):
        await nc.jetstream().delete_stream(stream)
