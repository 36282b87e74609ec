"""The processes a run starts: the service and the ceiling server, each in its own process group."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from .common import (
    CEILING,
    CLEANUP,
    MAP_PATH,
    READY_POLL_S,
    REPO,
    SERVICE_ENV_KEYS,
    _killpg,
    _r,
    free_port,
    read_proc_status,
)
from .dataset import Dataset


def tail(path: Path, n: int = 25) -> str:
    """The last n lines of a log file ("" when it cannot be read)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def spawn_logged(argv: list[str], cwd: str, log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start argv in its own session with stdout and stderr to log_path; registered for cleanup."""
    with open(log_path, "wb") as logf:
        return CLEANUP.add_proc(subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=logf,
                                                 stderr=subprocess.STDOUT, start_new_session=True))


async def wait_for_200(session: aiohttp.ClientSession, url: str, proc: subprocess.Popen, log_path: Path,
                       t0: float, timeout_s: float, interval_s: float, what: str) -> float:
    """Poll url on an interval grid from t0 until it answers 200; seconds from t0. Raises if proc exits or time runs out."""
    deadline = t0 + timeout_s
    k = 0
    last = "no answer"
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before ready; log tail:\n{tail(log_path)}")
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                await r.read()
                if r.status == 200:
                    return time.perf_counter() - t0
                last = f"HTTP {r.status}"
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            last = type(e).__name__
        k += 1
        delay = t0 + k * interval_s - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    raise RuntimeError(f"{what} not ready after {timeout_s:.0f} s (last: {last}); log tail:\n{tail(log_path)}")


class ServiceProc:
    """`python -m service` on a generated library, on a free loopback port, with a key of its own."""
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

    @property
    def base(self) -> str:
        """The service root URL."""
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> None:
        """Start the service in its own session, its output to service.log."""
        self.t_spawn = time.perf_counter()
        self.proc = spawn_logged([sys.executable, "-m", "service"], self.cwd, self.log_path, self.env)

    async def wait_ready(self, session: aiohttp.ClientSession, timeout_s: float) -> float:
        """Seconds from spawn until GET /ready answered 200 (polled every 20 ms)."""
        assert self.proc is not None
        return await wait_for_200(session, self.base + "/ready", self.proc, self.log_path, self.t_spawn, timeout_s,
                                  READY_POLL_S, "service")

    def hwm_kb(self) -> int:
        """VmHWM of the service process in kB (its children not included)."""
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
    """bench/ceiling.py serving the same bytes as the service: the upper bound for the throughput runs."""
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
        """The map path on the ceiling."""
        return f"http://127.0.0.1:{self.port}{MAP_PATH}"

    async def start(self, session: aiohttp.ClientSession) -> None:
        """Start the ceiling and wait until it serves the map."""
        t0 = time.perf_counter()
        self.proc = spawn_logged(self.args, str(REPO), self.log_path)
        await wait_for_200(session, self.url, self.proc, self.log_path, t0, 20.0, 0.05, "ceiling server")

    def stop(self) -> None:
        """Kill the ceiling."""
        if self.proc is not None:
            CLEANUP.kill_proc(self.proc, grace_s=3.0)
