"""An outside edit of models.json under load: one entry renamed, editor-style, several times.

While loops ask for the full map and a point answer back to back and /health every 10 ms,
each trial renames the first entry of models.json (temp file + os.replace, written in a
thread so the harness's own loop keeps timing requests) and waits until the point answer
shows the new name. Per trial: time to visible, and the worst request of each kind while
the change was applied (from the write until it showed).
"""

import asyncio
import time
from typing import TYPE_CHECKING, Any

from .client import version_entry
from .common import (
    HEALTH_POLL_S,
    REBUILD_SETTLE_S,
    REBUILD_VISIBLE_TIMEOUT_S,
    _r,
    summarize_ms,
)
from .dataset import rewrite_with_new_name
from .load import RequestLoops, Sample

if TYPE_CHECKING:
    from .bench import SizeRun

KINDS = ("full", "point", "health")


def _rename(path: Any, old: str, new: str) -> float:
    rewrite_with_new_name(path, old, new)
    return time.perf_counter()


async def measure_rebuild(run: "SizeRun") -> None:
    """Several renames of one entry under load: visible p50/p95 and the worst latency while each was applied."""
    args, c = run.ctx.args, run.client
    path = run.ds.models_json
    target = run.ds.truth[0]  # the first entry of models.json, near the top of the file
    await c.detect_point_mode(target.vid)
    name = target.name
    wanted: dict[str, Any] = {"name": None, "seen_at": None}

    def on_point(sample: Sample, body: bytes) -> None:
        if wanted["name"] is not None and wanted["seen_at"] is None and sample.status == 200:
            entry = version_entry(body, target.vid) or {}
            if entry.get("name") == wanted["name"]:
                wanted["seen_at"] = sample.end

    loops = RequestLoops(c.session, c.key_h)
    loops.add("full", c.map_url)
    loops.add("point", c.lookup_url(target.vid), on_body=on_point)
    loops.add("health", c.base + "/health", interval_s=HEALTH_POLL_S)
    run.log(f"rebuild: up to {args.rebuild_trials} renames of one entry in models.json "
            f"({path.stat().st_size / 1e6:.1f} MB) under load (at most {args.phase_budget_s:g} s)…")
    trials: list[dict[str, Any]] = []
    windows: list[tuple[float, float, float]] = []  # (write, visible or timeout, settled)
    async with loops:
        await asyncio.sleep(args.rebuild_baseline)
        t_baseline_end = time.perf_counter()
        for k in range(args.rebuild_trials):
            if k >= 2 and time.perf_counter() - t_baseline_end > args.phase_budget_s:
                break
            new_name = f"Bench edit {k} at {time.time():.3f}"
            wanted.update(name=new_name, seen_at=None)
            tw = await asyncio.to_thread(_rename, path, name, new_name)
            name = new_name
            while wanted["seen_at"] is None and time.perf_counter() < tw + REBUILD_VISIBLE_TIMEOUT_S and loops.running:
                await asyncio.sleep(0.01)
            tv = wanted["seen_at"]
            end = tv if tv is not None else tw + REBUILD_VISIBLE_TIMEOUT_S
            await asyncio.sleep(REBUILD_SETTLE_S)
            windows.append((tw, end, time.perf_counter()))
            during = loops.window(tw, end)
            trials.append({
                "visible_after_ms": _r((tv - tw) * 1000, 1) if tv is not None else None,
                **{f"max_{kind}_ms": loops.stats(during, kind)["max_ms"] for kind in KINDS},
            })
            run.log(f"rebuild {k + 1}: visible after {trials[-1]['visible_after_ms']} ms; worst full / point / "
                    f"health {trials[-1]['max_full_ms']} / {trials[-1]['max_point_ms']} / {trials[-1]['max_health_ms']} ms")
            if tv is None:
                break  # the next rename would race this one
    baseline = [s for s in loops.samples if s.end < t_baseline_end]
    during = [s for tw, end, _ in windows for s in loops.window(tw, end)]
    after = [s for _, end, settled in windows for s in loops.samples if end < s.start <= settled]
    visible = [t["visible_after_ms"] / 1000 for t in trials if t["visible_after_ms"] is not None]
    run.res["rebuild"] = {
        "trials": len(trials),
        "asked": args.rebuild_trials,
        "visible": summarize_ms(visible),
        "timeouts": sum(1 for t in trials if t["visible_after_ms"] is None),
        "timeout_s": REBUILD_VISIBLE_TIMEOUT_S,
        "lookup": c.lookup_kind,
        "catalog_bytes": path.stat().st_size,
        "during": {kind: loops.stats(during, kind) for kind in KINDS},
        "baseline": {kind: loops.stats(baseline, kind) for kind in KINDS},
        "after": {kind: loops.stats(after, kind) for kind in KINDS},
        "per_trial": trials,
    }
    r = run.res["rebuild"]
    run.log(f"rebuild: visible p50 {r['visible']['p50_ms']} ms, p95 {r['visible']['p95_ms']} ms over {len(trials)} "
            f"trials; worst during: full {r['during']['full']['max_ms']} / point {r['during']['point']['max_ms']} / "
            f"health {r['during']['health']['max_ms']} ms (baseline {r['baseline']['full']['max_ms']} / "
            f"{r['baseline']['point']['max_ms']} / {r['baseline']['health']['max_ms']} ms)")
