#!/usr/bin/env python3
"""Benchmark harness for the catalog service (`python -m service`).

    python bench/run.py [--sizes 1000,10000,100000] [--duration 5] [--quick]

For each catalog size N it generates catalogs and a models folder, starts the service
as a subprocess and measures: cold start to /ready, resident memory, map / 304 / gzip
throughput against a minimal aiohttp "ceiling" server serving the same bytes
(bench/ceiling.py), file-landing and catalog-edit freshness, POST add latency against a
fake CivitAI, memory by phase, and outside edits of models.json under load (time until
visible, worst request meanwhile). With --big-catalog-mb it also runs the service on one
huge catalog. Results go to bench/results/latest.json and bench/results/latest.md.

Only the stdlib, aiohttp and orjson are used. Load is generated with `wrk` when it is
installed, else with an aiohttp client loop in this process. Every subprocess runs in its
own process group and is killed, and every temp folder removed, on exit, error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
from harness.bench import Ctx, SizeRun
from harness.bigcatalog import BigCatalogRun
from harness.common import (
    CLEANUP,
    HTTP_TIMEOUT_S,
    REPO,
    RESULTS_DIR,
    fs_type,
    loadavg,
    log,
    machine_info,
)
from harness.dataset import LAYOUTS
from harness.fake_civitai import FakeCivitai
from harness.load import Loader
from harness.report import write_reports


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options, checked and completed with their defaults."""
    p = _parser()
    args = p.parse_args(argv)
    _complete(p, args)
    return args


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Benchmark the catalog service (see bench/README.md).")
    p.add_argument("--sizes", default=None, help="comma-separated catalog sizes (default 1000,10000,100000)")
    p.add_argument("--duration", type=float, default=None, help="seconds per load run (default 5; --quick: 2)")
    p.add_argument("--quick", action="store_true", help="smoke run: sizes 1000,10000 and short load runs")
    p.add_argument("--warmup", type=float, default=None, help="warm-up seconds before each load run (default 1)")
    p.add_argument("--repeats", type=int, default=None,
                   help="load runs per target, alternating service/ceiling; the median is reported (default 3; --quick: 1)")
    p.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    p.add_argument("--conns", type=int, default=32, help="connections (default 32)")
    p.add_argument("--loader", choices=("auto", "wrk", "aiohttp"), default="auto",
                   help="load generator (auto: wrk when installed)")
    p.add_argument("--fresh-trials", type=int, default=20, help="file landing trials (default 20)")
    p.add_argument("--edit-trials", type=int, default=5, help="external catalog edit trials (default 5)")
    p.add_argument("--adds", type=int, default=50, help="sequential POST adds (default 50)")
    p.add_argument("--part-settle", type=float, default=0.5,
                   help="seconds between writing <file>.part and renaming it (default 0.5)")
    p.add_argument("--rebuild-baseline", type=float, default=1.5, help="seconds of load before the first rewrite")
    p.add_argument("--rebuild-trials", type=int, default=5,
                   help="outside edits of models.json under load, at every size (default 5)")
    p.add_argument("--edit-layouts", default=",".join(LAYOUTS),
                   help="after the renames in this service's layout, re-format models.json into each of these and "
                        f"rename in it (comma-separated, of {', '.join(LAYOUTS)}; default all; '' for none)")
    p.add_argument("--phase-budget-s", type=float, default=60.0,
                   help="the adds and the edits under load each stop starting new trials after this many seconds "
                        "(at least 2 run; default 60), so a 1,000,000-entry run ends")
    p.add_argument("--max-load-body-mb", type=float, default=100.0,
                   help="skip the full-map throughput pair when the map is bigger (default 100): "
                        "the ceiling would hold a copy per connection")
    p.add_argument("--big-catalog-mb", type=float, default=0.0,
                   help="also run the service on a models.json of about this many MB (e.g. 500; slow; default off)")
    p.add_argument("--big-catalog-entries", type=int, default=10_000,
                   help="entries in the big catalog (default 10000; long notes make up the size)")
    p.add_argument("--big-adds", type=int, default=3, help="adds on the big catalog (default 3)")
    p.add_argument("--skip-freshness", action="store_true")
    p.add_argument("--skip-add", action="store_true")
    p.add_argument("--skip-rebuild", action="store_true")
    p.add_argument("--service-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for the service (repeatable), e.g. WATCH_DEBOUNCE_MS=50")
    p.add_argument("--service-cwd", default=str(REPO),
                   help="folder to run `python -m service` in (default: the repo root)")
    p.add_argument("--tmpdir", default=None, help="where to create temp folders (default: system temp)")
    p.add_argument("--models-tmpdir", default=None,
                   help="where to create the models folder (default: /dev/shm when it is a writable tmpfs, "
                        "else --tmpdir); creating 50k files on a slow virtual disk takes far longer than on tmpfs")
    p.add_argument("--keep-tmp", action="store_true", help="keep generated folders (for debugging)")
    p.add_argument("--out", default=str(RESULTS_DIR), help="results folder (default bench/results)")
    return p


def _complete(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Check the options (p.error exits on a bad one) and fill in the defaults that depend on others."""
    if args.sizes is None:
        args.sizes = "1000,10000" if args.quick else "1000,10000,100000"
    try:
        args.size_list = sorted({int(x.replace("_", "")) for x in args.sizes.split(",") if x.strip()})
    except ValueError:
        p.error("--sizes must be comma-separated whole numbers")
    if not args.size_list or min(args.size_list) < 10 or max(args.size_list) > 2_000_000:
        p.error("--sizes must be between 10 and 2,000,000")
    if args.duration is None:
        args.duration = 2.0 if args.quick else 5.0
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if not 1 <= args.repeats <= 10:
        p.error("--repeats must be between 1 and 10")
    if args.warmup is None:
        args.warmup = 0.5 if args.quick else 1.0
    if not 0.5 <= args.duration <= 300:
        p.error("--duration must be between 0.5 and 300 seconds")
    if not 1 <= args.fresh_trials <= 1000 or not 1 <= args.edit_trials <= 200 or not 0 <= args.adds <= 5000:
        p.error("trial counts out of range")
    if not 1 <= args.rebuild_trials <= 100 or not 1 <= args.big_adds <= 100 or not 10 <= args.big_catalog_entries <= 1_000_000:
        p.error("trial counts out of range")
    if not 1 <= args.phase_budget_s <= 3600 or args.max_load_body_mb <= 0 or not 0 <= args.big_catalog_mb <= 10_000:
        p.error("--phase-budget-s, --max-load-body-mb or --big-catalog-mb out of range")
    if any(layout not in LAYOUTS for layout in args.edit_layouts.split(",") if layout):
        p.error(f"--edit-layouts: each of {', '.join(LAYOUTS)}")
    if not 1 <= args.conns <= 1024 or not 1 <= args.threads <= 64:
        p.error("--conns/--threads out of range")
    if args.models_tmpdir is None:
        shm = Path("/dev/shm")
        args.models_tmpdir = (str(shm) if shm.is_dir() and os.access(shm, os.W_OK) and fs_type(shm) == "tmpfs"
                              else args.tmpdir)
    args.extra_env = {}
    for item in args.service_env:
        k, sep, v = item.partition("=")
        if not sep or not k:
            p.error(f"--service-env wants KEY=VALUE, not {item!r}")
        args.extra_env[k] = v


async def amain(args: argparse.Namespace) -> int:
    """Run every size (and the big catalog), write the reports; 1 when a run failed."""
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    # Ctrl-C and SIGTERM both cancel the run; the finally blocks then kill children and remove temp folders.
    # (SIGINT is set explicitly because a shell starts background jobs with SIGINT ignored.)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, me.cancel)  # type: ignore[union-attr]

    kind = args.loader
    if kind == "auto":
        kind = "wrk" if shutil.which("wrk") else "aiohttp"
    elif kind == "wrk" and not shutil.which("wrk"):
        log(None, "wrk not found; falling back to the aiohttp load loop")
        kind = "aiohttp"
    loader = Loader(kind, args.threads, args.conns)
    tmp_root = Path(args.tmpdir or tempfile.gettempdir())
    machine = machine_info(kind, tmp_root)
    models_root = Path(args.models_tmpdir or tempfile.gettempdir())
    machine["models_tmp_dir"], machine["models_tmp_fs"] = str(models_root), fs_type(models_root)
    log(None, f"machine: {machine['nproc']} cores, {machine['cpu_model']}, Python {machine['python']}, "
              f"load: {machine['wrk'] if kind == 'wrk' else 'aiohttp fallback'}")
    sizes = args.size_list
    small = [s for s in sizes if s <= 10_000]
    fresh_n = max(small) if small else min(sizes)
    started = _dt.datetime.now().isoformat(timespec="seconds")

    fake = FakeCivitai()
    await fake.start()
    results: dict[str, Any] = {}
    api_key = "bench-" + os.urandom(16).hex()
    try:
        async with aiohttp.ClientSession(
            auto_decompress=False, skip_auto_headers=["Accept-Encoding"],
            timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S),
            connector=aiohttp.TCPConnector(limit=16),
        ) as session:
            ctx = Ctx(args, loader, fake, session, api_key, fresh_n, max(sizes), args.extra_env)
            runs: list[SizeRun] = [SizeRun(ctx, n) for n in sizes]
            if args.big_catalog_mb:
                runs.append(BigCatalogRun(ctx, args.big_catalog_entries))
            for k, run in enumerate(runs):
                results[run.label] = run.res  # filled in as it goes, so an interrupted run still reports
                try:
                    await run.run()
                finally:
                    write_reports(args, machine, results, started, fresh_n, partial=k != len(runs) - 1)
    finally:
        await fake.stop()
    machine["loadavg_end"] = loadavg()
    md = write_reports(args, machine, results, started, fresh_n, partial=False)
    print()
    print(md)
    out = Path(args.out)
    log(None, f"wrote {out / 'latest.json'} and {out / 'latest.md'}")
    return 1 if any("error" in r for r in results.values()) else 0



def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; always clean up."""
    args = parse_args(argv)
    rc = 1
    try:
        rc = asyncio.run(amain(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\ninterrupted; cleaning up", file=sys.stderr, flush=True)
        rc = 130
    finally:
        CLEANUP.run()
    return rc


if __name__ == "__main__":
    sys.exit(main())
