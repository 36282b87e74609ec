"""Talking to the service as a client does: timed probes, point answers, polling until something shows."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDict

from .common import FRESH_POLL_S, MAP_PATH, MID_BASE


@dataclass
class Probe:
    """One answer: status, headers, body and how long it took."""
    status: int
    headers: CIMultiDict  # case-insensitive
    body: bytes
    seconds: float


async def probe(session: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str] | None = None,
                **kw: Any) -> Probe:
    """One timed request, body read."""
    t = time.perf_counter()
    async with session.request(method, url, headers=headers or {}, **kw) as r:
        body = await r.read()
        return Probe(r.status, CIMultiDict(r.headers), body, time.perf_counter() - t)


async def poll(check: Callable[[], Awaitable[bool]], t0: float, timeout_s: float) -> float | None:
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


def version_entry(body: bytes, vid: int) -> dict[str, Any] | None:
    """The by_version entry of vid in a map body (None when absent or unreadable)."""
    try:
        e = orjson.loads(body).get("by_version", {}).get(str(vid))
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return e if isinstance(e, dict) else None


class ServiceClient:
    """The service's map as the extension sees it: the full map, or a point answer when the service has them."""

    def __init__(self, session: aiohttp.ClientSession, base: str, api_key: str) -> None:
        self.session = session
        self.base = base
        self.key_h = {"X-API-Key": api_key}
        self.point_mode: bool | None = None  # None until detected
        self.point_answers: dict[str, Any] = {}

    @property
    def map_url(self) -> str:
        """The full map."""
        return self.base + MAP_PATH

    def lookup_url(self, vid: int) -> str:
        """Where to ask for one version: its point answer, else the full map."""
        return f"{self.map_url}?versions={vid}" if self.point_mode else self.map_url

    async def detect_point_mode(self, vid: int) -> None:
        """Find out once whether ?versions= gives a small answer; otherwise lookups read the full map."""
        if self.point_mode is not None:
            return
        p = await probe(self.session, "GET", f"{self.map_url}?versions={vid}", self.key_h)
        ok = False
        if p.status == 200:
            try:
                doc = orjson.loads(p.body)
                ok = isinstance(doc.get("by_version"), dict) and len(p.body) < 100_000
            except (orjson.JSONDecodeError, AttributeError):
                ok = False
        self.point_mode = ok
        self.point_answers = {"status": p.status, "bytes": len(p.body), "used": ok}
        pm = await probe(self.session, "GET", f"{self.map_url}?models={MID_BASE}", self.key_h)
        self.point_answers["models_status"] = pm.status
        self.point_answers["models_bytes"] = len(pm.body)

    @property
    def lookup_kind(self) -> str:
        """How lookups ask: "point answer" or "full map"."""
        return "point answer" if self.point_mode else "full map"

    async def lookup(self, vid: int) -> dict[str, Any] | None:
        """The by_version entry for vid (None when absent)."""
        async with self.session.get(self.lookup_url(vid), headers=self.key_h) as r:
            body = await r.read()
            if r.status != 200:
                return None
        return version_entry(body, vid)
