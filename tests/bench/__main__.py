"""``python -m tests.bench [name ...]``: run the named benchmarks (all when none)."""

from __future__ import annotations

import asyncio
import sys

from tests.bench import bench_commands

BENCHES = {"commands": bench_commands.main}


def run(argv: list[str]) -> int:
    names = [a for a in argv if not a.startswith("-")] or list(BENCHES)
    options = [a for a in argv if a.startswith("-")]
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHES)}")
        return 2
    for name in names:
        asyncio.run(BENCHES[name](options))
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
