"""Reloading the rules without a restart (issue 15), on real PostgreSQL and NATS: replicas
converge on the version one of them activated (NOTIFY, the poll, a lost connection); under
traffic every issue is judged by one whole file and no event is lost; a bad file changes
nothing and says why (the reload's 422, status, /ready, the metric); SIGHUP to a running
process activates the changed file."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import nats
import pytest

from adapters import postgres
from adapters.clock import SystemClock
from adapters.nats import ensure_stream
from adapters.rules_store import PostgresRulesStore
from app import bootstrap
from app.bootstrap import Endpoints
from app.http.app import create_app
from app.ingest import validate
from app.rules_config import SHIPPED, load, version_of
from app.rules_source import RulesSource
from app.service import IssueService
from app.settings import Settings
from app.workers.detector import ConsumerConfigValues, consume_orders
from domain.issue import issue_id_for
from domain.order import OrderEvent
from tests.api_process import free_port
from tests.conftest import RUN_ID, async_wait_until
from tests.e2e.orders import placed as placed_event
from tests.integration import helpers
from tests.integration.conftest import REPO
from tests.rules_store_contract import RulesStoreContract
from tests.tokens import TEST_SECRET, headers_for

_ACCEPTANCE = 'venue_acceptance_delayed = [[3.5, "medium"], [5, "high"], [8, "critical"]]'
# Two files that differ in one rule's threshold and its severity: an issue judged by a
# mix of the two would show one of A's with one of B's in its evidence.
SHIPPED_RULES = load(None)
A_PAIR = (4.0, "medium")
B_PAIR = (6.0, "high")


def variant(path: Path, pair: tuple[float, str]) -> Path:
    minutes, severity = pair
    text = SHIPPED.read_text()
    assert _ACCEPTANCE in text
    path.write_text(
        text.replace(_ACCEPTANCE, f'venue_acceptance_delayed = [[{minutes:g}, "{severity}"]]')
    )
    return path


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    return variant(tmp_path / "a.toml", A_PAIR), variant(tmp_path / "b.toml", B_PAIR)


def stream_name() -> str:
    return f"ORDERS_{RUN_ID}_{uuid.uuid4().hex[:6]}"


class TestPostgresRulesStore(RulesStoreContract):
    @pytest.fixture
    def store(self, pool: asyncpg.Pool) -> PostgresRulesStore:
        return PostgresRulesStore(pool, stream_name())


async def test_two_deployments_on_one_database_keep_their_versions(
    pool: asyncpg.Pool, files: tuple[Path, Path]
) -> None:
    a, b = files
    one, two = PostgresRulesStore(pool, "ORDERS_ONE"), PostgresRulesStore(pool, "ORDERS_TWO")
    await one.activate(version_of(a.read_text()), a.read_text(), str(a), "x")
    await two.activate(version_of(b.read_text()), b.read_text(), str(b), "y")
    first, second = await one.active(), await two.active()
    assert first is not None
    assert second is not None
    assert (first.version, second.version) == (version_of(a.read_text()), version_of(b.read_text()))


@contextlib.asynccontextmanager
async def following(db: str, *sources: RulesSource, poll: float) -> AsyncIterator[None]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(s.follow(db, stop, poll_interval=poll)) for s in sources]
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)  # they stop cleanly


async def test_replicas_converge_on_the_version_a_third_activates(
    db: str, pool: asyncpg.Pool, files: tuple[Path, Path]
) -> None:
    a, b = files
    store = PostgresRulesStore(pool, stream_name())
    replicas = [RulesSource.from_file(a, store) for _ in range(2)]
    for replica in replicas:
        await replica.start("start")
    b_version = version_of(b.read_text())

    async def on(version: str) -> bool:
        return all(r.current.version == version for r in replicas)

    # A poll far longer than the wait: only the NOTIFY can bring them over in time.
    async with following(db, *replicas, poll=60):
        await RulesSource.from_file(b, store).activate_file("third")
        await async_wait_until(lambda: on(b_version), timeout=10, what="both on B (NOTIFY)")
        # A connection lost: the followers reconnect and read what was activated meanwhile.
        conn = await postgres.connect(db)
        try:
            killed = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'inbox-rules-follower'"
            )
            assert killed == 2
            await RulesSource.from_file(a, store).activate_file("third")
            await async_wait_until(
                lambda: on(version_of(a.read_text())), timeout=15, what="both on A (reconnected)"
            )
        finally:
            await conn.close()
    assert all(r.last_error is None for r in replicas)


async def test_the_poll_brings_a_replica_over_when_no_notify_comes(
    db: str, pool: asyncpg.Pool, files: tuple[Path, Path]
) -> None:
    a, b = files
    stream = stream_name()
    store = PostgresRulesStore(pool, stream)
    replica = RulesSource.from_file(a, store)
    await replica.start("start")
    async with following(db, replica, poll=0.2):
        # Activated by hand, without the NOTIFY an activation sends.
        await pool.execute(
            "INSERT INTO rules_versions (version, text, source) VALUES ($1, $2, 'b.toml')",
            version_of(b.read_text()),
            b.read_text(),
        )
        await pool.execute(
            "UPDATE rules_active SET version = $2, generation = generation + 1"
            " WHERE orders_stream = $1",
            stream,
            version_of(b.read_text()),
        )

        async def on_b() -> bool:
            return replica.current.version == version_of(b.read_text())

        await async_wait_until(on_b, timeout=10, what="the replica on B (poll)")


# ---- under traffic -----------------------------------------------------------------------


def placed(order_id: str) -> bytes:
    """An order placed 20 minutes ago, never accepted: venue_acceptance_delayed at once,
    at the one tier A or B gives it."""
    return msgspec.json.encode(placed_event(order_id, 20))


async def test_under_traffic_every_issue_is_judged_by_one_whole_file_and_none_is_lost(
    db: str,
    pool: asyncpg.Pool,
    writer: IssueService,
    endpoints: Endpoints,
    files: tuple[Path, Path],
) -> None:
    a, b = files
    stream = stream_name()
    prefix = f"o_{uuid.uuid4().hex[:8]}"
    store = PostgresRulesStore(pool, stream)
    judged_by = RulesSource.from_file(a, store)  # the detector's, following
    await judged_by.start("start")
    operator = RulesSource.from_file(a, store)  # another process, reloading
    detector = helpers.detector(
        pool, writer, SystemClock(), source=judged_by, command_batch_size=20
    )
    client = await nats.connect(endpoints.nats_url)
    js = client.jetstream()
    await ensure_stream(js, name=stream, subjects=[f"{prefix}.>"], duplicate_window=1200)
    config = ConsumerConfigValues(
        stream=stream, subject_prefix=prefix, durable="reload", create_stream=False, batch_size=25
    )
    stop = asyncio.Event()
    orders: list[str] = []
    flips = 0

    async def produce() -> None:
        for burst in range(60):
            for n in range(10):
                order_id = f"r{burst:03d}-{n}-{uuid.uuid4().hex[:6]}"
                orders.append(order_id)
                await js.publish(
                    f"{prefix}.order_placed",
                    placed(order_id),
                    headers={"Nats-Msg-Id": f"{order_id}-placed"},
                )
            await asyncio.sleep(0.03)  # a steady stream, not one backlog

    async def flip(done: asyncio.Event) -> None:
        nonlocal flips
        while not done.is_set():
            await operator.activate_file("flipper", b if flips % 2 == 0 else a)
            flips += 1
            await asyncio.sleep(0.05)

    try:
        async with following(db, judged_by, poll=0.5):
            consumer = asyncio.create_task(consume_orders(client, detector, config, stop))
            produced = asyncio.Event()
            flipper = asyncio.create_task(flip(produced))
            await produce()
            produced.set()
            await flipper

            async def all_stored() -> bool:
                assert not consumer.done(), consumer
                n = await pool.fetchval(
                    "SELECT count(*) FROM order_events WHERE order_id = ANY($1::text[])", orders
                )
                return bool(n == len(orders))

            await async_wait_until(all_stored, timeout=60, what="every event stored")
            stop.set()
            await asyncio.wait_for(consumer, 20)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await js.delete_stream(stream)
        await client.close()

    ids = {issue_id_for(order_id, "venue_acceptance_delayed"): order_id for order_id in orders}
    issues = writer.current(set(ids))
    assert len(issues) == len(orders), "an event was dropped: its order raised no issue"
    pairs: dict[tuple[float, str], int] = {}
    for issue in issues.values():
        pair = (float(issue.evidence["threshold_minutes"]), issue.severity)
        pairs[pair] = pairs.get(pair, 0) + 1
    assert set(pairs) <= {A_PAIR, B_PAIR}, f"an issue judged by a mix of A and B: {pairs}"
    assert set(pairs) == {A_PAIR, B_PAIR}, f"the flips came between batches: {pairs}, {flips}"
    assert flips >= 20
    assert judged_by.last_error is None
    dead = await pool.fetchval("SELECT count(*) FROM dead_letters")
    assert dead == 0


# ---- a bad reload, and the HTTP endpoints ------------------------------------------------


def order_event(order_id: str) -> OrderEvent:
    return validate(msgspec.json.decode(placed(order_id)), SHIPPED_RULES)


@pytest.fixture
async def inbox(db: str, endpoints: Endpoints, tmp_path: Path) -> AsyncIterator[Any]:
    """The HTTP app in process, on rules file ``live.toml`` (A at start)."""
    live = variant(tmp_path / "live.toml", A_PAIR)
    settings = Settings(
        database_url=db,
        nats_url=endpoints.nats_url,
        rules_file=live,
        orders_stream=stream_name(),
        jwt_secret=TEST_SECRET,
    )
    async with bootstrap.container(
        settings, Endpoints(db, endpoints.nats_url), follow_rules=True
    ) as built:
        app = create_app(built)
        app.state.container = built
        yield app


def http_as(app: Any, role: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://inbox",
        headers=headers_for(f"a-{role}", role),  # type: ignore[arg-type]
    )


async def judged(built: Any, order_id: str) -> tuple[float, str]:
    await built.detector.ingest([order_event(order_id)])
    issue_id = issue_id_for(order_id, "venue_acceptance_delayed")
    issue = built.issues.current({issue_id})[issue_id]
    return float(issue.evidence["threshold_minutes"]), issue.severity


async def test_a_bad_reload_changes_nothing_and_says_why(inbox: Any) -> None:
    built = inbox.state.container
    live: Path = built.settings.rules_file
    a_version = version_of(live.read_text())
    assert await judged(built, f"bad-1-{uuid.uuid4().hex[:6]}") == A_PAIR
    live.write_text(live.read_text().replace("[vertical.grocery]", "[vertical.grocery]\nspeed = 3"))
    async with http_as(inbox, "admin") as admin:
        refused = await admin.post("/api/rules/reload")
        assert refused.status_code == 422, refused.text
        assert "live.toml: vertical.grocery.speed" in refused.json()["detail"]
        status = (await admin.get("/api/rules/status")).json()
        assert (status["version"], status["active_version"]) == (a_version, a_version)
        assert "vertical.grocery.speed" in status["last_error"]["message"]
        ready = (await admin.get("/ready")).json()
        assert ready["rules"]["version"] == a_version
        assert "vertical.grocery.speed" in ready["rules"]["last_error"]
        assert not any("rules" in problem for problem in ready["problems"])
        metrics = (await admin.get("/metrics")).text
        assert "inbox_rules_last_reload_failed 1.0" in metrics
        assert f'inbox_rules_info{{version="{a_version}"}} 1.0' in metrics
    assert built.rules.current.version == a_version
    assert await judged(built, f"bad-2-{uuid.uuid4().hex[:6]}") == A_PAIR, "judged as before"


async def test_reload_is_for_admins_and_answers_what_changed(inbox: Any) -> None:
    built = inbox.state.container
    live: Path = built.settings.rules_file
    a_version = version_of(live.read_text())
    variant(live, B_PAIR)
    b_version = version_of(live.read_text())
    async with http_as(inbox, "agent") as agent, http_as(inbox, "lead") as lead:
        assert (await agent.post("/api/rules/reload")).status_code == 403
        assert (await agent.get("/api/rules/status")).status_code == 403
        assert (await lead.post("/api/rules/reload")).status_code == 403
        assert (await lead.get("/api/rules/status")).status_code == 200
    assert built.rules.current.version == a_version, "a refused caller changes nothing"
    async with http_as(inbox, "admin") as admin:
        reloaded = await admin.post("/api/rules/reload")
        assert reloaded.status_code == 200, reloaded.text
        assert reloaded.json() == {"version": b_version, "previous": a_version, "changed": True}
        again = await admin.post("/api/rules/reload")
        assert again.json() == {"version": b_version, "previous": b_version, "changed": False}
        status = (await admin.get("/api/rules/status")).json()
        assert (status["version"], status["active_version"]) == (b_version, b_version)
        assert status["activated_by"] == "POST /api/rules/reload by a-admin"
        assert status["last_error"] is None
    assert await judged(built, f"ok-{uuid.uuid4().hex[:6]}") == B_PAIR


# ---- SIGHUP --------------------------------------------------------------------------------


@contextlib.contextmanager
def inbox_process(
    command: str, db: str, nats_url: str, rules: Path, log: Path, stream: str
) -> Iterator[subprocess.Popen[bytes]]:
    port = str(free_port())
    env = os.environ | {
        "INBOX_DATABASE_URL": db,
        "INBOX_NATS_URL": nats_url,
        "INBOX_RULES_FILE": str(rules),
        "INBOX_ORDERS_STREAM": stream,
        "INBOX_ORDERS_SUBJECT_PREFIX": stream.lower(),
        "INBOX_INBOX_STREAM": f"INBOX_{stream}",
        "INBOX_INBOX_SUBJECT_PREFIX": f"inbox_{stream.lower()}",
        "INBOX_JWT_SECRET": TEST_SECRET,
        "INBOX_HTTP_PORT": port,
        "INBOX_RULES_POLL_SECONDS": "60",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", command],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        code = process.wait(20)
        assert code == 0, f"inbox {command} exited {code}:\n{log.read_text()}"


@pytest.mark.parametrize("command", ["detect", "api"])
async def test_sighup_makes_a_running_process_activate_the_changed_file(
    command: str, db: str, pool: asyncpg.Pool, endpoints: Endpoints, tmp_path: Path
) -> None:
    stream = stream_name()
    live = variant(tmp_path / "live.toml", A_PAIR)
    store = PostgresRulesStore(pool, stream)
    log = tmp_path / "inbox.log"
    with inbox_process(command, db, endpoints.nats_url, live, log, stream) as process:

        async def activated(version: str, by: str) -> bool:
            assert process.poll() is None, log.read_text()
            active = await store.active()
            return active is not None and active.version == version and by in active.activated_by

        pid = f"(pid {process.pid} "
        a_version = version_of(live.read_text())
        await async_wait_until(
            lambda: activated(a_version, f"start {pid}"), timeout=30, what="start"
        )

        variant(live, B_PAIR)
        process.send_signal(signal.SIGHUP)
        b_version = version_of(live.read_text())
        await async_wait_until(
            lambda: activated(b_version, f"SIGHUP {pid}"), timeout=15, what="SIGHUP"
        )

        live.write_text("this is = not [toml")
        process.send_signal(signal.SIGHUP)

        async def said_why() -> bool:
            return "still judging with " + b_version in log.read_text()

        await async_wait_until(said_why, timeout=15, what="the refusal in the log")
        assert process.poll() is None, "a bad file does not stop the process"
        assert await activated(b_version, f"SIGHUP {pid}")


async def test_sighup_leaves_a_process_that_judges_no_events_running(
    db: str, endpoints: Endpoints, tmp_path: Path
) -> None:
    """SIGHUP sent to every process (``kill -HUP`` to a group, say) reloads the ones that
    judge events; a relay neither ends (the signal's default) nor touches the rules."""
    live = variant(tmp_path / "live.toml", A_PAIR)
    log = tmp_path / "relay.log"
    with inbox_process("relay", db, endpoints.nats_url, live, log, stream_name()) as process:

        async def logged(text: str) -> bool:
            assert process.poll() is None, log.read_text()
            return text in log.read_text()

        await async_wait_until(lambda: logged(": active"), timeout=30, what="the relay active")
        process.send_signal(signal.SIGHUP)
        await async_wait_until(lambda: logged("no rules to reload"), timeout=10, what="SIGHUP")
        assert process.poll() is None
    conn = await postgres.connect(db)
    try:
        assert await conn.fetchval("SELECT count(*) FROM rules_active") == 0
    finally:
        await conn.close()
