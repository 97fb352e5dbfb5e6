"""Per-market scopes (CONTRACT §6) against real PostgreSQL: every read answers only what
is in the caller's scope, an issue outside it reads and acts as unknown, and the global
log pages exactly through the in-scope events while more are written."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from adapters import postgres
from app.commands import Acknowledge, AddNote, Assign, Report, Resolve
from app.errors import IssueNotFound
from app.history import History
from app.queries import Filters, ReadModels
from app.scope import EVERYWHERE, Scope
from app.service import IssueService
from domain.errors import InvalidValue
from tests.databases import create_database, drop_database
from tests.integration.helpers import T0, service
from tests.integration.projecting import running_projections, wait_projected

REPO = Path(__file__).resolve().parents[2]
FI = Scope(countries=frozenset({"FI"}))
FI_RESTAURANTS = Scope(verticals=frozenset({"restaurant"}), countries=frozenset({"FI"}))
NOWHERE = Scope(verticals=frozenset())

# The (vertical, country) of each issue a test raised, by id.
Markets = dict[UUID, tuple[str, str]]
# The markets of the issues the tests raise, round robin.
MARKETS = [("restaurant", "FI"), ("grocery", "FI"), ("restaurant", "DE"), ("parcel", "SE")]


def raised(order_id: str, vertical: str, country: str, **fields: Any) -> Report:
    return Report(
        actor="lea",
        order_id=order_id,
        kind="venue_acceptance_delayed",
        severity="medium",
        vertical=vertical,
        country=country,
        city="Somewhere",
        evidence={},
        **fields,
    )


def raise_issues(writer: IssueService, count: int, prefix: str = "o") -> Markets:
    """``count`` issues over MARKETS: each one's (vertical, country), by id."""
    made: Markets = {}
    commands = []
    for n, (vertical, country) in zip(range(count), itertools.cycle(MARKETS), strict=False):
        commands.append(raised(f"{prefix}{n}-{uuid.uuid4().hex[:6]}", vertical, country))
    for command, outcome in zip(commands, writer.execute_batch(commands), strict=True):
        assert not isinstance(outcome, Exception), outcome
        made[command.issue_id] = (command.vertical, command.country)
    return made


def history(writer: IssueService, pool: asyncpg.Pool) -> History:
    return History(pool, writer.app.mapper)


# Commands


def test_a_command_out_of_scope_is_refused_as_unknown_and_changes_nothing(
    writer: IssueService,
) -> None:
    de = raised("o-de", "restaurant", "DE")
    writer.execute(de)
    before = writer.current({de.issue_id})[de.issue_id].version
    unknown = uuid.uuid4()
    for issue_id in (de.issue_id, unknown):
        for command in (
            Acknowledge(issue_id=issue_id, actor="ann", scope=FI),
            Assign(issue_id=issue_id, actor="ann", assignee="ann", scope=FI),
            AddNote(issue_id=issue_id, actor="ann", text="x", scope=FI),
            Resolve(issue_id=issue_id, actor="ann", resolution="fixed", note="", scope=FI),
        ):
            outcome = writer.execute_batch([command])[0]
            assert isinstance(outcome, IssueNotFound)
            assert str(outcome) == f"issue {issue_id} not found"
    assert writer.current({de.issue_id})[de.issue_id].version == before
    # In scope (or unscoped, as the system acts) the same command is applied.
    writer.execute(
        Acknowledge(issue_id=de.issue_id, actor="ann", scope=Scope(countries=frozenset({"DE"})))
    )
    writer.execute(AddNote(issue_id=de.issue_id, actor="system", text="x"))
    assert writer.current({de.issue_id})[de.issue_id].version == before + 2


def test_raising_an_issue_outside_the_scope_is_refused_naming_the_field(
    writer: IssueService,
) -> None:
    for command, field in (
        (raised("o-r1", "grocery", "FI", scope=FI_RESTAURANTS), "vertical"),
        (raised("o-r2", "restaurant", "DE", scope=FI_RESTAURANTS), "country"),
        (raised("o-r3", "restaurant", "FI", scope=NOWHERE), "vertical"),
    ):
        outcome = writer.execute_batch([command])[0]
        assert isinstance(outcome, InvalidValue)
        assert (outcome.field, outcome.reason) == (field, "outside your scope")
        assert writer.current({command.issue_id}) == {}
    # Another market's order that has the issue already: not "already exists" (409).
    writer.execute(raised("o-r4", "restaurant", "DE"))
    outcome = writer.execute_batch([raised("o-r4", "restaurant", "FI", scope=FI)])[0]
    assert isinstance(outcome, InvalidValue)
    assert outcome.field == "order_id"
    writer.execute(raised("o-r5", "restaurant", "FI", scope=FI_RESTAURANTS))


async def test_each_issue_has_its_scope_row_from_its_first_event(
    writer: IssueService, pool: asyncpg.Pool
) -> None:
    made = raise_issues(writer, 8)
    issue_id = next(iter(made))
    writer.execute(AddNote(issue_id=issue_id, actor="ann", text="x"))
    rows = await pool.fetch("SELECT issue_id, vertical, country FROM issue_scope")
    assert {r["issue_id"]: (r["vertical"], r["country"]) for r in rows} == made


# Histories and the global log


async def test_history_and_state_out_of_scope_read_as_unknown(
    writer: IssueService, pool: asyncpg.Pool
) -> None:
    fi = raised("o-h1", "restaurant", "FI")
    de = raised("o-h2", "restaurant", "DE")
    writer.execute_batch([fi, de])
    reads = history(writer, pool)
    assert len(await reads.issue_history(fi.issue_id, FI)) == 1
    assert (await reads.issue_state(fi.issue_id, FI, 1)) is not None
    assert await reads.issue_history(de.issue_id, FI) == []
    assert await reads.issue_state(de.issue_id, FI, 1) is None
    assert await reads.issue_state(de.issue_id, NOWHERE) is None
    assert len(await reads.issue_history(de.issue_id, EVERYWHERE)) == 1


async def test_the_log_pages_through_exactly_the_events_in_scope_while_more_are_written(
    writer: IssueService, pool: asyncpg.Pool
) -> None:
    made = raise_issues(writer, 40)
    ids = list(made)
    writer.execute_batch([AddNote(issue_id=i, actor="ann", text="a") for i in ids])
    reads = history(writer, pool)
    seen: list[tuple[int, UUID, int]] = []
    after = 0
    for page in itertools.count():
        items = await reads.log(FI, after=after, limit=3)
        seen += [(item.position, item.issue_id, item.version) for item in items]
        if page < 15:
            # Between pages: new issues of every market, and events of the old ones.
            made.update(raise_issues(writer, 2, prefix=f"p{page}-"))
            writer.execute_batch([AddNote(issue_id=ids[page], actor="ann", text="b")])
        if len(items) < 3:
            break
        after = items[-1].position
    expected = await pool.fetch(
        "SELECT notification_id, originator_id, originator_version FROM inbox_events"
        " ORDER BY notification_id"
    )
    in_scope = [
        (r["notification_id"], r["originator_id"], r["originator_version"])
        for r in expected
        if made[r["originator_id"]][1] == "FI"
    ]
    assert seen == in_scope
    assert len(in_scope) > 40  # 20 issues raised and noted, and those written meanwhile
    assert await reads.log(NOWHERE, after=0, limit=100) == []
    everything = await reads.log(EVERYWHERE, after=0, limit=1000)
    assert len(everything) == len(expected)


# Read models


@pytest.fixture
async def projected(db: str, writer: IssueService) -> Markets:
    made = raise_issues(writer, 16)
    ids = list(made)
    writer.execute_batch([Assign(issue_id=i, actor="ann", assignee="ann") for i in ids[:4]])
    async with running_projections(db, writer):
        await wait_projected(db)
    return made


async def test_the_inbox_list_counts_and_feed_hold_only_the_scope(
    pool: asyncpg.Pool, projected: Markets
) -> None:
    reads = ReadModels(pool)
    fi = {i for i, (_, country) in projected.items() if country == "FI"}
    fi_restaurant = {i for i, market in projected.items() if market == ("restaurant", "FI")}

    async def listed(filters: Filters) -> set[UUID]:
        found: set[UUID] = set()
        cursor = None
        while True:
            rows, cursor = await reads.issues(filters, "priority", 3, cursor)
            found |= {row["issue_id"] for row in rows}
            if cursor is None:
                return found

    assert await listed(Filters(scope=FI)) == fi
    assert await listed(Filters(scope=FI_RESTAURANTS)) == fi_restaurant
    assert await listed(Filters(vertical=("restaurant",), scope=FI)) == fi_restaurant
    # An explicit filter outside the scope: an empty page, not an error.
    assert await listed(Filters(country=("DE",), scope=FI)) == set()
    assert await listed(Filters(scope=NOWHERE)) == set()
    assert await listed(Filters()) == set(projected)

    async def counted(filters: Filters) -> int:
        return (await reads.counts(filters)).total

    assert await counted(Filters(scope=FI)) == len(fi)  # the counts model
    assert (
        await counted(Filters(assignee=("ann",), scope=FI))
        == len(  # the inbox model
            fi & set(list(projected)[:4])
        )
    )
    assert await counted(Filters(country=("DE",), scope=FI)) == 0

    changed = await reads.changed_since(Filters(scope=FI), 0, 1000)
    assert {row["issue_id"] for row in changed} == fi
    assert await reads.changed_since(Filters(scope=NOWHERE), 0, 1000) == []


async def test_one_issue_and_one_order_out_of_scope_read_as_unknown(
    pool: asyncpg.Pool, projected: Markets
) -> None:
    reads = ReadModels(pool)
    de = next(i for i, (_, country) in projected.items() if country == "DE")
    fi = next(i for i, (_, country) in projected.items() if country == "FI")
    assert await reads.issue(de, FI) is None
    assert await reads.issue(de, EVERYWHERE) is not None
    row = await reads.issue(fi, FI)
    assert row is not None
    order_id = row["order_id"]
    assert [r["issue_id"] for r in await reads.order(order_id, FI)] == [fi]
    de_row = await reads.issue(de, EVERYWHERE)
    assert de_row is not None
    assert await reads.order(de_row["order_id"], FI) == []
    # The detector's view of the order is bounded the same way.
    state = '{"order_id": "w1", "vertical": "restaurant", "country": "DE", "city": "Berlin"}'
    await pool.execute("INSERT INTO order_watch (order_id, state) VALUES ('w1', $1::jsonb)", state)
    assert (await reads.watched_order("w1", FI))[0] is None
    assert (await reads.watched_order("w1", Scope(countries=frozenset({"DE"}))))[0] is not None
    assert (await reads.watched_order("w1", EVERYWHERE))[0] is not None


async def test_the_kpi_counts_the_contacts_of_orders_in_scope(pool: asyncpg.Pool) -> None:
    contacts = [
        ("c1", "a", "restaurant", "FI"),
        ("c2", "b", "grocery", "FI"),
        ("c3", "c", "restaurant", "DE"),
        ("c4", "d", None, None),  # of before scopes, its order gone: unscoped callers only
    ]
    await pool.executemany(
        "INSERT INTO support_contacts (event_id, order_id, contacted_at, detected, vertical,"
        " country) VALUES ($1, $2, $3, false, $4, $5)",
        [(e, o, T0, v, c) for e, o, v, c in contacts],
    )
    reads = ReadModels(pool)
    window = (T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    assert (await reads.contacts(*window, FI)).contacts == 2
    assert (await reads.contacts(*window, FI_RESTAURANTS)).contacts == 1
    assert (await reads.contacts(*window, NOWHERE)).contacts == 0
    assert (await reads.contacts(*window, EVERYWHERE)).contacts == 4


# The migration's backfill


async def test_the_migration_fills_the_scope_of_issues_raised_before_it(
    fresh_database: str, tmp_path: Path
) -> None:
    for migration in sorted((REPO / "migrations").glob("*.sql")):
        if migration.name < "0010":
            shutil.copy(migration, tmp_path)
    await postgres.apply_migrations(fresh_database, tmp_path)
    # Issues stored as the event store did before 0010 (no scope rows): written in a
    # database that has the table, then copied over.
    source = f"inbox_test_src_{uuid.uuid4().hex[:8]}"
    source_url = await create_database(fresh_database, source)
    try:
        await postgres.apply_migrations(source_url, REPO / "migrations")
        writer = service(source_url)
        try:
            made = raise_issues(writer, 6)
            writer.execute_batch([AddNote(issue_id=i, actor="ann", text="x") for i in made])
        finally:
            writer.app.close()
        src = await postgres.connect(source_url)
        try:
            events = await src.fetch(
                "SELECT originator_id, originator_version, topic, state, notification_id"
                " FROM inbox_events"
            )
        finally:
            await src.close()
    finally:
        await drop_database(fresh_database, source)
    conn = await postgres.connect(fresh_database)
    try:
        await conn.executemany(
            "INSERT INTO inbox_events (originator_id, originator_version, topic, state,"
            " notification_id) VALUES ($1, $2, $3, $4, $5)",
            [tuple(e) for e in events],
        )
        await conn.execute(
            "INSERT INTO order_events (order_id, event_id, body) VALUES"
            ' (\'k1\', \'c-k1\', \'{"vertical": "grocery", "country": "SE"}\')'
        )
        await conn.execute(
            "INSERT INTO support_contacts (event_id, order_id, contacted_at, detected) VALUES"
            " ('c-k1', 'k1', now(), false), ('c-k2', 'gone', now(), false)"
        )
        shutil.copy(REPO / "migrations" / "0010_issue_scope.sql", tmp_path)
        assert await postgres.apply_migrations(fresh_database, tmp_path) == ["0010_issue_scope.sql"]
        rows = await conn.fetch("SELECT issue_id, vertical, country FROM issue_scope")
        assert {r["issue_id"]: (r["vertical"], r["country"]) for r in rows} == made
        contacts = await conn.fetch(
            "SELECT event_id, vertical, country FROM support_contacts ORDER BY event_id"
        )
        assert [tuple(r) for r in contacts] == [("c-k1", "grocery", "SE"), ("c-k2", None, None)]
    finally:
        await conn.close()


async def test_concurrent_raises_of_issues_write_their_scope_rows_without_deadlock(
    db: str, writer: IssueService, pool: asyncpg.Pool
) -> None:
    """Two replicas raising overlapping sets of issues in opposite orders: each issue
    once, with its one scope row, and neither waits for ever."""
    other = service(db)
    try:
        batch = [raised(f"o-c{n}", "restaurant", "FI") for n in range(30)]

        def run(one: IssueService, commands: list[Report]) -> list[Any]:
            return one.execute_batch(commands)

        outcomes = await asyncio.wait_for(
            asyncio.gather(
                asyncio.to_thread(run, writer, batch),
                asyncio.to_thread(run, other, list(reversed(batch))),
            ),
            60,
        )
    finally:
        other.app.close()
    assert all(o is not None for result in outcomes for o in result)
    assert await pool.fetchval("SELECT count(*) FROM issue_scope") == 30
    assert await pool.fetchval("SELECT count(*) FROM inbox_events") == 30
