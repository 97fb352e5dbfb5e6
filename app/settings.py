"""Typed settings, read from ``INBOX_*`` environment variables once, in the composition root."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_REPO_ROOT = Path(__file__).resolve().parent.parent

Port = Annotated[int, Field(ge=1, le=65535)]


class SettingsError(Exception):
    """A bad configuration value: one line that names the variable and the reason."""


class Settings(BaseSettings):
    """Every knob of the service. A value left unset takes the default shown here."""

    model_config = SettingsConfigDict(env_prefix="INBOX_", extra="ignore", frozen=True)

    # Where the servers are; unset means "start the embedded ones under data_dir".
    database_url: str | None = None
    nats_url: str | None = None
    data_dir: Path = Path(".inbox")

    http_host: str = "127.0.0.1"
    http_port: Port = 8000
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    rules_file: Path | None = None
    # How often a process reads the active rules version when no NOTIFY woke it (a lost
    # notification, a connection being replaced): the most a replica can lag a reload.
    rules_poll_seconds: Annotated[float, Field(gt=0, le=3600)] = 5.0
    migrations_dir: Path = _REPO_ROOT / "migrations"

    # asyncpg pool of the read side (queries, health). Below the number of concurrent
    # requests, waiting for a connection makes a long tail: 50 clients on 10 connections
    # gave a p99 of 300-670 ms, on 20 of 110-160 ms (tests/bench/README.md).
    db_pool_size: Annotated[int, Field(ge=1, le=200)] = 20
    # GET /api/issues and /api/stats answers are kept per query and read-model position
    # (app/http/cache.py) for at most this long (0: not cached), in at most this much memory.
    read_cache_seconds: Annotated[int, Field(ge=0, le=3600)] = 1
    read_cache_mb: Annotated[int, Field(ge=1, le=65_536)] = 64
    # Commands are grouped into shared save() calls: at most this many per save (250
    # commands of at most ~16 KB each stay under the ~6 MB insert that hangs the library) ...
    command_batch_size: Annotated[int, Field(ge=1, le=250)] = 100
    # ... by this many writer threads, each owning a hash partition of the issue ids.
    command_writers: Annotated[int, Field(ge=1, le=16)] = 2
    # How long a command may wait for its batch before it is answered 503.
    command_timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 10.0
    # Commands waiting for a writer, per writer; past it a command is refused at once (503).
    command_queue_limit: Annotated[int, Field(ge=1)] = 10_000
    # How long a command's Idempotency-Key is remembered (a repeat gets the first answer).
    idempotency_window_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 24.0

    orders_stream: str = "ORDERS"
    orders_subject_prefix: str = "orders"
    inbox_stream: str = "INBOX"
    inbox_subject_prefix: str = "inbox.issue"
    # Compressed time for a demo run as separate processes (`inbox simulate` and `inbox
    # detect`): order time runs demo_speed times faster than the wall clock from
    # demo_anchor, the same instant in every process (`inbox up` alone needs no anchor).
    demo_speed: Annotated[float, Field(gt=0, le=3600)] = 1.0
    demo_anchor: AwareDatetime | None = None
    # Order events fetched and applied per detector transaction (one lock pass, saves of
    # INBOX_COMMAND_BATCH_SIZE). A fetch returns what is there, so a large batch costs no
    # latency when traffic is light and makes a backlog cheaper to catch up on.
    orders_batch_size: Annotated[int, Field(ge=1, le=5000)] = 2000
    # Retention (the detector's sweep, every sweep_interval_seconds): an order's watch row
    # and events after its last change, support contacts, dead letters nobody replayed.
    order_retention_days: Annotated[float, Field(gt=0)] = 7.0
    contact_retention_days: Annotated[float, Field(gt=0)] = 90.0
    dead_letter_retention_days: Annotated[float, Field(gt=0)] = 30.0
    sweep_interval_seconds: Annotated[float, Field(gt=0)] = 300.0
    # A batch of order events fetched by a detector that died is redelivered after this.
    orders_ack_wait_seconds: Annotated[float, Field(ge=1, le=3600)] = 30.0
    # Create (or update) the streams at start; an operator who manages them turns it off.
    create_streams: bool = True
    # JetStream drops a repeated Nats-Msg-Id within this window: it must outlast any
    # relay crash and restart, so that a re-published batch is dropped, not doubled.
    inbox_duplicate_window_seconds: Annotated[float, Field(ge=60)] = 20 * 60.0
    inbox_stream_max_bytes: Annotated[int, Field(ge=-1)] = -1
    inbox_stream_max_msgs: Annotated[int, Field(ge=-1)] = -1
    inbox_stream_replicas: Annotated[int, Field(ge=1, le=5)] = 1

    # Outbox relay: events read per batch, PubAck wait, idle poll when no NOTIFY comes.
    relay_batch_size: Annotated[int, Field(ge=1, le=10_000)] = 1000
    relay_ack_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 5.0
    relay_poll_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0
    relay_max_backoff_seconds: Annotated[float, Field(gt=0, le=300)] = 5.0
    # CloudEvents ce-source of every published event.
    event_source: str = "/support-inbox"

    # Projections: events per transaction, idle poll when no NOTIFY comes.
    projection_batch_size: Annotated[int, Field(ge=1, le=10_000)] = 1000
    projection_poll_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0
    # How long a read with min_position waits for the read model before answering 503.
    min_position_wait_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0
    # GET /ready is 503 while a projection with events to apply has not read the log for
    # this long (its follower stopped, or hangs); an idle one reads it every poll.
    ready_stall_seconds: Annotated[float, Field(gt=0, le=3600)] = 30.0

    # Bearer tokens (CONTRACT §6): HS256 development tokens are signed with jwt_secret
    # (`inbox token`); a company's identity provider signs RS256/ES256 ones whose public
    # keys jwt_jwks names (a JWKS file, or an https URL fetched and cached). The API needs
    # one of the two; `inbox up` makes a secret of its own under data_dir when both are unset.
    jwt_secret: Annotated[str, Field(min_length=32)] | None = None
    jwt_jwks: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    # Signs the CSRF tokens of cookie sessions; unset: derived from jwt_secret, else random
    # per process (set it when several API replicas serve one browser).
    csrf_secret: Annotated[str, Field(min_length=32)] | None = None

    # Worker processes without the API (inbox relay, ...) serve /metrics on this port.
    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 0

    @field_validator("database_url")
    @classmethod
    def _postgres_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql://")
        return value

    @field_validator("nats_url")
    @classmethod
    def _nats_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("nats://", "tls://", "ws://", "wss://")):
            raise ValueError("must start with nats://")
        return value


def load_settings() -> Settings:
    """Read the environment once; a bad value raises SettingsError naming the variable."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "INBOX_" + "_".join(str(part) for part in first["loc"]).upper()
        raise SettingsError(f"{name}: {first['msg']}") from None
