"""What the loopback benchmarks share: ports, the service as a process, and the map's latency."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parent.parent
KEY = "bench-key-0123456789abcdef"
AUTH = {"X-API-Key": KEY}


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ms(values: list[float], q: float) -> float:
    """The q-quantile of durations in seconds, in milliseconds."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


class ServiceProcess:
    """`python -m service` on these folders, asking this CivitAI; its log goes to a file."""

    def __init__(self, catalogs: Path, models: Path, civitai_url: str, log: Path, **env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        settings = {"CATALOG_DIR": str(catalogs), "MODELS_DIR": str(models), "PORT": str(self.port), "API_KEY": KEY,
                    "CIVITAI_BASE_URL": civitai_url, "CIVITAI_FALLBACK_URL": "", "UPDATE_CHECK_INTERVAL_H": "0", **env}
        with open(log, "wb") as output:
            self.proc = subprocess.Popen([sys.executable, "-m", "service"], cwd=REPO, env={**os.environ, **settings},
                                         stdout=subprocess.DEVNULL, stderr=output)

    async def wait_ready(self, session: aiohttp.ClientSession, timeout_s: float = 60) -> None:
        """Until /ready answers 200."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                async with session.get(f"{self.base}/ready") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service stopped; see {self.log}")
            await asyncio.sleep(0.02)
        raise RuntimeError("the service did not become ready")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)


async def map_latencies(session: aiohttp.ClientSession, base: str, until: asyncio.Event, pause_s: float = 0.01) -> list[float]:
    """GET the map again and again (one connection, `pause_s` apart) until `until` is set."""
    times = []
    while not until.is_set():
        started = time.perf_counter()
        async with session.get(f"{base}/api/admin/models/civitai-map", headers=AUTH) as response:
            await response.read()
        times.append(time.perf_counter() - started)
        await asyncio.sleep(pause_s)
    return times
