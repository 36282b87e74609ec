"""Load generation (wrk, or an aiohttp loop), latency probes, and the check of a full map against the truth."""


import argparse
import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from multidict import CIMultiDict
from .common import CLEANUP, LOAD_MAX_REQUESTS, _r, percentile
from .dataset import Truth
from .processes import FakeCivitai

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
