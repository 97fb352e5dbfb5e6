"""Idempotency keys on the write side, against real PostgreSQL: a repeat gets the first
outcome and is applied once, across replicas, within a batch and while the first is still
being stored."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from adapters.eventstore import eventstore_env
from app.bootstrap import Endpoints
from app.commands import Command, Request, Resolve
from app.errors import AnsweredBefore, KeyReused
from app.service import CommandResult, IssueApplication, IssueService, _Applied
from domain.issue import OrderIssue
from tests.conftest import wait_until
from tests.integration.helpers import note, report, service


@pytest.fixture(scope="module")
def replicas(endpoints: Endpoints) -> Iterator[list[IssueService]]:
    built = [service(endpoints.database_url), service(endpoints.database_url)]
    yield built
    for one in built:
        one.app.close()


def keyed(command: Command, key: str, fingerprint: str = "same request") -> Command:
    return dataclasses.replace(command, request=Request(key, fingerprint))


def key() -> str:
    return f"key-{uuid.uuid4()}"


def versions(replica: IssueService, issue_id: uuid.UUID) -> list[int]:
    return [event.originator_version for event in replica.app.events.get(issue_id)]


def test_a_repeated_key_gets_the_first_outcome_and_is_applied_once(
    replicas: list[IssueService],
) -> None:
    first, second = replicas
    created = first.execute(report(f"ord-{uuid.uuid4().hex[:12]}"))
    k = key()
    once = first.execute(keyed(note(created.issue_id, "called the venue"), k))
    again = second.execute(keyed(note(created.issue_id, "called the venue"), k))
    assert again == once
    assert versions(first, created.issue_id) == [1, 2]


def test_a_key_creating_an_issue_is_applied_once(replicas: list[IssueService]) -> None:
    k = key()
    command = keyed(report(f"ord-{uuid.uuid4().hex[:12]}"), k)
    once = replicas[0].execute(command)
    assert replicas[1].execute(command) == once  # not "already exists"


def test_a_key_reused_for_another_request_is_refused(replicas: list[IssueService]) -> None:
    created = replicas[0].execute(report(f"ord-{uuid.uuid4().hex[:12]}"))
    k = key()
    replicas[0].execute(keyed(note(created.issue_id, "a"), k, "note a"))
    with pytest.raises(KeyReused):
        replicas[0].execute(keyed(note(created.issue_id, "b"), k, "note b"))
    assert versions(replicas[0], created.issue_id) == [1, 2]


def test_a_key_repeated_within_one_batch_is_applied_once(replicas: list[IssueService]) -> None:
    created = replicas[0].execute(report(f"ord-{uuid.uuid4().hex[:12]}"))
    k = key()
    command = keyed(note(created.issue_id, "twice in one batch"), k)
    other = keyed(note(created.issue_id, "another"), k, "another request")
    outcomes = replicas[0].execute_batch([command, command, other])
    assert isinstance(outcomes[0], CommandResult)
    assert outcomes[1] == outcomes[0]
    assert isinstance(outcomes[2], KeyReused)
    assert versions(replicas[0], created.issue_id) == [1, 2]


def test_a_remembered_refusal_is_answered_again(replicas: list[IssueService]) -> None:
    created = replicas[0].execute(report(f"ord-{uuid.uuid4().hex[:12]}"))
    k = key()
    body = {"status_code": 409, "detail": "refused the first time"}
    replicas[0].remember_refusal(Request(k, "same request"), 409, body)
    with pytest.raises(AnsweredBefore) as refused:
        replicas[1].execute(keyed(note(created.issue_id, "would be allowed now"), k))
    assert (refused.value.status_code, refused.value.body) == (409, body)
    assert versions(replicas[0], created.issue_id) == [1]


def test_a_repeat_while_the_first_is_still_being_stored_waits_for_it(
    endpoints: Endpoints, replicas: list[IssueService]
) -> None:
    """The first replica's transaction is held inside its save (the events table is
    locked by someone else); the repeat on the other replica finds no key yet, tries,
    and must end with the first outcome, not a second note."""
    first, second = replicas
    created = first.execute(report(f"ord-{uuid.uuid4().hex[:12]}"))
    command = keyed(note(created.issue_id, "once only"), key())
    with psycopg.connect(endpoints.database_url, autocommit=False) as blocker:
        blocker.execute("LOCK TABLE inbox_events IN EXCLUSIVE MODE")
        with ThreadPoolExecutor(2) as pool:
            started = threading.Event()

            def run(replica: IssueService) -> CommandResult:
                started.set()
                return replica.execute(command)

            one = pool.submit(run, first)
            wait_until(started.is_set, what="the first command to start")
            wait_until(lambda: _waiting_on_lock(endpoints) >= 1, what="the first save to wait")
            two = pool.submit(second.execute, command)
            wait_until(lambda: _waiting_on_lock(endpoints) >= 2, what="the repeat to wait")
            blocker.rollback()  # let both go
            assert one.result(timeout=30) == two.result(timeout=30)
    assert versions(first, created.issue_id) == [1, 2]


def _waiting_on_lock(endpoints: Endpoints) -> int:
    with psycopg.connect(endpoints.database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_an_expired_key_is_free_again_and_swept(endpoints: Endpoints) -> None:
    """Each key keeps the expiry its writer gave it (a replica with another window
    setting cannot shorten it); here a window of zero: expired at once."""
    replica = service(endpoints.database_url)
    replica.request_window = timedelta(0)
    try:
        created = replica.execute(report(f"ord-{uuid.uuid4().hex[:12]}"))
        k = key()
        replica.execute(keyed(note(created.issue_id, "first"), k))
        replica.execute(keyed(note(created.issue_id, "first"), k))
        assert versions(replica, created.issue_id) == [1, 2, 3]
        assert replica.sweep_requests() >= 1
    finally:
        replica.app.close()


def test_a_key_keeps_the_window_it_was_stored_with(replicas: list[IssueService]) -> None:
    created = replicas[0].execute(report(f"ord-{uuid.uuid4().hex[:12]}"))
    k = key()
    once = replicas[0].execute(keyed(note(created.issue_id, "first"), k))
    window = replicas[1].request_window
    replicas[1].request_window = timedelta(0)
    try:
        replicas[1].sweep_requests()
        assert replicas[1].execute(keyed(note(created.issue_id, "first"), k)) == once
    finally:
        replicas[1].request_window = window
    assert versions(replicas[0], created.issue_id) == [1, 2]


def test_a_repeat_racing_its_first_attempt_gets_the_first_outcome_not_a_refusal(
    endpoints: Endpoints,
) -> None:
    """The first attempt lands (on another replica) between the repeat's look at the keys
    and its read of the issue: judged on that state the repeat would be refused (the
    version moved on); it must get the first outcome instead."""
    first, repeat = service(endpoints.database_url), service(endpoints.database_url)
    try:
        created = first.execute(report(f"ord-{uuid.uuid4().hex[:12]}"))
        command = keyed(note(created.issue_id, "once", expected_version=1), key())
        landed: list[CommandResult] = []
        read = repeat._load

        def read_after_the_first_lands(issue_ids: set[uuid.UUID], **kw: bool) -> Any:
            if not landed:
                landed.append(first.execute(command))
            return read(issue_ids, **kw)

        repeat._load = read_after_the_first_lands  # type: ignore[method-assign]
        assert repeat.execute(command) == landed[0]
        assert versions(first, created.issue_id) == [1, 2]
    finally:
        first.app.close()
        repeat.app.close()


def test_a_refusal_that_rested_on_an_unsaved_change_is_judged_again(
    endpoints: Endpoints,
) -> None:
    """[resolve, resolve with a key] in one batch: the second is refused because the
    first resolved the issue in memory; the save then conflicts (another writer added a
    note), so that refusal rested on a state never stored and must not be the answer
    kept for the key."""
    batch, other = service(endpoints.database_url), service(endpoints.database_url)
    try:
        created = batch.execute(report(f"ord-{uuid.uuid4().hex[:12]}"))
        issue_id = created.issue_id

        def resolve(**kw: Any) -> Resolve:
            return Resolve(issue_id=issue_id, actor="ann", resolution="fixed", note="", **kw)

        save = batch._save
        raced: list[bool] = []

        def save_after_another_writer(
            aggregates: list[OrderIssue], applied: Sequence[_Applied]
        ) -> dict[tuple[uuid.UUID, int], int]:
            if not raced:
                raced.append(True)
                other.execute(note(issue_id, "meanwhile"))
            return save(aggregates, applied)

        batch._save = save_after_another_writer  # type: ignore[method-assign]
        k = key()
        outcomes = batch.execute_batch([resolve(), resolve(request=Request(k, "resolve"))])
        assert isinstance(outcomes[1], CommandResult), outcomes
        state: OrderIssue = batch.app.repository.get(issue_id)
        assert state.status == "resolved"
        assert batch.execute(resolve(request=Request(k, "resolve"))) == outcomes[1]
    finally:
        batch.app.close()
        other.app.close()


def test_the_event_store_refuses_to_start_with_its_insert_function(endpoints: Endpoints) -> None:
    """The library's insert function bypasses the recorder's key insert: no key would be
    stored with its event."""
    env = eventstore_env(endpoints.database_url, pool_size=1) | {
        "POSTGRES_ENABLE_DB_FUNCTIONS": "y"
    }
    with pytest.raises(ValueError, match="POSTGRES_ENABLE_DB_FUNCTIONS"):
        IssueApplication(env=env)
