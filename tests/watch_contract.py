"""The contract of the detector's storage ports (app/ports.py: WatchStore, DeadLetterStore),
run against the in-memory fakes (tests/unit/test_watch_fakes.py) and the PostgreSQL
adapters (tests/integration/test_watch_store.py): each subclass gives a ``backend``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol
from uuid import UUID

import msgspec
import pytest

from app.ingest import validate
from app.ports import (
    BrokenOrder,
    DeadLetterStore,
    IssueCommands,
    Rejected,
    SupportContact,
    WatchStore,
    WatchUpdate,
)
from domain.issue import issue_id_for
from domain.order import OrderEvent, fold
from tests.integration.helpers import note, report
from tests.integration.test_detection import T0, ev


class Ager(Protocol):
    async def __call__(self, by: timedelta) -> None: ...


@dataclass
class Backend:
    store: WatchStore
    dead_letters: DeadLetterStore
    issues: IssueCommands  # writes the issues whose versions the store reads
    age: Ager  # every watch row and dead letter as if written that much earlier


def ready(order_id: str, minute: float = 1) -> OrderEvent:
    return ev(order_id, "order_ready", minute)


def update(
    order_id: str,
    next_at: datetime | None = None,
    *,
    clear_since: dict[str, datetime] | None = None,
    pending: list[str] | None = None,
) -> WatchUpdate:
    """A watch row as a batch writes it back: the state of one event, the rest as given."""
    return WatchUpdate(order_id, fold([ready(order_id)]), clear_since or {}, next_at, pending or [])


class WatchStoreContract:
    async def test_lock_creates_missing_rows_and_hands_them_back_sorted(
        self, backend: Backend
    ) -> None:
        store = backend.store
        async with store.lock(["b", "a"]) as batch:
            assert [(r.order_id, r.created, r.state) for r in batch.rows] == [
                ("a", True, None),
                ("b", True, None),
            ]
            assert (batch.rows[0].clear_since, batch.rows[0].pending) == ({}, [])
        async with store.lock(["a", "b", "c"]) as batch:
            assert [(r.order_id, r.created) for r in batch.rows] == [
                ("a", False),
                ("b", False),
                ("c", True),
            ]
            # Created before, never stored: no state, so it is folded again.
            assert batch.rows[0].state is None

    async def test_what_a_batch_stores_the_next_one_reads(self, backend: Backend) -> None:
        store = backend.store
        seen = {"eta_slipped": T0}
        async with store.lock(["s"]) as batch:
            await batch.store([update("s", clear_since=seen, pending=["c-1"])], [])
        async with store.lock(["s"]) as batch:
            (row,) = batch.rows
            assert row.state == fold([ready("s")])
            assert (row.clear_since, row.pending, row.created) == (seen, ["c-1"], False)

    async def test_events_are_stored_once_and_read_back(self, backend: Backend) -> None:
        store = backend.store
        first = [ready("e", 1), ev("e", "order_delivered", 2)]
        async with store.lock(["e"]) as batch:
            fresh = await batch.insert_events(first)
            assert fresh == {("e", first[0].event_id), ("e", first[1].event_id)}
            # A batch reads the events it stored itself.
            assert len(await batch.events_of(["e"])) == 2
        again = [first[1], ev("e", "payment_failed", 3, reason="no")]
        async with store.lock(["e"]) as batch:
            assert await batch.insert_events(again) == {("e", again[1].event_id)}
            stored = await batch.events_of(["e", "nobody"])
        read = sorted(
            (validate(msgspec.json.decode(s.body), None) for s in stored), key=lambda e: e.event_id
        )
        assert {s.order_id for s in stored} == {"e"}
        assert read == sorted([*first, again[1]], key=lambda e: e.event_id)

    async def test_a_batch_that_fails_leaves_nothing_behind(self, backend: Backend) -> None:
        store = backend.store
        async with store.lock(["kept"]) as batch:
            await batch.store([update("kept")], [])
        yesterday = datetime.now(UTC) - timedelta(days=1)
        contact = SupportContact("rb-c", "rb", yesterday, True, yesterday)

        async def fail() -> None:
            async with store.lock(["kept", "rb"]) as batch:
                await batch.insert_events([ready("rb")])
                await batch.record_contacts([contact])
                await batch.store([update("kept", T0, pending=["x"]), update("rb", T0)], [])
                raise RuntimeError("a bug")

        with pytest.raises(RuntimeError):
            await fail()
        async with store.lock(["kept", "rb"]) as batch:
            kept, rolled_back = batch.rows
            assert (kept.created, kept.pending) == (False, [])
            assert rolled_back.created  # its creation was rolled back too
            assert await batch.insert_events([ready("rb")]) == {("rb", ready("rb").event_id)}
        async with store.claim_due(T0, 10) as batch:
            assert batch.rows == []
        swept = await store.sweep(orders=timedelta(days=1), contacts=timedelta(0), batch=10)
        assert swept.contacts == 0

    async def test_a_batch_waits_for_another_holding_one_of_its_orders(
        self, backend: Backend
    ) -> None:
        store = backend.store
        holding, release = asyncio.Event(), asyncio.Event()
        order: list[str] = []

        async def first() -> None:
            async with store.lock(["w1", "w2"]) as batch:
                holding.set()
                await release.wait()
                await batch.store([update("w2", pending=["from-first"])], [])
                order.append("first")

        async def second() -> None:
            await holding.wait()
            async with store.lock(["w2", "w3"]) as batch:
                order.append("second")
                assert batch.rows[0].pending == ["from-first"]  # what the first committed

        tasks = [asyncio.create_task(first()), asyncio.create_task(second())]
        await holding.wait()
        await asyncio.sleep(0.2)
        assert order == []  # the second waits for the first's row
        release.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        assert order == ["first", "second"]

    async def test_due_timers_are_claimed_earliest_first_skipping_held_rows(
        self, backend: Backend
    ) -> None:
        store = backend.store
        async with store.lock(["t1", "t2", "t3", "t4", "later", "never"]) as batch:
            await batch.store(
                [
                    update("t1", T0 + timedelta(minutes=3)),
                    update("t2", T0 + timedelta(minutes=1)),
                    update("t3", T0 + timedelta(minutes=2)),
                    update("t4", T0 + timedelta(minutes=4)),
                    update("later", T0 + timedelta(hours=1)),
                    update("never"),
                ],
                [],
            )
        now = T0 + timedelta(minutes=10)
        async with store.claim_due(now, 2) as batch:
            assert [r.order_id for r in batch.rows] == ["t2", "t3"]
            assert batch.rows[0].state == fold([ready("t2")])
            async with store.claim_due(now, 10) as other:  # another replica meanwhile
                assert [r.order_id for r in other.rows] == ["t1", "t4"]
        async with store.lock(["t2"]) as batch:
            await batch.store([update("t2", None)], [])  # timer cleared
        async with store.claim_due(now, 10) as batch:
            assert [r.order_id for r in batch.rows] == ["t3", "t1", "t4"]

    async def test_a_broken_order_loses_its_state_and_keeps_a_timer(self, backend: Backend) -> None:
        store = backend.store
        async with store.lock(["ok", "bad"]) as batch:
            await batch.store([update("ok"), update("bad", pending=["p"])], [])
        retry_at = T0 + timedelta(minutes=5)
        async with store.lock(["ok", "bad"]) as batch:
            await batch.store([update("ok")], [BrokenOrder("bad", retry_at)])
        async with store.claim_due(retry_at, 10) as batch:
            (row,) = batch.rows
            assert (row.order_id, row.state, row.pending) == ("bad", None, ["p"])

    async def test_issue_versions_are_the_latest_of_those_that_exist(
        self, backend: Backend
    ) -> None:
        one, two = issue_id_for("iv-1", "order_stale"), issue_id_for("iv-2", "order_stale")
        missing: UUID = issue_id_for("iv-3", "order_stale")
        backend.issues.execute_batch([report("iv-1", "order_stale"), report("iv-2", "order_stale")])
        backend.issues.execute_batch([note(two, "a"), note(two, "b")])
        async with backend.store.lock(["iv-1"]) as batch:
            assert await batch.issue_versions([one, two, missing]) == {one: 1, two: 3}
            assert await batch.issue_versions([]) == {}

    async def test_the_sweep_drops_old_orders_with_their_events_and_old_contacts(
        self, backend: Backend
    ) -> None:
        store = backend.store
        now = datetime.now(UTC)
        async with store.lock(["old", "new"]) as batch:
            await batch.insert_events([ready("old", 1), ready("old", 2), ready("new")])
            await batch.store([update("old"), update("new")], [])
            await batch.record_contacts(
                [
                    SupportContact("c-old", "old", now - timedelta(days=100), False, None),
                    SupportContact("c-new", "new", now, True, now),
                ]
            )
        async with store.lock(["old"]) as batch:  # seen again: kept once
            await batch.record_contacts(
                [SupportContact("c-old", "old", now - timedelta(days=100), True, now)]
            )
        await backend.age(timedelta(days=8))
        async with store.lock(["new"]) as batch:
            await batch.store([update("new")], [])  # changed since: young again
        keep = {"orders": timedelta(days=7), "contacts": timedelta(days=90)}
        swept = await store.sweep(**keep, batch=1)  # several rounds of one row
        assert (swept.orders, swept.events, swept.contacts) == (1, 2, 1)
        again = await store.sweep(**keep, batch=1000)
        assert (again.orders, again.events, again.contacts) == (0, 0, 0)
        async with store.lock(["old", "new"]) as batch:
            assert [(r.order_id, r.created) for r in batch.rows] == [("new", False), ("old", True)]
            assert {s.order_id for s in await batch.events_of(["old", "new"])} == {"new"}


class DeadLetterStoreContract:
    async def test_parked_events_are_listed_oldest_first_and_deleted(
        self, backend: Backend
    ) -> None:
        letters = backend.dead_letters
        await letters.park(
            [Rejected("nats", "dl-1", "broken", b"{nope"), Rejected("http", None, "empty", b"")]
        )
        await letters.park([Rejected("detector", "dl-3", "a bug", b'{"a": 1}')])
        listed = await letters.list(10)
        assert [(d.source, d.event_id, d.reason, d.payload) for d in listed] == [
            ("nats", "dl-1", "broken", b"{nope"),
            ("http", None, "empty", b""),
            ("detector", "dl-3", "a bug", b'{"a": 1}'),
        ]
        assert [d.id for d in listed] == sorted({d.id for d in listed})
        assert all(abs(d.received_at - datetime.now(UTC)) < timedelta(minutes=1) for d in listed)
        assert await letters.list(1) == listed[:1]
        await letters.delete(listed[1].id)
        assert [d.event_id for d in await letters.list(10)] == ["dl-1", "dl-3"]

    async def test_the_sweep_drops_only_old_letters(self, backend: Backend) -> None:
        letters = backend.dead_letters
        await letters.park([Rejected("nats", "old", "x", b""), Rejected("nats", "old2", "x", b"")])
        await backend.age(timedelta(days=31))
        await letters.park([Rejected("nats", "new", "x", b"")])
        assert await letters.sweep(older_than=timedelta(days=30), batch=1) == 2
        assert [d.event_id for d in await letters.list(10)] == ["new"]
        assert await letters.sweep(older_than=timedelta(days=30), batch=1) == 0
