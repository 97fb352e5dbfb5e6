"""GET /api/issues' query layer against real PostgreSQL: keyset pagination visits every
matching issue exactly once, in order, while new issues keep arriving (hypothesis)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters import postgres
from app.bootstrap import Endpoints
from app.queries import Filters, ReadModels
from projections.inbox import COLUMNS

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def query_db(servers: Endpoints) -> Iterator[str]:
    name = f"inbox_q_{uuid.uuid4().hex[:10]}"

    async def create() -> str:
        conn = await postgres.connect(servers.database_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        url = postgres.with_database(servers.database_url, name)
        await postgres.apply_migrations(url, REPO / "migrations")
        return url

    async def drop() -> None:
        conn = await postgres.connect(servers.database_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    yield asyncio.run(create())
    asyncio.run(drop())


SEVERITIES = {"low": 100, "medium": 200, "high": 300, "critical": 400}


@st.composite
def issue_rows(draw: st.DrawFn) -> dict[str, Any]:
    severity = draw(st.sampled_from(sorted(SEVERITIES)))
    # Few distinct times, so that ties on the sort keys are common.
    detected = T0 + timedelta(minutes=draw(st.integers(0, 5)))
    return {
        "issue_id": draw(st.uuids()),
        "order_id": f"o{draw(st.integers(0, 5))}",
        "kind": draw(st.sampled_from(["eta_slipped", "payment_failed"])),
        "status": draw(st.sampled_from(["open", "acknowledged", "snoozed", "resolved"])),
        "status_before_snooze": None,
        "severity": severity,
        "priority": SEVERITIES[severity],
        "vertical": draw(st.sampled_from(["restaurant", "parcel"])),
        "country": draw(st.sampled_from(["FI", "SE"])),
        "city": "X",
        "assignee": draw(st.sampled_from([None, "ann", "bob"])),
        "detected_at": detected,
        "updated_at": detected + timedelta(minutes=draw(st.integers(0, 3))),
        "due_at": detected,
        "sla_minutes": None,
        "resolved_at": None,
        "resolved_by": None,
        "resolution": None,
        "snoozed_until": None,
        "evidence": "{}",
        "note_count": 0,
        "action_count": 0,
        "reopen_count": 0,
        "version": 1,
        "position": draw(st.integers(1, 10**9)),
    }


filters = st.builds(
    Filters,
    status=st.lists(
        st.sampled_from(["open", "acknowledged", "snoozed", "resolved"]), max_size=2
    ).map(tuple),
    severity=st.lists(st.sampled_from(sorted(SEVERITIES)), max_size=2).map(tuple),
    country=st.lists(st.sampled_from(["FI", "SE", "NO"]), max_size=1).map(tuple),
    assignee=st.lists(st.sampled_from(["ann", "bob"]), max_size=1).map(tuple),
)


class Row(Protocol):
    """A row by column name: a generated dict or an asyncpg.Record read back."""

    def __getitem__(self, key: str, /) -> Any: ...


def matches(row: Row, f: Filters) -> bool:
    if not f.status and row["status"] == "resolved":
        return False
    return all(
        not getattr(f, name) or row[name] in getattr(f, name)
        for name in ("status", "severity", "country", "assignee")
    )


SORT_KEYS: dict[str, Callable[[Row], tuple[Any, ...]]] = {
    "priority": lambda r: (-r["priority"], r["detected_at"], r["issue_id"]),
    "detected_at": lambda r: (-r["detected_at"].timestamp(), -r["issue_id"].int),
    "updated_at": lambda r: (-r["updated_at"].timestamp(), -r["issue_id"].int),
}


async def _insert(conn: Any, rows: list[dict[str, Any]]) -> None:
    await conn.copy_records_to_table(
        "inbox_issues", records=[tuple(r[c] for c in COLUMNS) for r in rows], columns=COLUMNS
    )


async def _paginate(
    url: str,
    rows: list[dict[str, Any]],
    f: Filters,
    sort: str,
    limit: int,
    arrivals: list[dict[str, Any]],
) -> None:
    pool = await postgres.create_pool(url, max_size=2)
    try:
        await pool.execute("TRUNCATE inbox_issues")
        async with pool.acquire() as conn:
            await _insert(conn, rows)
        read = ReadModels(pool)
        seen: list[asyncpg.Record] = []
        cursor = None
        while True:
            page, cursor = await read.issues(f, sort, limit, cursor)
            assert len(page) <= limit
            seen += page
            if arrivals:  # a new issue arrives between pages
                async with pool.acquire() as conn:
                    await _insert(conn, [arrivals.pop()])
            if cursor is None:
                break
    finally:
        await pool.close()
    ids = [r["issue_id"] for r in seen]
    assert len(ids) == len(set(ids)), "an issue was shown twice"
    assert all(matches(r, f) for r in seen), "an issue outside the filters was shown"
    expected = {r["issue_id"] for r in rows if matches(r, f)}
    assert expected <= set(ids), "an issue was skipped"
    keys = [SORT_KEYS[sort](r) for r in seen]
    assert keys == sorted(keys), "pages out of order"


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=st.lists(issue_rows(), max_size=40, unique_by=lambda r: r["issue_id"]),
    f=filters,
    sort=st.sampled_from(sorted(SORT_KEYS)),
    limit=st.integers(1, 9),
    arrivals=st.lists(issue_rows(), max_size=8, unique_by=lambda r: r["issue_id"]),
)
def test_pagination_visits_each_matching_issue_once_while_issues_arrive(
    query_db: str,
    rows: list[dict[str, Any]],
    f: Filters,
    sort: str,
    limit: int,
    arrivals: list[dict[str, Any]],
) -> None:
    taken = {r["issue_id"] for r in rows}
    arrivals = [a for a in arrivals if a["issue_id"] not in taken]
    asyncio.run(_paginate(query_db, rows, f, sort, limit, arrivals))
