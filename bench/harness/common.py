"""Shared pieces of the benchmark harness: constants, logging, process-group cleanup, numbers, machine facts."""


import atexit
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

BENCH_DIR = Path(__file__).resolve().parent.parent  # bench/
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
REBUILD_SETTLE_S = 1.0  # after a change is visible, before the next one
HEALTH_POLL_S = 0.010  # /health is asked every 10 ms while something heavy happens
MEMORY_SAMPLE_S = 0.100
LOAD_MAX_REQUESTS = 5_000_000
HTTP_TIMEOUT_S = 60.0


def log(n: int | str | None, msg: str) -> None:
    """Print a line, prefixed with the run it belongs to."""
    prefix = f"[{n}] " if n is not None else ""
    print(f"{prefix}{msg}", flush=True)


# --------------------------------------------------------------------------------------
# Cleanup: every child runs in its own session (process group); kill the group at the end.
# --------------------------------------------------------------------------------------


class Cleanup:
    """The child processes and temp folders to remove at the end, whatever happens."""
    def __init__(self) -> None:
        self.procs: list[Any] = []  # subprocess.Popen or asyncio.subprocess.Process
        self.dirs: list[Path] = []

    def add_proc(self, proc: Any) -> Any:
        """Register a child process for cleanup; returns it."""
        self.procs.append(proc)
        return proc

    def add_dir(self, path: Path) -> Path:
        """Register a temp folder for removal; returns it."""
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
        """Remove a temp folder now."""
        shutil.rmtree(path, ignore_errors=True)
        if path in self.dirs:
            self.dirs.remove(path)

    def run(self) -> None:
        """Kill every registered process group and remove every registered folder."""
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
    """A free TCP port on loopback."""
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
    """n, p50, p95, max and min in milliseconds of durations in seconds."""
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
    """VmRSS of a process and all its descendants, in kB."""
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
    """Facts about the machine and the tools, for the report."""
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
        "loadavg": loadavg(),
    }


def loadavg() -> str:
    """The 1/5/15-minute load averages: how busy the shared cores were (others may be using them)."""
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())
