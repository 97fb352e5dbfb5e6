"""What the benchmarks share: servers, a scratch database, timing and reporting."""

from __future__ import annotations

import contextlib
import json
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path

from adapters import postgres
from app import bootstrap
from app.bootstrap import Endpoints
from app.settings import Settings
from tests.databases import create_database, drop_database

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench-results"


def servers() -> contextlib.AbstractContextManager[Endpoints]:
    """INBOX_DATABASE_URL / INBOX_NATS_URL, else embedded servers under .inbox/bench."""
    return bootstrap.servers(Settings(data_dir=REPO / ".inbox" / "bench"))


@contextlib.asynccontextmanager
async def scratch_database(admin_url: str) -> AsyncIterator[str]:
    """A migrated database of this run's own, dropped afterwards."""
    name = f"inbox_bench_{uuid.uuid4().hex[:10]}"
    url = await create_database(admin_url, name)
    try:
        await postgres.apply_migrations(url, REPO / "migrations")
        yield url
    finally:
        await drop_database(admin_url, name)


@dataclass
class Figure:
    name: str
    operations: int
    seconds: float
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    # False for a figure whose rate is set by the benchmark (a paced load), not measured.
    compare: bool = True

    @property
    def rate(self) -> float:
        return self.operations / self.seconds

    def line(self, raw: Figure | None = None) -> str:
        ratio = f"  {self.rate / raw.rate:6.2f}x raw" if raw is not None and self.compare else ""
        latency = (
            f"  p50 {self.p50_ms:7.2f} ms  p99 {self.p99_ms:7.2f} ms" if self.p99_ms else " " * 34
        )
        return f"{self.name:<44} {self.rate:9.0f}/s{latency}{ratio}"


def figure(name: str, latencies: list[float], seconds: float, *, compare: bool = True) -> Figure:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return Figure(name, len(ordered), seconds, statistics.median(ordered) * 1e3, p99 * 1e3, compare)


def report(title: str, figures: list[Figure], raw: Figure, notes: dict[str, object]) -> None:
    print(f"\n== {title} ==")
    print(raw.line())
    for one in figures:
        print(one.line(raw))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{title.replace(' ', '_')}.json"
    out.write_text(
        json.dumps(
            {
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "raw": asdict(raw) | {"rate": raw.rate},
                "figures": [
                    asdict(f) | {"rate": f.rate, "ratio": f.rate / raw.rate} for f in figures
                ],
                **notes,
            },
            indent=2,
        )
    )
    print(f"(written to {out.relative_to(REPO)})")
