"""``python -m tests.bench [name ...]``: run the named benchmarks (all when none)."""

from __future__ import annotations

import asyncio
import sys

from tests.bench import (
    bench_backtest,
    bench_commands,
    bench_detect,
    bench_page,
    bench_precision,
    bench_read,
    bench_relay,
)

BENCHES = {
    "commands": bench_commands.main,
    "relay": bench_relay.main,
    "read": bench_read.main,
    "detect": bench_detect.main,
    "precision": bench_precision.main,
    "page": bench_page.main,
    "backtest": bench_backtest.main,
}


def run(argv: list[str]) -> int:
    """Arguments naming a benchmark pick it; the rest are passed to each one picked."""
    names = [a for a in argv if a in BENCHES] or list(BENCHES)
    options = [a for a in argv if a not in BENCHES]
    for name in names:
        asyncio.run(BENCHES[name](options))
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
