"""Adds: sequential POST /api/admin/civitai/add/<id> against the fake CivitAI, each written (fsync) before it answers."""

import asyncio
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from .client import probe
from .common import ADD_VID_BASE, summarize_ms

if TYPE_CHECKING:
    from .bench import SizeRun


async def measure_adds(run: "SizeRun", count: int) -> dict[str, Any]:
    """Up to `count` adds (fewer when --phase-budget-s runs out); latency, failures, the last one visible in the map."""
    c, fake = run.client, run.ctx.fake
    budget_s = run.ctx.args.phase_budget_s
    run.log(f"add: {count} sequential POST /api/admin/civitai/add/<id> against the fake CivitAI "
            f"(at most {budget_s:g} s)…")
    hits0 = fake.hits
    times: list[float] = []
    failures: dict[str, int] = {}
    examples: list[str] = []
    send_json: bool | None = None
    started = time.perf_counter()
    sent = 0
    for k in range(count):
        if k >= 2 and time.perf_counter() - started > budget_s:
            break
        sent += 1
        vid = ADD_VID_BASE + run.n + k
        url = f"{c.base}/api/admin/civitai/add/{vid}"
        kw: dict[str, Any] = {"json": {}} if send_json else {}
        p = await probe(c.session, "POST", url, c.key_h, **kw)
        if send_json is None and p.status in (400, 415, 422):
            # Maybe the endpoint wants a JSON body: try once with {} and keep that mode if it works.
            p2 = await probe(c.session, "POST", url, c.key_h, json={})
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
            await c.detect_point_mode(ADD_VID_BASE + run.n)
            visible = (await c.lookup(ADD_VID_BASE + run.n + sent - 1)) is not None
        except (aiohttp.ClientError, asyncio.TimeoutError):
            visible = False
    out = {
        **summarize_ms(times), "requests": sent, "asked": count, "seconds": round(time.perf_counter() - started, 1),
        "failures": failures, "failure_examples": examples,
        "fake_civitai_hits": fake.hits - hits0, "sent_json_body": bool(send_json),
        "last_added_visible_in_map": visible,
    }
    run.log(f"add p50 {out['p50_ms']} ms, p95 {out['p95_ms']} ms ({len(times)}/{sent} ok"
            + (f", failures {failures}" if failures else "")
            + (f"; stopped after {sent} of {count}: --phase-budget-s" if sent < count else "") + ")")
    return out
