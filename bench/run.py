#!/usr/bin/env python3
"""Benchmark harness for the catalog service (`python -m service`).

    python bench/run.py [--sizes 1000,10000,100000] [--duration 5] [--quick]

For each catalog size N it generates catalogs and a models folder, starts the service
as a subprocess and measures: cold start to /ready, resident memory, map / 304 / gzip
throughput against a minimal aiohttp "ceiling" server serving the same bytes
(bench/ceiling.py), file-landing and catalog-edit freshness, POST add latency against a
fake CivitAI, and the worst request latency during a full rebuild. Results go to
bench/results/latest.json and bench/results/latest.md.

Only the stdlib, aiohttp and orjson are used. Load is generated with `wrk` when it is
installed, else with an aiohttp client loop in this process. Every subprocess runs in its
own process group and is killed, and every temp folder removed, on exit, error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import datetime as _dt
import gzip
import hashlib
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import aiohttp
import orjson
from aiohttp import web
from multidict import CIMultiDict

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
CEILING = BENCH_DIR / "ceiling.py"
MAP_PATH = "/api/admin/models/civitai-map"

# Id ranges: generated entries, external catalog edits, POST adds. Disjoint by construction.
VID_BASE, MID_BASE, FID_BASE = 3_000_000, 1_000_000, 5_000_000
EDIT_VID_BASE = 7_000_000
ADD_VID_BASE = 6_000_000

# Settings the service reads from the environment; never inherited from the caller's shell.
SERVICE_ENV_KEYS = {
    "CATALOG_DIR", "MODELS_DIR", "HOST", "PORT", "API_KEY", "CIVITAI_API_KEY", "CIVITAI_BASE_URL",
    "CIVITAI_TIMEOUT_S", "WATCH_DEBOUNCE_MS", "WATCH_FORCE_POLLING", "WATCH_POLL_INTERVAL_MS",
    "RECONCILE_INTERVAL_S", "EXTRA_MODEL_PATHS", "CORS_ORIGINS", "LOG_LEVEL", "SHUTDOWN_TIMEOUT_S",
    "MAX_BODY_BYTES", "CIVITAI_FALLBACK_URL", "DOWNLOADS", "DOWNLOAD_CONCURRENCY", "UPDATE_CHECK_INTERVAL_H",
    "HEADER_TIMEOUT_S", "LOG_FORMAT", "CORS_EXTENSION_IDS",
}

# Hard bounds on every loop.
READY_POLL_S = 0.020
FRESH_POLL_S = 0.005
FRESH_TIMEOUT_S = 10.0
EDIT_TIMEOUT_S = 15.0
REBUILD_VISIBLE_TIMEOUT_S = 90.0
LOAD_MAX_REQUESTS = 5_000_000
HTTP_TIMEOUT_S = 60.0


def log(n: int | str | None, msg: str) -> None:
    prefix = f"[{n}] " if n is not None else ""
    print(f"{prefix}{msg}", flush=True)


# --------------------------------------------------------------------------------------
# Cleanup: every child runs in its own session (process group); kill the group at the end.
# --------------------------------------------------------------------------------------


class Cleanup:
    def __init__(self) -> None:
        self.procs: list[Any] = []  # subprocess.Popen or asyncio.subprocess.Process
        self.dirs: list[Path] = []

    def add_proc(self, proc: Any) -> Any:
        self.procs.append(proc)
        return proc

    def add_dir(self, path: Path) -> Path:
        self.dirs.append(path)
        return path

    @staticmethod
    def _alive(proc: Any) -> bool:
        if isinstance(proc, subprocess.Popen):
            return proc.poll() is None
        return proc.returncode is None and _pid_alive(proc.pid)

    def kill_proc(self, proc: Any, grace_s: float = 3.0) -> None:
        """SIGTERM the process group, then SIGKILL it after `grace_s`. Only if still ours."""
        if self._alive(proc):
            _killpg(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while self._alive(proc) and time.monotonic() < deadline:
                time.sleep(0.02)
            if self._alive(proc):
                _killpg(proc.pid, signal.SIGKILL)
                deadline = time.monotonic() + 2.0
                while self._alive(proc) and time.monotonic() < deadline:
                    time.sleep(0.02)
        # Reap leftovers of the group (e.g. grandchildren) even if the leader exited.
        _killpg(proc.pid, signal.SIGKILL) if _group_has_members(proc.pid) else None
        if isinstance(proc, subprocess.Popen):
            try:
                proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
        if proc in self.procs:
            self.procs.remove(proc)

    def remove_dir(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)
        if path in self.dirs:
            self.dirs.remove(path)

    def run(self) -> None:
        for proc in list(self.procs):
            try:
                self.kill_proc(proc, grace_s=2.0)
            except Exception:  # noqa: BLE001 - cleanup must go on
                pass
        for path in list(self.dirs):
            self.remove_dir(path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is "alive" for kill(0); treat zombies as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _group_has_members(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


CLEANUP = Cleanup()
atexit.register(CLEANUP.run)


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100); None for an empty list."""
    if not values:
        return None
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize_ms(values_s: list[float]) -> dict[str, Any]:
    ms = [v * 1000.0 for v in values_s]
    return {
        "n": len(ms),
        "p50_ms": _r(percentile(ms, 50)),
        "p95_ms": _r(percentile(ms, 95)),
        "max_ms": _r(max(ms) if ms else None),
        "min_ms": _r(min(ms) if ms else None),
    }


def _r(x: float | None, nd: int = 2) -> float | None:
    return None if x is None else round(x, nd)


def read_proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM in kB from /proc/<pid>/status ({} when the process is gone)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, val = line.split(":", 1)
                    out[key] = int(val.split()[0])
    except OSError:
        pass
    return out


def descendants(pid: int) -> list[int]:
    """All descendant pids via /proc/<pid>/task/*/children (bounded depth/size)."""
    found: list[int] = []
    frontier = [pid]
    for _ in range(8):
        nxt: list[int] = []
        for p in frontier:
            try:
                for task in os.listdir(f"/proc/{p}/task"):
                    try:
                        with open(f"/proc/{p}/task/{task}/children") as f:
                            nxt.extend(int(x) for x in f.read().split())
                    except OSError:
                        pass
            except OSError:
                pass
        if not nxt:
            break
        found.extend(nxt)
        frontier = nxt[:256]
    return found


def tree_rss_kb(pid: int) -> int:
    total = read_proc_status(pid).get("VmRSS", 0)
    for child in descendants(pid):
        total += read_proc_status(child).get("VmRSS", 0)
    return total


def fs_type(path: Path) -> str:
    """File system type of the mount holding `path` (from /proc/mounts)."""
    best, best_len = "unknown", -1
    real = str(path.resolve())
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = parts[1]
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) > best_len:
                    best, best_len = parts[2], len(mnt)
    except OSError:
        pass
    return best


def machine_info(loader: str, tmp_root: Path) -> dict[str, Any]:
    cpu_model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    wrk_version = None
    if shutil.which("wrk"):
        try:
            out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=5)
            wrk_version = (out.stdout or out.stderr).splitlines()[0].strip()
        except (OSError, subprocess.SubprocessError, IndexError):
            wrk_version = "wrk (version unknown)"
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    mem_total_mb = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_total_mb = int(line.split()[1]) // 1024
    except OSError:
        pass
    return {
        "nproc": affinity,
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "mem_total_mb": mem_total_mb,
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "aiohttp": aiohttp.__version__,
        "orjson": orjson.__version__,
        "kernel": platform.release(),
        "load_generator": loader,
        "wrk": wrk_version,
        "tmp_dir": str(tmp_root),
        "tmp_fs": fs_type(tmp_root),
    }


# --------------------------------------------------------------------------------------
# Catalog generation
# --------------------------------------------------------------------------------------

# (dest, category name, share of models.json, file extension)
MODEL_DESTS = [
    ("checkpoints", "Checkpoints", 0.28, "safetensors"),
    ("loras", "LoRAs", 0.22, "safetensors"),
    ("vae", "VAE", 0.05, "safetensors"),
    ("embeddings", "Embeddings", 0.15, "pt"),
    ("controlnet", "ControlNet", 0.10, "safetensors"),
    ("upscale_models", "Upscale models", 0.05, "pth"),
    ("diffusion_models", "Diffusion models", 0.15, "safetensors"),
]
LORA_CATEGORIES = [
    ("illustrious_loras", "Illustrious LoRAs", "Illustrious"),
    ("sdxl_loras", "SDXL LoRAs", "SDXL 1.0"),
    ("pony_loras", "Pony LoRAs", "Pony"),
    ("flux_loras", "Flux LoRAs", "Flux.1 D"),
]
BASE_MODELS = ["Illustrious", "SDXL 1.0", "Pony", "Flux.1 D", "SD 1.5", "NoobAI"]
TAGS = [[], ["anime"], ["style", "painterly"], ["character"], ["realistic", "photo"], ["concept"]]
SUBFOLDER_EVERY = 5  # every 5th entry's file lives in a subfolder of its dest
N_SUBFOLDERS = 37


@dataclass
class Truth:
    """Ground truth for one generated entry."""

    vid: int
    mid: int
    fid: int
    file: str
    dest: str
    subdir: str  # "" or the subfolder the file lives in (when present)
    present: bool
    catalog: str  # "models" or "loras"
    name: str


@dataclass
class Dataset:
    n: int
    root: Path
    catalog_dir: Path
    models_dir: Path
    truth: list[Truth]
    gen_seconds: float
    files_created: int


def _entry(i: int, dest: str, ext: str, base_model: str, catalog: str) -> tuple[dict[str, Any], Truth]:
    vid, mid, fid = VID_BASE + i, MID_BASE + i // 3, FID_BASE + i
    fname = f"bench_{dest}_{i:06d}_v{i % 3 + 1}.{ext}"
    name = f"Bench {dest} model {i // 3} v{i % 3 + 1}"
    present = i % 2 == 0
    subdir = f"pack_{i % N_SUBFOLDERS:02d}" if i % SUBFOLDER_EVERY == 0 else ""
    entry = {
        "name": name,
        "file": fname,
        "dest": dest,
        "source": "civitai",
        "civitai_version_id": vid,
        "civitai_model_id": mid,
        "civitai_file_id": fid,
        "size_gb": round(0.05 + (i % 97) * 0.07, 3),
        "base_model": base_model,
        "tags": TAGS[i % len(TAGS)],
        "hash": hashlib.sha256(b"bench%d" % i).hexdigest().upper(),
    }
    return entry, Truth(vid, mid, fid, fname, dest, subdir, present, catalog, name)


def generate(n: int, root: Path, models_parent: Path | None = None) -> Dataset:
    """N entries: ~70% models.json spread over all dests, ~30% loras.json; half the files exist.

    The catalogs go to <root>/catalogs, the models folder to <models_parent or root>/models.
    """
    t0 = time.perf_counter()
    catalog_dir = root / "catalogs"
    models_dir = (models_parent or root) / "models"
    catalog_dir.mkdir(parents=True)
    models_dir.mkdir(parents=True)
    n_models = int(round(n * 0.7))
    truth: list[Truth] = []

    # models.json: contiguous blocks per dest according to the shares.
    model_cats: list[dict[str, Any]] = []
    i = 0
    for k, (dest, cat_name, share, ext) in enumerate(MODEL_DESTS):
        count = n_models - i if k == len(MODEL_DESTS) - 1 else int(n_models * share)
        models = []
        for _ in range(count):
            entry, t = _entry(i, dest, ext, BASE_MODELS[i % len(BASE_MODELS)], "models")
            models.append(entry)
            truth.append(t)
            i += 1
        model_cats.append({"id": dest, "name": cat_name, "models": models})

    # loras.json: all dest "loras", categories by base model.
    lora_cats: list[dict[str, Any]] = [{"id": cid, "name": cname, "models": []} for cid, cname, _ in LORA_CATEGORIES]
    while i < n:
        k = i % len(LORA_CATEGORIES)
        entry, t = _entry(i, "loras", "safetensors", LORA_CATEGORIES[k][2], "loras")
        lora_cats[k]["models"].append(entry)
        truth.append(t)
        i += 1

    date = "2026-11-23 14:05"
    opts = orjson.OPT_INDENT_2
    (catalog_dir / "models.json").write_bytes(orjson.dumps({"version": 1, "date": date, "categories": model_cats}, option=opts))
    (catalog_dir / "loras.json").write_bytes(orjson.dumps({"version": 1, "date": date, "categories": lora_cats}, option=opts))

    # Folders (all dests, plus the subfolders), then the present half of the files.
    for dest, *_ in MODEL_DESTS:
        (models_dir / dest).mkdir(exist_ok=True)
        for s in range(N_SUBFOLDERS):
            (models_dir / dest / f"pack_{s:02d}").mkdir(exist_ok=True)
    created = 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    base = str(models_dir)
    for t in truth:
        if t.present:
            path = f"{base}/{t.dest}/{t.subdir}/{t.file}" if t.subdir else f"{base}/{t.dest}/{t.file}"
            os.close(os.open(path, flags, 0o644))
            created += 1
    return Dataset(n, root, catalog_dir, models_dir, truth, time.perf_counter() - t0, created)


def atomic_write_json(path: Path, doc: Any) -> None:
    """Editor-style save: write a temp file next to the target, then os.replace it."""
    tmp = path.with_name(f".{path.name}.bench-{os.getpid()}.tmp")
    data = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------
# Fake CivitAI (in-process aiohttp server on loopback)
# --------------------------------------------------------------------------------------


class FakeCivitai:
    def __init__(self) -> None:
        self.port = 0
        self.hits = 0
        self.runner: web.AppRunner | None = None

    def body(self, vid: int) -> dict[str, Any]:
        mid = vid - 4_000_000 if vid > 4_000_000 else vid + 1
        fid = vid + 500_000
        base = f"http://127.0.0.1:{self.port}"
        return {
            "id": vid,
            "modelId": mid,
            "name": "v1.0",
            "createdAt": "2026-11-20T10:00:00.000Z",
            "updatedAt": "2026-11-20T10:00:00.000Z",
            "status": "Published",
            "baseModel": "SDXL 1.0",
            "baseModelType": "Standard",
            "description": None,
            "trainedWords": [],
            "usageControl": "Download",
            "stats": {"downloadCount": 1234, "ratingCount": 0, "rating": 0, "thumbsUpCount": 56},
            "model": {"name": f"Model {mid}", "type": "LORA", "nsfw": False, "poi": False},
            "files": [
                {
                    "id": fid,
                    "name": f"bench_{vid}.safetensors",
                    "type": "Model",
                    "primary": True,
                    "sizeKB": 223000.5,
                    "metadata": {"fp": "fp16", "size": "full", "format": "SafeTensor"},
                    "pickleScanResult": "Success",
                    "virusScanResult": "Success",
                    "scannedAt": "2026-11-20T10:05:00.000Z",
                    "hashes": {
                        "AutoV2": hashlib.sha256(b"v%d" % vid).hexdigest()[:10].upper(),
                        "SHA256": hashlib.sha256(b"v%d" % vid).hexdigest().upper(),
                        "CRC32": "8F3A2B1C",
                        "BLAKE3": hashlib.blake2b(b"v%d" % vid, digest_size=32).hexdigest().upper(),
                    },
                    "downloadUrl": f"{base}/api/download/models/{vid}",
                }
            ],
            "images": [],
            "downloadUrl": f"{base}/api/download/models/{vid}",
        }

    async def start(self) -> None:
        async def version(request: web.Request) -> web.Response:
            self.hits += 1
            try:
                vid = int(request.match_info["vid"])
            except ValueError:
                return web.json_response({"error": "Invalid id"}, status=400)
            return web.Response(body=orjson.dumps(self.body(vid)), content_type="application/json")

        async def other(request: web.Request) -> web.Response:
            self.hits += 1
            return web.json_response({"error": "Not found"}, status=404)

        app = web.Application()
        app.router.add_get("/api/v1/model-versions/{vid}", version)
        app.router.add_route("*", "/{tail:.*}", other)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


# --------------------------------------------------------------------------------------
# Subprocesses: the service and the ceiling server
# --------------------------------------------------------------------------------------


def tail(path: Path, n: int = 25) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


class ServiceProc:
    def __init__(self, ds: Dataset, api_key: str, civitai_url: str, extra_env: dict[str, str], cwd: str) -> None:
        self.port = free_port()
        self.cwd = cwd
        self.api_key = api_key
        self.log_path = ds.root / "service.log"
        env = {k: v for k, v in os.environ.items() if k not in SERVICE_ENV_KEYS}
        env.update(
            CATALOG_DIR=str(ds.catalog_dir),
            MODELS_DIR=str(ds.models_dir),
            HOST="127.0.0.1",
            PORT=str(self.port),
            API_KEY=api_key,
            CIVITAI_BASE_URL=civitai_url,
            CIVITAI_FALLBACK_URL="",  # never the real second origin
            UPDATE_CHECK_INTERVAL_H="0",
            LOG_LEVEL="WARNING",
        )
        env.update(extra_env)
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.t_spawn = 0.0
        self.rss_samples_kb: list[int] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> None:
        logf = open(self.log_path, "wb")
        try:
            self.t_spawn = time.perf_counter()
            self.proc = CLEANUP.add_proc(
                subprocess.Popen(
                    [sys.executable, "-m", "service"],
                    cwd=self.cwd,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        finally:
            logf.close()

    async def wait_ready(self, session: aiohttp.ClientSession, timeout_s: float) -> float:
        """Seconds from spawn until GET /ready answered 200 (polled every 20 ms)."""
        assert self.proc is not None
        deadline = self.t_spawn + timeout_s
        k = 0
        last = "no answer"
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"service exited with code {self.proc.returncode} before ready; log tail:\n{tail(self.log_path)}"
                )
            try:
                async with session.get(self.base + "/ready", timeout=aiohttp.ClientTimeout(total=2)) as r:
                    await r.read()
                    if r.status == 200:
                        return time.perf_counter() - self.t_spawn
                    last = f"HTTP {r.status}"
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
                last = type(e).__name__
            k += 1
            delay = self.t_spawn + k * READY_POLL_S - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        raise RuntimeError(f"service not ready after {timeout_s:.0f} s (last: {last}); log tail:\n{tail(self.log_path)}")

    def sample_rss(self) -> int:
        if self.proc is None:
            return 0
        kb = tree_rss_kb(self.proc.pid)
        if kb:
            self.rss_samples_kb.append(kb)
        return kb

    def hwm_kb(self) -> int:
        return read_proc_status(self.proc.pid).get("VmHWM", 0) if self.proc else 0

    def stop(self) -> dict[str, Any]:
        """SIGTERM, wait up to 15 s, then SIGKILL. Returns how the stop went."""
        if self.proc is None:
            return {}
        out: dict[str, Any] = {}
        if self.proc.poll() is None:
            t0 = time.perf_counter()
            _killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
                out["stop_s"] = _r(time.perf_counter() - t0, 3)
            except subprocess.TimeoutExpired:
                out["stop_s"] = None
                out["stop_note"] = "did not exit within 15 s of SIGTERM; killed"
        else:
            out["stop_note"] = "had already exited"
        CLEANUP.kill_proc(self.proc, grace_s=1.0)
        out["exit_code"] = self.proc.returncode
        return out


class CeilingProc:
    def __init__(self, root: Path, body: bytes, etag: str, gz_body: bytes, gz_etag: str) -> None:
        self.port = free_port()
        (root / "ceiling_body.json").write_bytes(body)
        (root / "ceiling_body.json.gz").write_bytes(gz_body)
        self.log_path = root / "ceiling.log"
        self.args = [
            sys.executable, str(CEILING), "--port", str(self.port),
            "--body", str(root / "ceiling_body.json"), f"--etag={etag}",
            "--gzip-body", str(root / "ceiling_body.json.gz"), f"--gzip-etag={gz_etag}",
        ]
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{MAP_PATH}"

    async def start(self, session: aiohttp.ClientSession) -> None:
        logf = open(self.log_path, "wb")
        try:
            self.proc = CLEANUP.add_proc(
                subprocess.Popen(self.args, cwd=str(REPO), stdin=subprocess.DEVNULL, stdout=logf,
                                 stderr=subprocess.STDOUT, start_new_session=True)
            )
        finally:
            logf.close()
        deadline = time.perf_counter() + 20
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ceiling server exited: {tail(self.log_path)}")
            try:
                async with session.get(self.url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                    await r.read()
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                pass
            await asyncio.sleep(0.05)
        raise RuntimeError("ceiling server did not start within 20 s")

    def stop(self) -> None:
        if self.proc is not None:
            CLEANUP.kill_proc(self.proc, grace_s=3.0)


# --------------------------------------------------------------------------------------
# Load generation: wrk, or an aiohttp client loop
# --------------------------------------------------------------------------------------

_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
_TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def _ms(text: str) -> float | None:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    return float(m.group(1)) * _TIME_UNITS[m.group(2)] if m else None


def parse_wrk(out: str) -> dict[str, Any]:
    res: dict[str, Any] = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = float(m.group(1)) if m else None
    m = re.search(r"(\d+) requests in ([\d.]+\w+), ([\d.]+)(\w+) read", out)
    if m:
        res["requests"] = int(m.group(1))
        res["elapsed_ms"] = _ms(m.group(2))
        res["bytes_read"] = int(float(m.group(3)) * _UNITS.get(m.group(4), 1))
        if res["requests"]:
            res["bytes_per_response"] = round(res["bytes_read"] / res["requests"])
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non_2xx_3xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", out)
    if m:
        res["latency_avg_ms"] = _r(_ms(m.group(1)), 3)
        res["latency_max_ms"] = _r(_ms(m.group(3)), 3)
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        if m:
            res[f"latency_p{pct}_ms"] = _r(_ms(m.group(1)), 3)
    return res


class Loader:
    def __init__(self, kind: str, threads: int, conns: int) -> None:
        self.kind = kind  # "wrk" or "aiohttp"
        self.threads = threads
        self.conns = conns

    async def run(self, url: str, headers: dict[str, str], duration: float) -> dict[str, Any]:
        if self.kind == "wrk":
            return await self._wrk(url, headers, duration)
        return await self._aiohttp(url, headers, duration)

    async def _wrk(self, url: str, headers: dict[str, str], duration: float) -> dict[str, Any]:
        cmd = ["wrk", f"-t{self.threads}", f"-c{self.conns}", f"-d{max(1, round(duration))}s", "--latency",
               "--timeout", "10s"]
        for k, v in headers.items():
            cmd += ["-H", f"{k}: {v}"]
        cmd.append(url)
        proc = CLEANUP.add_proc(await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True))
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout=duration + 30)
        finally:
            CLEANUP.kill_proc(proc, grace_s=1.0)
        text = out.decode(errors="replace")
        res = parse_wrk(text)
        res["tool"] = "wrk"
        if res.get("rps") is None:
            res["error"] = (text + err.decode(errors="replace"))[-500:]
        return res

    async def _aiohttp(self, url: str, headers: dict[str, str], duration: float) -> dict[str, Any]:
        statuses: dict[int, int] = {}
        errors = 0
        nbytes = 0
        count = 0
        lat: list[float] = []
        deadline = time.perf_counter() + duration
        conn = aiohttp.TCPConnector(limit=self.conns, force_close=False)
        async with aiohttp.ClientSession(connector=conn, auto_decompress=False,
                                         skip_auto_headers=["Accept-Encoding", "User-Agent"],
                                         timeout=aiohttp.ClientTimeout(total=10)) as s:
            async def worker() -> None:
                nonlocal errors, nbytes, count
                while count < LOAD_MAX_REQUESTS:
                    t = time.perf_counter()
                    if t >= deadline:
                        return
                    try:
                        async with s.get(url, headers=headers) as r:
                            body = await r.read()
                            statuses[r.status] = statuses.get(r.status, 0) + 1
                            nbytes += len(body)
                    except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                        errors += 1
                    count += 1
                    lat.append(time.perf_counter() - t)

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(self.conns)))
            elapsed = time.perf_counter() - t0
        ok = sum(v for k, v in statuses.items() if 200 <= k < 400)
        return {
            "tool": "aiohttp",
            "rps": round(ok / elapsed, 2) if elapsed > 0 else None,
            "requests": count,
            "elapsed_ms": round(elapsed * 1000, 1),
            "bytes_per_response": round(nbytes / count) if count else None,  # body bytes only
            "non_2xx_3xx": sum(v for k, v in statuses.items() if not 200 <= k < 400),
            "socket_errors": errors,
            "statuses": {str(k): v for k, v in statuses.items()},
            "latency_avg_ms": _r(sum(lat) / len(lat) * 1000, 3) if lat else None,
            "latency_p50_ms": _r(percentile([x * 1000 for x in lat], 50), 3),
            "latency_p99_ms": _r(percentile([x * 1000 for x in lat], 99), 3),
            "latency_max_ms": _r(max(lat) * 1000, 3) if lat else None,
        }


# --------------------------------------------------------------------------------------
# HTTP probes
# --------------------------------------------------------------------------------------


@dataclass
class Probe:
    status: int
    headers: CIMultiDict  # case-insensitive
    body: bytes
    seconds: float


async def probe(session: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str] | None = None,
                **kw: Any) -> Probe:
    t = time.perf_counter()
    async with session.request(method, url, headers=headers or {}, **kw) as r:
        body = await r.read()
        return Probe(r.status, CIMultiDict(r.headers), body, time.perf_counter() - t)


def check_map(doc: Any, truth: list[Truth], extra_vids: int = 0) -> dict[str, Any]:
    """Compare the full map with the generated ground truth."""
    res: dict[str, Any] = {"ok": False}
    if not isinstance(doc, dict) or not isinstance(doc.get("by_version"), dict):
        res["problem"] = "body has no by_version object"
        return res
    bv = doc["by_version"]
    bm = doc.get("by_model") if isinstance(doc.get("by_model"), dict) else {}
    res["by_version_count"] = len(bv)
    res["by_model_count"] = len(bm)
    res["expected_versions"] = len(truth)
    res["expected_models"] = len({t.mid for t in truth})
    res["present_count"] = sum(1 for v in bv.values() if isinstance(v, dict) and v.get("status") == "present")
    res["expected_present"] = sum(1 for t in truth if t.present)
    mismatches: list[str] = []
    n_bad = 0
    for t in truth:
        e = bv.get(str(t.vid))
        problem = None
        if not isinstance(e, dict):
            problem = "missing from by_version"
        elif e.get("status") != ("present" if t.present else "missing"):
            problem = f"status {e.get('status')!r}, expected {'present' if t.present else 'missing'}"
            if t.subdir:
                problem += f" (file in subfolder {t.dest}/{t.subdir})"
        elif e.get("file") != t.file or e.get("dest") != t.dest:
            problem = f"file/dest {e.get('file')!r}/{e.get('dest')!r}"
        elif e.get("civitai_model_id") not in (t.mid, str(t.mid)):
            problem = f"civitai_model_id {e.get('civitai_model_id')!r}"
        if problem:
            n_bad += 1
            if len(mismatches) < 5:
                mismatches.append(f"vid {t.vid}: {problem}")
    if bm:
        missing_models = sum(1 for mid in {t.mid for t in truth} if str(mid) not in bm)
        if missing_models:
            n_bad += missing_models
            mismatches.append(f"{missing_models} model ids missing from by_model")
    res["mismatches"] = n_bad
    res["mismatch_examples"] = mismatches
    res["ok"] = n_bad == 0 and len(bv) == len(truth) + extra_vids
    return res


# --------------------------------------------------------------------------------------
# The per-N benchmark
# --------------------------------------------------------------------------------------


@dataclass
class Ctx:
    args: argparse.Namespace
    loader: Loader
    fake: FakeCivitai
    session: aiohttp.ClientSession
    api_key: str
    fresh_n: int
    largest_n: int
    extra_env: dict[str, str] = field(default_factory=dict)


class Bench:
    def __init__(self, ctx: Ctx, n: int) -> None:
        self.ctx = ctx
        self.n = n
        self.res: dict[str, Any] = {"n": n}
        self.svc: ServiceProc | None = None
        self.ceiling: CeilingProc | None = None
        self.ds: Dataset | None = None
        self.point_mode: bool | None = None

    def log(self, msg: str) -> None:
        log(self.n, msg)

    @property
    def key_h(self) -> dict[str, str]:
        return {"X-API-Key": self.ctx.api_key}

    @property
    def map_url(self) -> str:
        assert self.svc is not None
        return self.svc.base + MAP_PATH

    async def run(self) -> dict[str, Any]:
        root = CLEANUP.add_dir(Path(tempfile.mkdtemp(prefix=f"bench-{self.n}-", dir=self.ctx.args.tmpdir)))
        models_root = CLEANUP.add_dir(Path(tempfile.mkdtemp(prefix=f"bench-{self.n}-models-",
                                                            dir=self.ctx.args.models_tmpdir)))
        sampler: asyncio.Task | None = None
        try:
            self.log("generating catalogs…")
            self.ds = ds = generate(self.n, root, models_root)
            self.res["generate_s"] = _r(ds.gen_seconds, 3)
            self.res["files_created"] = ds.files_created
            self.log(f"generated {self.n} entries, {ds.files_created} files in {ds.gen_seconds:.2f} s")

            self.svc = ServiceProc(ds, self.ctx.api_key, self.ctx.fake.base_url, self.ctx.extra_env,
                                  self.ctx.args.service_cwd)
            self.log(f"starting service on port {self.svc.port}…")
            self.svc.spawn()
            ready_timeout = 30.0 + self.n / 1000.0
            ready_s = await self.svc.wait_ready(self.ctx.session, ready_timeout)
            self.res["ready_s"] = _r(ready_s, 3)
            self.res["rss_after_ready_mb"] = _r(self.svc.sample_rss() / 1024, 1)
            self.log(f"ready in {ready_s:.2f} s, RSS {self.res['rss_after_ready_mb']} MB")
            sampler = asyncio.create_task(self._rss_sampler())

            await self._health()
            body, etag, gz_body, gz_etag = await self._fetch_map()
            await self._throughput(body, etag, gz_body, gz_etag)
            self.svc.sample_rss()
            self.res["rss_after_load_mb"] = _r(self.svc.sample_rss() / 1024, 1)

            if self.n == self.ctx.fresh_n and not self.ctx.args.skip_freshness:
                await self._freshness()
                await self._catalog_edit()
            if self.n == self.ctx.fresh_n and not self.ctx.args.skip_add:
                await self._add_latency()
            if self.n == self.ctx.largest_n and not self.ctx.args.skip_rebuild:
                await self._rebuild()
            self.svc.sample_rss()
        except (asyncio.CancelledError, KeyboardInterrupt):
            self.res["error"] = "interrupted"
            raise
        except Exception as e:  # noqa: BLE001 - record and go on with the next N
            self.res["error"] = f"{type(e).__name__}: {e}"
            self.res["traceback"] = traceback.format_exc()
            self.log(f"ERROR: {type(e).__name__}: {e}")
        finally:
            if sampler is not None:
                sampler.cancel()
                try:
                    await sampler
                except (asyncio.CancelledError, Exception):  # noqa: BLE001
                    pass
            if self.svc is not None and self.svc.proc is not None:
                if self.svc.rss_samples_kb:
                    self.res["rss_max_mb"] = _r(max(self.svc.rss_samples_kb) / 1024, 1)
                hwm = self.svc.hwm_kb()
                if hwm:
                    self.res["rss_hwm_mb"] = _r(hwm / 1024, 1)
                self.res["service_stop"] = self.svc.stop()
                log_tail = tail(self.svc.log_path, 15).replace(self.ctx.api_key, "<API_KEY>")
                if log_tail:
                    self.res["service_log_tail"] = log_tail
            if self.ceiling is not None:
                self.ceiling.stop()
            for d in (root, models_root):
                if self.ctx.args.keep_tmp:
                    self.log(f"keeping {d}")
                    CLEANUP.dirs.remove(d)
                else:
                    CLEANUP.remove_dir(d)
        if "rss_max_mb" in self.res:
            self.log(f"max RSS {self.res['rss_max_mb']} MB (VmHWM {self.res.get('rss_hwm_mb')} MB)")
        return self.res

    async def _rss_sampler(self) -> None:
        assert self.svc is not None
        while True:
            self.svc.sample_rss()
            if self.ceiling is not None and self.ceiling.proc is not None:
                kb = tree_rss_kb(self.ceiling.proc.pid)
                if kb:
                    self.res["ceiling_rss_max_mb"] = max(self.res.get("ceiling_rss_max_mb") or 0, _r(kb / 1024, 1))
            await asyncio.sleep(0.1)

    async def _health(self) -> None:
        assert self.svc is not None
        try:
            p = await probe(self.ctx.session, "GET", self.svc.base + "/health")
            self.res["health_status"] = p.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            self.res["health_status"] = f"error {type(e).__name__}"
        try:
            p = await probe(self.ctx.session, "GET", self.map_url)
            self.res["map_without_key_status"] = p.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            self.res["map_without_key_status"] = f"error {type(e).__name__}"

    async def _fetch_map(self) -> tuple[bytes, str, bytes, str]:
        assert self.ds is not None
        s = self.ctx.session
        p = await probe(s, "GET", self.map_url, self.key_h)
        if p.status != 200:
            raise RuntimeError(f"GET civitai-map answered {p.status}: {p.body[:300]!r}")
        etag = p.headers.get("ETag", "")
        self.res["map_bytes"] = len(p.body)
        self.res["map_first_fetch_ms"] = _r(p.seconds * 1000, 1)
        self.res["map_content_type"] = p.headers.get("Content-Type")
        self.res["map_etag"] = etag
        if p.headers.get("Content-Encoding"):
            self.res["map_identity_content_encoding"] = p.headers["Content-Encoding"]
        t = time.perf_counter()
        doc = orjson.loads(p.body)
        self.res["map_parse_ms"] = _r((time.perf_counter() - t) * 1000, 1)
        check = check_map(doc, self.ds.truth)
        self.res["map_check"] = check
        self.log(
            f"map: {len(p.body) / 1e6:.2f} MB, {check.get('by_version_count')} versions "
            f"({check.get('present_count')} present), {check.get('mismatches', '?')} mismatches"
            + ("" if check["ok"] else f" — {check.get('problem') or check.get('mismatch_examples')}")
        )
        if not etag:
            self.log("WARNING: map has no ETag header")

        # gzip variant
        pg = await probe(s, "GET", self.map_url, {**self.key_h, "Accept-Encoding": "gzip"})
        enc = pg.headers.get("Content-Encoding", "")
        self.res["gzip_served"] = enc == "gzip"
        self.res["gzip_etag"] = pg.headers.get("ETag")
        self.res["gzip_etag_differs"] = pg.headers.get("ETag") != etag
        if enc == "gzip":
            gz_body = pg.body
            self.res["gzip_bytes"] = len(gz_body)
            try:
                self.res["gzip_matches_identity"] = gzip.decompress(gz_body) == p.body
            except (OSError, EOFError):
                self.res["gzip_matches_identity"] = False
            gz_etag = pg.headers.get("ETag") or (etag[:-1] + '-gz"' if etag.endswith('"') else etag + "-gz")
        else:
            gz_body = gzip.compress(p.body, compresslevel=6)
            self.res["gzip_bytes_ceiling_only"] = len(gz_body)
            gz_etag = etag[:-1] + '-gz"' if etag.endswith('"') else '"bench-gz"'
        self.log(f"gzip: service Content-Encoding={enc or 'none'}"
                 + (f", {len(gz_body) / 1e6:.2f} MB" if enc == "gzip" else ""))

        # 304 check
        if etag:
            p304 = await probe(s, "GET", self.map_url, {**self.key_h, "If-None-Match": etag})
            self.res["if_none_match_status"] = p304.status
            self.res["if_none_match_body_bytes"] = len(p304.body)
        return p.body, etag or '"bench-none"', gz_body, gz_etag

    async def _load_pair(self, label: str, svc_headers: dict[str, str], ceil_headers: dict[str, str]) -> dict[str, Any]:
        """Same loader settings against the service, then the ceiling (each after a short warm-up)."""
        assert self.ceiling is not None
        dur = self.ctx.args.duration
        warm = self.ctx.args.warmup
        targets = {"service": (self.map_url, svc_headers), "ceiling": (self.ceiling.url, ceil_headers)}
        runs: dict[str, list[dict[str, Any]]] = {"service": [], "ceiling": []}
        for rep in range(self.ctx.args.repeats):
            # Alternate the order (S C, C S, ...) so drift on the machine hits both sides alike.
            order = ("service", "ceiling") if rep % 2 == 0 else ("ceiling", "service")
            for who in order:
                url, headers = targets[who]
                if warm > 0:
                    await self.ctx.loader.run(url, headers, warm)
                runs[who].append(await self.ctx.loader.run(url, headers, dur))
                if who == "service":
                    self.svc.sample_rss()  # type: ignore[union-attr]
        out: dict[str, Any] = {}
        for who, rs in runs.items():
            merged = dict(rs[-1])
            vals = [r["rps"] for r in rs if r.get("rps") is not None]
            merged["rps"] = _r(percentile(vals, 50), 2)  # median of the runs
            merged["rps_runs"] = vals
            merged["non_2xx_3xx"] = sum(r.get("non_2xx_3xx") or 0 for r in rs)
            merged["socket_errors"] = sum(r.get("socket_errors") or 0 for r in rs)
            out[who] = merged
        a, b = out["service"].get("rps"), out["ceiling"].get("rps")
        out["ratio"] = _r(a / b, 3) if a and b else None
        out["service_rss_after_mb"] = _r(self.svc.sample_rss() / 1024, 1)  # type: ignore[union-attr]
        self.log(f"{label}: service {a or 0:,.0f} req/s, ceiling {b or 0:,.0f} req/s, ratio {out['ratio']}"
                 + (f"  (service non-2xx/3xx: {out['service'].get('non_2xx_3xx')})"
                    if out["service"].get("non_2xx_3xx") else ""))
        return out

    async def _throughput(self, body: bytes, etag: str, gz_body: bytes, gz_etag: str) -> None:
        assert self.ds is not None
        self.ceiling = CeilingProc(self.ds.root, body, etag, gz_body, gz_etag)
        await self.ceiling.start(self.ctx.session)
        s = self.ctx.session
        # Sanity: the ceiling serves the same identity bytes.
        pc = await probe(s, "GET", self.ceiling.url, self.key_h)
        self.res["ceiling_same_bytes"] = pc.body == body
        self.log(f"load ({self.ctx.loader.kind}, {self.ctx.loader.threads} threads, {self.ctx.loader.conns} conns, "
                 f"{self.ctx.args.duration:g} s each)…")
        self.res["map_throughput"] = await self._load_pair("map 200", self.key_h, self.key_h)
        inm = {**self.key_h, "If-None-Match": etag}
        self.res["not_modified_throughput"] = await self._load_pair("map 304", inm, inm)
        gz = {**self.key_h, "Accept-Encoding": "gzip"}
        self.res["gzip_throughput"] = await self._load_pair("map gzip", gz, gz)

    # ---- point answers / status lookups -------------------------------------------------

    async def _detect_point_mode(self, vid: int) -> None:
        p = await probe(self.ctx.session, "GET", f"{self.map_url}?versions={vid}", self.key_h)
        ok = False
        if p.status == 200:
            try:
                doc = orjson.loads(p.body)
                ok = isinstance(doc.get("by_version"), dict) and len(p.body) < 100_000
            except (orjson.JSONDecodeError, AttributeError):
                ok = False
        self.point_mode = ok
        self.res["point_answers"] = {"status": p.status, "bytes": len(p.body), "used": ok}
        pm = await probe(self.ctx.session, "GET", f"{self.map_url}?models={MID_BASE}", self.key_h)
        self.res["point_answers"]["models_status"] = pm.status
        self.res["point_answers"]["models_bytes"] = len(pm.body)
        if not ok:
            self.log(f"point answer ?versions= gave HTTP {p.status} ({len(p.body)} B); polling the full map instead")

    async def _lookup(self, vid: int) -> dict[str, Any] | None:
        """The by_version entry for vid (None when absent)."""
        url = f"{self.map_url}?versions={vid}" if self.point_mode else self.map_url
        async with self.ctx.session.get(url, headers=self.key_h) as r:
            body = await r.read()
            if r.status != 200:
                return None
        e = orjson.loads(body).get("by_version", {}).get(str(vid))
        return e if isinstance(e, dict) else None

    async def _poll(self, check: Callable[[], Awaitable[bool]], t0: float, timeout_s: float) -> float | None:
        """Poll `check` on a 5 ms grid from t0; seconds from t0 to the first True, None on timeout."""
        k = 0
        while True:
            ok = await check()
            now = time.perf_counter()
            if ok:
                return now - t0
            if now - t0 > timeout_s:
                return None
            k += 1
            delay = t0 + k * FRESH_POLL_S - now
            if delay > 0:
                await asyncio.sleep(delay)

    # ---- freshness -------------------------------------------------------------------------

    async def _freshness(self) -> None:
        assert self.ds is not None
        trials = self.ctx.args.fresh_trials
        candidates = [t for t in self.ds.truth if not t.present]
        step = max(1, len(candidates) // trials)
        picks = candidates[::step][:trials]
        await self._detect_point_mode(picks[0].vid)
        self.log(f"freshness: {len(picks)} file landings (rename .part → final), then deletions…")
        land: list[float] = []
        gone: list[float] = []
        timeouts = {"land": 0, "delete": 0}
        for t in picks:
            dest_dir = self.ds.models_dir / t.dest
            final = dest_dir / t.file
            part = dest_dir / (t.file + ".part")
            with open(part, "wb") as f:
                f.write(b"\0" * 4096)
            await asyncio.sleep(self.ctx.args.part_settle)  # the download "runs" for a while

            async def is_present(vid: int = t.vid) -> bool:
                e = await self._lookup(vid)
                return bool(e) and e.get("status") == "present"

            async def is_missing(vid: int = t.vid) -> bool:
                e = await self._lookup(vid)
                return bool(e) and e.get("status") == "missing"

            t0 = time.perf_counter()
            os.rename(part, final)
            d = await self._poll(is_present, t0, FRESH_TIMEOUT_S)
            if d is None:
                timeouts["land"] += 1
            else:
                land.append(d)
            await asyncio.sleep(0.05)
            t0 = time.perf_counter()
            os.unlink(final)
            d = await self._poll(is_missing, t0, FRESH_TIMEOUT_S)
            if d is None:
                timeouts["delete"] += 1
            else:
                gone.append(d)
            await asyncio.sleep(0.1)
        self.res["freshness"] = {
            "landing": summarize_ms(land),
            "deletion": summarize_ms(gone),
            "timeouts": timeouts,
            "timeout_s": FRESH_TIMEOUT_S,
            "poll_interval_ms": FRESH_POLL_S * 1000,
            "lookup": "point answer" if self.point_mode else "full map",
            "part_settle_s": self.ctx.args.part_settle,
        }
        L, D = self.res["freshness"]["landing"], self.res["freshness"]["deletion"]
        self.log(f"landing p50 {L['p50_ms']} ms, p95 {L['p95_ms']} ms, max {L['max_ms']} ms; "
                 f"deletion p50 {D['p50_ms']} ms, p95 {D['p95_ms']} ms; timeouts {timeouts}")

    async def _catalog_edit(self) -> None:
        assert self.ds is not None
        trials = self.ctx.args.edit_trials
        path = self.ds.catalog_dir / "models.json"
        self.log(f"catalog edit: {trials} atomic rewrites of models.json adding one entry each…")
        times: list[float] = []
        timeouts = 0
        for k in range(trials):
            doc = orjson.loads(path.read_bytes())
            vid = EDIT_VID_BASE + self.n + k
            doc["categories"][0]["models"].append({
                "name": f"Edited entry {k}", "file": f"edited_{vid}.safetensors", "dest": "checkpoints",
                "source": "civitai", "civitai_version_id": vid, "civitai_model_id": vid - 100,
                "civitai_file_id": vid + 100, "size_gb": 2.0, "base_model": "SDXL 1.0", "tags": [],
                "hash": hashlib.sha256(b"e%d" % vid).hexdigest().upper(),
            })

            async def appeared(vid: int = vid) -> bool:
                return (await self._lookup(vid)) is not None

            atomic_write_json(path, doc)
            t0 = time.perf_counter()
            d = await self._poll(appeared, t0, EDIT_TIMEOUT_S)
            if d is None:
                timeouts += 1
            else:
                times.append(d)
            await asyncio.sleep(0.3)
        self.res["catalog_edit"] = {**summarize_ms(times), "timeouts": timeouts, "timeout_s": EDIT_TIMEOUT_S}
        c = self.res["catalog_edit"]
        self.log(f"catalog edit visible p50 {c['p50_ms']} ms, p95 {c['p95_ms']} ms, max {c['max_ms']} ms; "
                 f"timeouts {timeouts}")

    # ---- add ---------------------------------------------------------------------------------

    async def _add_latency(self) -> None:
        assert self.svc is not None
        count = self.ctx.args.adds
        self.log(f"add: {count} sequential POST /api/admin/civitai/add/<id> against the fake CivitAI…")
        hits0 = self.ctx.fake.hits
        times: list[float] = []
        failures: dict[str, int] = {}
        examples: list[str] = []
        send_json: bool | None = None
        for k in range(count):
            vid = ADD_VID_BASE + self.n + k
            url = f"{self.svc.base}/api/admin/civitai/add/{vid}"
            kw: dict[str, Any] = {"json": {}} if send_json else {}
            p = await probe(self.ctx.session, "POST", url, self.key_h, **kw)
            if send_json is None and p.status in (400, 415, 422):
                # Maybe the endpoint wants a JSON body: try once with {} and keep that mode if it works.
                p2 = await probe(self.ctx.session, "POST", url, self.key_h, json={})
                if p2.status < 300:
                    send_json, p = True, p2
            if send_json is None:
                send_json = False
            status = None
            try:
                status = orjson.loads(p.body).get("status")
            except (orjson.JSONDecodeError, AttributeError):
                pass
            if p.status < 300 and status == "added":
                times.append(p.seconds)
            else:
                key = f"HTTP {p.status} status={status}"
                failures[key] = failures.get(key, 0) + 1
                if len(examples) < 3:
                    examples.append(f"{key}: {p.body[:300]!r}")
        visible = None
        if times:
            try:
                if self.point_mode is None:
                    await self._detect_point_mode(ADD_VID_BASE + self.n)
                visible = (await self._lookup(ADD_VID_BASE + self.n + count - 1)) is not None
            except (aiohttp.ClientError, asyncio.TimeoutError, orjson.JSONDecodeError):
                visible = False
        self.res["add"] = {
            **summarize_ms(times), "requests": count, "failures": failures, "failure_examples": examples,
            "fake_civitai_hits": self.ctx.fake.hits - hits0, "sent_json_body": bool(send_json),
            "last_added_visible_in_map": visible,
        }
        a = self.res["add"]
        self.log(f"add p50 {a['p50_ms']} ms, p95 {a['p95_ms']} ms ({len(times)}/{count} ok"
                 + (f", failures {failures}" if failures else "") + ")")

    # ---- rebuild -----------------------------------------------------------------------------

    async def _rebuild(self) -> None:
        assert self.ds is not None and self.svc is not None
        path = self.ds.catalog_dir / "models.json"
        doc = orjson.loads(path.read_bytes())
        target = None
        for cat in doc["categories"]:
            for m in cat["models"]:
                if isinstance(m.get("civitai_version_id"), int) and m["civitai_version_id"] >= VID_BASE:
                    target = m
                    break
            if target:
                break
        if target is None:
            raise RuntimeError("no entry to change in models.json")
        vid = target["civitai_version_id"]
        if self.point_mode is None:
            await self._detect_point_mode(vid)
        new_name = f"Rebuilt at {time.time():.3f}"
        target["name"] = new_name
        target["base_model"] = "Rebuilt"
        self.log(f"rebuild: load on the map while models.json ({path.stat().st_size / 1e6:.1f} MB) is rewritten…")

        samples: list[tuple[str, float, float, int]] = []  # (kind, start, end, status)
        stop = asyncio.Event()
        visible_at: list[float] = []
        t_write: list[float] = []
        max_requests = 200_000
        full_url = self.map_url
        point_url = f"{self.map_url}?versions={vid}" if self.point_mode else self.map_url

        async def loop(kind: str, url: str) -> None:
            while not stop.is_set() and len(samples) < max_requests:
                t = time.perf_counter()
                status = -1
                body = b""
                try:
                    async with self.ctx.session.get(url, headers=self.key_h) as r:
                        body = await r.read()
                        status = r.status
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                    pass
                e = time.perf_counter()
                samples.append((kind, t, e, status))
                if kind == "point" and t_write and not visible_at and status == 200 and t >= t_write[0]:
                    try:
                        entry = orjson.loads(body).get("by_version", {}).get(str(vid)) or {}
                    except orjson.JSONDecodeError:
                        entry = {}
                    if entry.get("name") == new_name:
                        visible_at.append(e)

        tasks = [asyncio.create_task(loop("full", full_url)), asyncio.create_task(loop("point", point_url))]
        try:
            await asyncio.sleep(self.ctx.args.rebuild_baseline)
            atomic_write_json(path, doc)
            t_write.append(time.perf_counter())
            deadline = t_write[0] + REBUILD_VISIBLE_TIMEOUT_S
            while not visible_at and time.perf_counter() < deadline and all(not t.done() for t in tasks):
                await asyncio.sleep(0.01)
            await asyncio.sleep(1.0)  # a little after the switch
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        tw = t_write[0]
        tv = visible_at[0] if visible_at else None
        end = tv if tv is not None else tw + REBUILD_VISIBLE_TIMEOUT_S
        before = [s for s in samples if s[2] < tw]
        during = [s for s in samples if s[2] >= tw and s[1] <= end]
        after = [s for s in samples if s[1] > end]

        def stats(rows: list[tuple[str, float, float, int]], kind: str | None = None) -> dict[str, Any]:
            lat = [(e - b) for k, b, e, _ in rows if kind is None or k == kind]
            return {**summarize_ms(lat), "errors": sum(1 for r in rows if r[3] != 200 and (kind is None or r[0] == kind))}

        self.res["rebuild"] = {
            "visible_after_ms": _r((tv - tw) * 1000, 1) if tv is not None else None,
            "lookup": "point answer" if self.point_mode else "full map",
            "catalog_bytes": path.stat().st_size,
            "during": {"all": stats(during), "full": stats(during, "full"), "point": stats(during, "point")},
            "baseline": {"all": stats(before), "full": stats(before, "full"), "point": stats(before, "point")},
            "after": {"all": stats(after)},
        }
        r = self.res["rebuild"]
        self.log(f"rebuild: change visible after {r['visible_after_ms']} ms; max latency during "
                 f"{r['during']['all']['max_ms']} ms (full map {r['during']['full']['max_ms']} ms, point "
                 f"{r['during']['point']['max_ms']} ms) vs baseline max {r['baseline']['all']['max_ms']} ms")


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def _pf(ok: bool | None) -> str:
    return "—" if ok is None else ("PASS" if ok else "**FAIL**")


def _fmt(x: Any, unit: str = "", nd: int = 2) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:,.{nd}f}{unit}"
    if isinstance(x, int):
        return f"{x:,}{unit}"
    return f"{x}{unit}"


def table_for(res: dict[str, Any], fresh_n: int) -> tuple[str, list[dict[str, Any]]]:
    n = res["n"]
    rows: list[tuple[str, str, str, bool | None]] = []
    verdicts: list[dict[str, Any]] = []

    def row(metric: str, value: str, target: str = "—", ok: bool | None = None) -> None:
        rows.append((metric, value, target, ok))
        verdicts.append({"metric": metric, "value": value, "target": target, "pass": ok})

    row("catalog generation", _fmt(res.get("generate_s"), " s"))
    if "error" in res:
        lines = [ln.strip() for ln in res["error"].splitlines() if ln.strip()]
        msg = lines[0][:160] + (f" … {lines[-1][:200]}" if len(lines) > 1 else "")
        row("ERROR", msg, "no error", False)
    ready = res.get("ready_s")
    if ready is not None or "error" in res:
        tgt = 3.0 if n == 10_000 else 15.0 if n == 100_000 else None
        row("cold start to /ready", _fmt(ready, " s", 3), f"≤ {tgt:g} s" if tgt else "—",
            (ready is not None and ready <= tgt) if tgt else None)
    if "rss_max_mb" in res:
        tgt = 300.0 if n == 100_000 else None
        row("RSS max (VmRSS, sampled every 100 ms)", _fmt(res["rss_max_mb"], " MB", 1), "≤ 300 MB" if tgt else "—",
            res["rss_max_mb"] <= tgt if tgt else None)
        if res.get("ceiling_rss_max_mb"):
            row("ceiling server RSS max under the same load", _fmt(res["ceiling_rss_max_mb"], " MB", 1))
        row("RSS after ready / after load / VmHWM",
            f"{_fmt(res.get('rss_after_ready_mb'), '', 1)} / {_fmt(res.get('rss_after_load_mb'), '', 1)} / "
            f"{_fmt(res.get('rss_hwm_mb'), ' MB', 1)}")
    chk = res.get("map_check")
    if chk:
        row("map matches generated truth",
            f"{chk.get('by_version_count')} versions, {chk.get('present_count')} present, "
            f"{chk.get('mismatches', 'n/a')} mismatches", f"{chk.get('expected_versions')} / "
            f"{chk.get('expected_present')} / 0", chk.get("ok"))
        row("map body (identity / gzip)", f"{_fmt(res.get('map_bytes'))} B / "
            f"{_fmt(res.get('gzip_bytes'))} B" + ("" if res.get("gzip_served") else " (service does not gzip)"))
    if "map_without_key_status" in res:
        row("map without X-API-Key → status", str(res["map_without_key_status"]), "401",
            res["map_without_key_status"] == 401)
    if "if_none_match_status" in res:
        row("If-None-Match → status", str(res["if_none_match_status"]), "304", res["if_none_match_status"] == 304)

    def tp(name: str, key: str, ceiling_name: str, target: float | None) -> None:
        d = res.get(key)
        if not d:
            return
        sv, cv = d["service"], d["ceiling"]
        bad = (sv.get("non_2xx_3xx") or 0) + (sv.get("socket_errors") or 0)
        extra = f" ({bad} errors)" if bad else ""
        def spread(d: dict[str, Any]) -> str:
            runs = d.get("rps_runs") or []
            return f" [{min(runs):,.0f}–{max(runs):,.0f}]" if len(runs) > 1 else ""

        row(f"{name} req/s: service / {ceiling_name}",
            f"{_fmt(sv.get('rps'), '', 0)}{spread(sv)} / {_fmt(cv.get('rps'), '', 0)}{spread(cv)}{extra}")
        ratio = d.get("ratio")
        ok = None if target is None else (ratio is not None and ratio >= target and not bad)
        row(f"{name} ratio", _fmt(ratio, "", 3), f"≥ {target:g}" if target else "—", ok)
        if sv.get("latency_p99_ms") is not None:
            row(f"{name} latency p50 / p99 (service)",
                f"{_fmt(sv.get('latency_p50_ms'), '', 2)} / {_fmt(sv.get('latency_p99_ms'), ' ms', 2)}")

    tp("map 200", "map_throughput", "ceiling", 0.8 if n == 10_000 else None)
    tp("map 304", "not_modified_throughput", "bare 304", 0.8)
    if "gzip_throughput" in res:
        tp("map gzip", "gzip_throughput", "ceiling (pre-gzipped)", None)
        row("service serves gzip", "yes" if res.get("gzip_served") else "no",
            "—", None)
    fr = res.get("freshness")
    if fr:
        L, D = fr["landing"], fr["deletion"]
        row(f"file landing → present p50 / max ({L['n']} trials)", f"{_fmt(L['p50_ms'], '', 1)} / "
            f"{_fmt(L['max_ms'], ' ms', 1)}" + (f", {fr['timeouts']['land']} timeouts" if fr['timeouts']['land'] else ""))
        row("file landing → present p95", _fmt(L["p95_ms"], " ms", 1), "≤ 250 ms",
            L["p95_ms"] is not None and L["p95_ms"] <= 250 and not fr["timeouts"]["land"])
        row("file deleted → missing p50 / p95 / max", f"{_fmt(D['p50_ms'], '', 1)} / {_fmt(D['p95_ms'], '', 1)} / "
            f"{_fmt(D['max_ms'], ' ms', 1)}" + (f", {fr['timeouts']['delete']} timeouts" if fr['timeouts']['delete'] else ""),
            "≤ 250 ms (p95)", D["p95_ms"] is not None and D["p95_ms"] <= 250 and not fr["timeouts"]["delete"])
    ce = res.get("catalog_edit")
    if ce:
        row(f"external catalog edit → visible p50 / p95 ({ce['n']} trials)",
            f"{_fmt(ce['p50_ms'], '', 1)} / {_fmt(ce['p95_ms'], ' ms', 1)}"
            + (f", {ce['timeouts']} timeouts" if ce["timeouts"] else ""),
            "≤ 250 ms (p95)", ce["p95_ms"] is not None and ce["p95_ms"] <= 250 and not ce["timeouts"])
    ad = res.get("add")
    if ad:
        ok_n = ad["n"]
        row(f"POST add latency p50 / p95 ({ok_n}/{ad['requests']} ok)",
            f"{_fmt(ad['p50_ms'], '', 1)} / {_fmt(ad['p95_ms'], ' ms', 1)}", f"{ad['requests']} added",
            ok_n == ad["requests"])
    rb = res.get("rebuild")
    if rb:
        row("rebuild: change visible after", _fmt(rb["visible_after_ms"], " ms", 1), "visible", rb["visible_after_ms"] is not None)
        row("rebuild: max request latency during rebuild (full / point)",
            f"{_fmt(rb['during']['full']['max_ms'], '', 1)} / {_fmt(rb['during']['point']['max_ms'], ' ms', 1)}"
            f" (baseline max {_fmt(rb['baseline']['full']['max_ms'], '', 1)} / "
            f"{_fmt(rb['baseline']['point']['max_ms'], ' ms', 1)})")
    st = res.get("service_stop")
    if st:
        row("service stop on SIGTERM", f"{_fmt(st.get('stop_s'), ' s', 3)}, exit code {st.get('exit_code')}"
            + (f" ({st['stop_note']})" if st.get("stop_note") else ""))

    out = [f"### N = {n:,}", "", "| metric | value | target | result |", "|---|---|---|---|"]
    for metric, value, target, ok in rows:
        out.append(f"| {metric} | {value.replace('|', '/')} | {target} | {_pf(ok)} |")
    return "\n".join(out) + "\n", verdicts


def machine_md(m: dict[str, Any], args: argparse.Namespace) -> str:
    loader = m["wrk"] if m["load_generator"] == "wrk" else "aiohttp client loop in the harness (fallback; wrk absent or --loader aiohttp)"
    return "\n".join([
        "## Machine",
        "",
        f"- nproc: {m['nproc']} (cpu_count {m['cpu_count']}), CPU: {m['cpu_model']}, RAM: {m['mem_total_mb']} MB",
        f"- Python {m['python']}, aiohttp {m['aiohttp']}, orjson {m['orjson']}, kernel {m['kernel']}",
        f"- load generator: {loader}; {args.threads} threads, {args.conns} connections, "
        f"{args.duration:g} s per run after a {args.warmup:g} s warm-up, {args.repeats} run(s) per target "
        f"alternating service/ceiling (median; range in brackets); service, ceiling and load generator share the cores",
        f"- catalogs in {m['tmp_dir']} ({m['tmp_fs']}), models folder in {m.get('models_tmp_dir')} "
        f"({m.get('models_tmp_fs')})",
        "",
    ])


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
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
    p.add_argument("--rebuild-baseline", type=float, default=1.5, help="seconds of load before the rewrite")
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
    args = p.parse_args(argv)
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
    return args


async def amain(args: argparse.Namespace) -> int:
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
            for n in sizes:
                bench = Bench(ctx, n)
                results[str(n)] = bench.res  # filled in as it goes, so an interrupted run still reports
                try:
                    await bench.run()
                finally:
                    write_reports(args, machine, results, started, fresh_n, partial=n != sizes[-1])
    finally:
        await fake.stop()
    md = write_reports(args, machine, results, started, fresh_n, partial=False)
    print()
    print(md)
    out = Path(args.out)
    log(None, f"wrote {out / 'latest.json'} and {out / 'latest.md'}")
    return 1 if any("error" in r for r in results.values()) else 0


def write_reports(args: argparse.Namespace, machine: dict[str, Any], results: dict[str, Any], started: str,
                  fresh_n: int, partial: bool) -> str:
    parts = [f"# Catalog service benchmark — {started}" + (" (partial)" if partial else ""), "",
             machine_md(machine, args)]
    verdicts: dict[str, Any] = {}
    for n, res in results.items():
        md, v = table_for(res, fresh_n)
        parts.append(md)
        verdicts[n] = v
    md = "\n".join(parts)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "started": started,
        "finished": None if partial else _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine,
        "settings": {k: v for k, v in vars(args).items() if k not in ("size_list",)},
        "results": results,
        "verdicts": verdicts,
    }
    (out / "latest.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    (out / "latest.md").write_text(md)
    return md


def main(argv: list[str] | None = None) -> int:
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
