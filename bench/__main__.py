"""Run every benchmark in bench/ and print our figure beside the reference's.

Each benchmark is a module `bench/bench_*.py` with a `main() -> None`; they run one after the
other (never side by side: they would measure each other). `python -m bench.bench_<name>` runs
one.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main() -> int:
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    if not names:
        print("no benchmarks yet: see the benchmarks issue", file=sys.stderr)
        return 0
    for name in names:
        print(f"== {name}")
        importlib.import_module(f"bench.{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
