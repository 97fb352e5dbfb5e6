"""Events a read model cannot apply: found, left out, listed (issue 10).

An error while decoding or applying events is either about the **events** (a value the
database refuses, such as text holding NUL; a fold that cannot apply an event; a stored
state the mapper cannot decode) or about the **database** (a lost connection, a deadlock,
a missing table); the event source tells them apart (``EventSource.about_the_event``,
adapters/eventlog.py). The first kind is the same on every try: the event is skipped, listed
in ``projection_failures`` (model, position, issue, version, error), logged and counted,
and the model goes on with the rest. The second kind may pass: the whole batch is tried
again, as before.

:func:`apply_isolating` finds the events to leave out of a batch whose apply failed: it
applies halves of the failing part, each in a savepoint, down to single events, so that a
batch with one bad event costs about twice log2(batch) applies, and every other event of
the batch is applied in position order.

What a skipped event means for its issue: the row lacks that event's effect. A skipped
Detected leaves no row, so the issue's later events are skipped too (listed, "before
detected"); a later skipped event leaves the row as it was, and the issue's events after
it still apply to it (the row is stale in what the skipped event changed). ``inbox
rebuild NAME`` after a fix applies them again; whatever it still cannot apply it lists in
place of the model's old list.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

import asyncpg
from prometheus_client import Counter

if TYPE_CHECKING:
    from projections.follower import Batch, Projection
    from projections.source import EventSource

log = logging.getLogger(__name__)

SKIPPED = Counter(
    "inbox_projection_skipped_events_total",
    "Events a projection could not apply, skipped and listed in projection_failures",
    ["projection"],
)

_MAX_ERROR_LENGTH = 2000


@dataclass(frozen=True)
class Failure:
    """One event a model could not apply, and why."""

    position: int
    issue_id: UUID
    version: int
    error: str


def describe(exc: BaseException) -> str:
    """The error as stored and shown: text PostgreSQL takes whatever the message holds."""
    text = f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_LENGTH]
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def decode_rows(
    source: EventSource, rows: Sequence[asyncpg.Record]
) -> tuple[list[tuple[int, Any]], list[Failure]]:
    """The domain events of ``rows`` (rows of the events table) as (position, event), and
    the rows whose stored state cannot be decoded."""
    events: list[tuple[int, Any]] = []
    failures: list[Failure] = []
    for row in rows:
        try:
            events.append((row["notification_id"], source.decode(row)))
        except Exception as exc:
            if not source.about_the_event(exc):
                raise
            failures.append(
                Failure(
                    row["notification_id"],
                    row["originator_id"],
                    row["originator_version"],
                    f"cannot decode: {describe(exc)}",
                )
            )
    return events, failures


async def apply_isolating(
    conn: asyncpg.Connection,
    projection: Projection,
    batch: Batch,
    tables: dict[str, str],
    source: EventSource,
) -> list[Failure]:
    """Apply ``batch`` inside the caller's transaction, leaving out the events whose apply
    fails for a reason about the events; returns those. Any other error propagates (the
    caller's transaction is then to be rolled back)."""
    try:
        async with conn.transaction():  # a savepoint
            await projection.apply(conn, batch, tables)
    except Exception as exc:
        if not source.about_the_event(exc):
            raise
        if len(batch) == 1:
            position, event = batch[0]
            return [Failure(position, event.originator_id, event.originator_version, describe(exc))]
    else:
        return []
    middle = len(batch) // 2
    first = await apply_isolating(conn, projection, batch[:middle], tables, source)
    return first + await apply_isolating(conn, projection, batch[middle:], tables, source)


async def record(conn: asyncpg.Connection, name: str, failures: Sequence[Failure]) -> None:
    """List ``failures`` of model ``name`` in ``projection_failures`` (in the caller's
    transaction; :func:`report` them once it committed)."""
    if not failures:
        return
    await conn.executemany(
        "INSERT INTO projection_failures (projection, position, issue_id, version, error)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (projection, position) DO UPDATE"
        " SET issue_id = EXCLUDED.issue_id, version = EXCLUDED.version,"
        " error = EXCLUDED.error, failed_at = now()",
        [(name, f.position, f.issue_id, f.version, f.error) for f in failures],
    )


def report(who: str, failures: Sequence[Failure]) -> None:
    """Log each failure with its position (``who``: the follower or rebuild of a model)."""
    for failure in failures:
        log.error(
            "%s: skipped the event at position %d (issue %s, version %d): %s",
            who,
            failure.position,
            failure.issue_id,
            failure.version,
            failure.error,
        )
