"""The harness is imported as `harness`, the way bench/run.py imports it (bench/ on sys.path)."""

import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))
