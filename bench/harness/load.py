"""Load: wrk or an aiohttp loop for throughput, and timed request loops for latency while something happens."""

import asyncio
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from .common import CLEANUP, LOAD_MAX_REQUESTS, _r, percentile, summarize_ms

_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
_TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def _ms(text: str) -> float | None:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    return float(m.group(1)) * _TIME_UNITS[m.group(2)] if m else None


def parse_wrk(out: str) -> dict[str, Any]:
    """The numbers in wrk's output (requests/s, latency, errors)."""
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
    """Throughput load: wrk when installed, else an aiohttp client loop."""
    def __init__(self, kind: str, threads: int, conns: int) -> None:
        self.kind = kind  # "wrk" or "aiohttp"
        self.threads = threads
        self.conns = conns

    async def run(self, url: str, headers: dict[str, str], duration: float) -> dict[str, Any]:
        """Load url for `duration` seconds; requests/s, latency and errors."""
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


@dataclass(slots=True)
class Sample:
    """One timed request of a loop."""
    kind: str
    start: float
    end: float
    status: int  # -1: no answer


BodyHook = Callable[[Sample, bytes], None]


class RequestLoops:
    """Loops that each ask one URL again and again until stopped (back to back, or on an interval), timing each request."""

    def __init__(self, session: aiohttp.ClientSession, headers: dict[str, str], max_samples: int = 200_000) -> None:
        self.session = session
        self.headers = headers
        self.max_samples = max_samples
        self.samples: list[Sample] = []
        self._loops: list[tuple[str, str, float, BodyHook | None]] = []
        self._tasks: list[asyncio.Task] = []
        self._stop = asyncio.Event()

    def add(self, kind: str, url: str, interval_s: float = 0.0, on_body: BodyHook | None = None) -> None:
        """One more loop (before the loops start); `on_body` sees every answer."""
        self._loops.append((kind, url, interval_s, on_body))

    async def _loop(self, kind: str, url: str, interval_s: float, on_body: BodyHook | None) -> None:
        t0 = time.perf_counter()
        k = 0
        while not self._stop.is_set() and len(self.samples) < self.max_samples:
            t = time.perf_counter()
            status, body = -1, b""
            try:
                async with self.session.get(url, headers=self.headers) as r:
                    body = await r.read()
                    status = r.status
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                pass
            sample = Sample(kind, t, time.perf_counter(), status)
            self.samples.append(sample)
            if on_body is not None:
                on_body(sample, body)
            if interval_s > 0:
                k = max(k + 1, math.ceil((sample.end - t0) / interval_s))
                delay = t0 + k * interval_s - time.perf_counter()
                if delay > 0:
                    try:
                        await asyncio.wait_for(self._stop.wait(), delay)
                    except asyncio.TimeoutError:
                        pass

    async def __aenter__(self) -> "RequestLoops":
        self._tasks = [asyncio.create_task(self._loop(*spec)) for spec in self._loops]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def running(self) -> bool:
        """Whether every loop is still going."""
        return all(not t.done() for t in self._tasks)

    def window(self, t_from: float, t_to: float) -> list[Sample]:
        """The requests in flight at some moment of [t_from, t_to]."""
        return [s for s in self.samples if s.end >= t_from and s.start <= t_to]

    @staticmethod
    def stats(samples: list[Sample], kind: str | None = None) -> dict[str, Any]:
        """Latency summary and error count of the samples (of one kind)."""
        rows = [s for s in samples if kind is None or s.kind == kind]
        return {**summarize_ms([s.end - s.start for s in rows]), "errors": sum(1 for s in rows if s.status != 200)}
