"""``inbox detect``: the ORDERS stream consumer and the durable-timer loop.

The consumer is a durable JetStream pull consumer shared by every detector replica. A
batch is acknowledged only after the detector stored its effect; an event that cannot be
read, however that fails (over the size bound, malformed, nested too deep, invalid), is
terminated, counted, logged with its id and parked in ``dead_letters``, and never stops
the consumer. Timers are rows claimed with ``SKIP LOCKED``, so replicas share them and a
restarted detector fires every one that came due meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass

import asyncpg
from eventsourcing.persistence import InterfaceError, OperationalError
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.api import AckPolicy, ConsumerConfig

from adapters.loops import backoff, wait_or_stop
from adapters.nats import ensure_stream
from adapters.postgres import CONNECTION_ERRORS, DatabaseUnavailable
from app.detection import Detector, Retention
from app.ingest import InvalidEvent, decode
from domain.order import OrderEvent
from domain.ruleset import RuleSet

log = logging.getLogger(__name__)

# The read side (asyncpg) and the event store (the library, psycopg) losing the database,
# and a transaction the server rolled back (a deadlock, a serialization failure): the
# batch is handed back for redelivery.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    DatabaseUnavailable,
    *CONNECTION_ERRORS,
    asyncpg.TransactionRollbackError,
    OperationalError,
    InterfaceError,
)


@dataclass(frozen=True)
class ConsumerConfigValues:
    stream: str
    subject_prefix: str
    durable: str = "inbox-detector"
    batch_size: int = 2000
    create_stream: bool = True
    duplicate_window: float = 20 * 60.0
    # A batch fetched by a detector that died is redelivered after this long.
    ack_wait: float = 30.0
    # Batches handled at once (one decoding while another waits for the database).
    in_flight: int = 2


async def consume_orders(
    nats: NATS, detector: Detector, config: ConsumerConfigValues, stop: asyncio.Event
) -> None:
    """Fetch batches and hand each to :func:`_handle`, with up to ``config.in_flight`` of
    them being handled at once: while one waits for the database the next is decoded and
    evaluated. Two batches naming one order serialize on its watch row (locked in order-id
    order, so they never deadlock), and each batch is acknowledged after its own commit."""
    js = nats.jetstream()
    if config.create_stream:
        await ensure_stream(
            js,
            name=config.stream,
            subjects=[f"{config.subject_prefix}.>"],
            duplicate_window=config.duplicate_window,
        )
    subscription = await js.pull_subscribe(
        f"{config.subject_prefix}.>",
        durable=config.durable,
        stream=config.stream,
        config=ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT, ack_wait=config.ack_wait, max_ack_pending=20_000
        ),
    )
    failures = 0
    handling: set[asyncio.Task[None]] = set()
    try:
        while not stop.is_set():
            _reap(handling)
            if len(handling) >= config.in_flight:
                await asyncio.wait(handling, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                messages = await subscription.fetch(config.batch_size, timeout=1)
            except TimeoutError:  # nats-py raises its own and the builtin one: "empty"
                continue
            except NatsError as exc:
                failures += 1
                log.warning("detector: fetch failed (%s); retrying", exc)
                await wait_or_stop(stop, backoff(failures))
                continue
            failures = 0
            detector.behind = _pending(messages) > 0
            handling.add(asyncio.create_task(_handle(detector, messages, stop)))
    finally:
        if handling:  # let the batches in hand finish (or fail) before returning
            await asyncio.wait(handling)
        _reap(handling)


def _pending(messages: list[Msg]) -> int:
    """How many messages the stream held for the consumer after this batch."""
    try:
        return int(messages[-1].metadata.num_pending)
    except (AttributeError, ValueError, TypeError, IndexError) as exc:
        log.warning("detector: no pending count on a fetched batch (%s)", exc)
        return 0


def _reap(handling: set[asyncio.Task[None]]) -> None:
    """Forget the finished batches; one whose handling itself failed (NATS gone while
    acknowledging, say) fails the consumer: its worker is restarted, the batch
    redelivered."""
    for task in [task for task in handling if task.done()]:
        handling.discard(task)
        task.result()


async def _handle(detector: Detector, messages: list[Msg], stop: asyncio.Event) -> None:
    """Validate, park the invalid, ingest the valid, then acknowledge; a database outage
    naks the batch for redelivery. A batch that fails otherwise (a bug, a row no code
    expected) is tried again order by order, so that only the orders that fail are set
    aside: their events parked in ``dead_letters`` (replayable once fixed), the rest
    stored and acknowledged, and the consumer goes on."""
    valid: list[tuple[Msg, OrderEvent]] = []
    invalid: list[tuple[Msg, str | None, str]] = []
    rules = detector.rules  # the batch is validated and judged by one version
    for message in messages:
        try:
            valid.append((message, decode(message.data, rules)))
        except InvalidEvent as exc:
            invalid.append((message, exc.event_id, exc.reason))
        except Exception as exc:
            # Not one of the ways an event is known to be bad: a bug, or the decoder out
            # of memory. Parked all the same, so a redelivery cannot fail again forever.
            log.exception("detector: an event could not be read (%d bytes)", len(message.data))
            invalid.append((message, None, f"could not be read: {exc!r}"[:1000]))
    try:
        if invalid:
            await detector.park("nats", [(i, r, m.data) for m, i, r in invalid])
            for message, _, _ in invalid:
                await message.term()
        if valid:
            try:
                await detector.ingest([event for _, event in valid], rules)
            except DATABASE_ERRORS:
                raise
            except Exception:
                log.exception("detector: a batch of %d events failed; order by order", len(valid))
                await _order_by_order(detector, valid, rules)
                return
    except DATABASE_ERRORS as exc:
        log.warning("detector: database unavailable (%s); events will be redelivered", exc)
        for message, _ in valid:
            await message.nak(delay=1)
        await wait_or_stop(stop, 1.0)
        return
    for message, _ in valid:
        await message.ack()


async def _order_by_order(
    detector: Detector, valid: list[tuple[Msg, OrderEvent]], rules: RuleSet
) -> None:
    _, failed = await detector.ingest_each_order([event for _, event in valid], rules)
    parked: dict[str, list[tuple[Msg, OrderEvent]]] = defaultdict(list)
    for message, event in valid:
        error = failed.get(event.order_id)
        if error is None:
            await message.ack()
        elif isinstance(error, DATABASE_ERRORS):
            await message.nak(delay=1)
        else:
            parked[event.order_id].append((message, event))
    for order_id, error in failed.items():
        if isinstance(error, DATABASE_ERRORS):
            log.warning(
                "detector: database unavailable (%s); order %s redelivered", error, order_id
            )
            continue
        pairs = parked[order_id]
        log.error(
            "detector: order %s fails; its events %s are parked in dead_letters",
            order_id,
            [event.event_id for _, event in pairs],
            exc_info=error,
        )
        reason = f"the detector failed on this order: {error!r}"[:1000]
        await detector.park("detector", [(e.event_id, reason, m.data) for m, e in pairs])
        for message, _ in pairs:
            await message.term()


async def sweep_forever(
    detector: Detector, retention: Retention, stop: asyncio.Event, *, every: float
) -> None:
    """The retention sweep, now and then every ``every`` seconds, on each replica (they
    skip each other's rows)."""
    while not stop.is_set():
        try:
            await detector.sweep(retention)
        except DATABASE_ERRORS as exc:
            log.warning("detector: retention sweep skipped, database unavailable (%s)", exc)
        await wait_or_stop(stop, every)


async def fire_timers(detector: Detector, stop: asyncio.Event, *, idle: float = 0.5) -> None:
    while not stop.is_set():
        try:
            fired = await detector.fire_due(100)
        except DATABASE_ERRORS as exc:
            log.warning("detector: timers paused, database unavailable (%s)", exc)
            fired = 0
        if fired < 100:
            await wait_or_stop(stop, idle)
