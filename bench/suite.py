"""How long the README's test command takes on this machine: `make test`'s two steps (the
layering check, then the whole suite on its workers), timed from outside as a person waits
for them. Prints one row against the target (60 s on 2 cores, nothing skipped).

    .venv/bin/python bench/suite.py [--runs 1]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_S = 60.0


def run_once() -> tuple[float, str]:
    """One `make test` (the suite's summary line, and the seconds it took)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    started = time.perf_counter()
    done = subprocess.run(["make", "--no-print-directory", "test"], cwd=REPO, env=env, capture_output=True, text=True)
    took = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    if done.returncode != 0:
        sys.stdout.write(done.stdout[-3000:] + done.stderr[-2000:])
        raise SystemExit(f"make test failed (exit {done.returncode})")
    return took, lines[-1].strip("= ") if lines else "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="times to run it (the median is the figure; default 1)")
    args = parser.parse_args()
    results = [run_once() for _ in range(max(1, args.runs))]
    times = sorted(took for took, _ in results)
    median = times[len(times) // 2]
    summary = results[-1][1]
    skipped = "skipped" in summary
    verdict = "met" if median <= TARGET_S and not skipped else "**missed**"
    print(f"| `make test` on {os.cpu_count()} cores ({summary}) | {median:.1f} s | ≤ {TARGET_S:g} s, nothing skipped | {verdict} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
