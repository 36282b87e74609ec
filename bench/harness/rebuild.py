"""Outside edits of models.json under load: one entry renamed, editor-style, several times, in
this service's layout and then in each layout other programs save in.

While loops ask for the full map and a point answer back to back and /health every 10 ms,
each trial renames the first entry of models.json (temp file + os.replace, written in a
thread so the harness's own loop keeps timing requests) and waits until the point answer
shows the new name. Per trial: time to visible, and the worst request of each kind while
the change was applied (from the write until it showed). For each other layout (`--edit-layouts`)
the first trial re-formats the whole file into it (the rename with it), then the renames run
in that layout.
"""

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .client import version_entry
from .common import (
    HEALTH_POLL_S,
    REBUILD_SETTLE_S,
    REBUILD_VISIBLE_TIMEOUT_S,
    _r,
    summarize_ms,
)
from .dataset import relayout, rewrite_with_new_name, write_renamed
from .load import RequestLoops, Sample

if TYPE_CHECKING:
    from .bench import SizeRun

KINDS = ("full", "point", "health")
Save = Callable[[Path, str, str], None]  # (path, old name, new name): one outside save


class _Edits:
    """The renames of one entry, each timed from its save until the point answer shows it."""

    def __init__(self, run: "SizeRun", loops: RequestLoops, name: str) -> None:
        self.run, self.loops, self.name = run, loops, name
        self.wanted: dict[str, Any] = {"name": None, "seen_at": None}
        self.windows: list[tuple[float, float, float]] = []  # (write, visible or timeout, settled), every trial
        self.count = 0

    def on_point(self, sample: Sample, body: bytes, vid: int) -> None:
        if self.wanted["name"] is not None and self.wanted["seen_at"] is None and sample.status == 200:
            entry = version_entry(body, vid) or {}
            if entry.get("name") == self.wanted["name"]:
                self.wanted["seen_at"] = sample.end

    async def trials(self, label: str, saves: list[Save], budget_from: float) -> dict[str, Any]:
        """Run the saves one after the other (after the second, only within the phase budget)."""
        args, path, loops = self.run.ctx.args, self.run.ds.models_json, self.loops
        trials: list[dict[str, Any]] = []
        windows: list[tuple[float, float, float]] = []
        for k, save in enumerate(saves):
            if k >= 2 and time.perf_counter() - budget_from > args.phase_budget_s:
                break
            self.count += 1
            new_name = f"Bench edit {self.count} at {time.time():.3f}"
            self.wanted.update(name=new_name, seen_at=None)
            tw = await asyncio.to_thread(_timed, save, path, self.name, new_name)
            self.name = new_name
            while self.wanted["seen_at"] is None and time.perf_counter() < tw + REBUILD_VISIBLE_TIMEOUT_S and loops.running:
                await asyncio.sleep(0.01)
            tv = self.wanted["seen_at"]
            end = tv if tv is not None else tw + REBUILD_VISIBLE_TIMEOUT_S
            await asyncio.sleep(REBUILD_SETTLE_S)
            windows.append((tw, end, time.perf_counter()))
            during = loops.window(tw, end)
            trials.append({
                "visible_after_ms": _r((tv - tw) * 1000, 1) if tv is not None else None,
                **{f"max_{kind}_ms": loops.stats(during, kind)["max_ms"] for kind in KINDS},
            })
            self.run.log(f"{label} {k + 1}: visible after {trials[-1]['visible_after_ms']} ms; worst full / point / "
                         f"health {trials[-1]['max_full_ms']} / {trials[-1]['max_point_ms']} / {trials[-1]['max_health_ms']} ms")
            if tv is None:
                break  # the next save would race this one
        self.windows += windows
        during = [s for tw, end, _ in windows for s in loops.window(tw, end)]
        after = [s for _, end, settled in windows for s in loops.samples if end < s.start <= settled]
        visible = [t["visible_after_ms"] / 1000 for t in trials if t["visible_after_ms"] is not None]
        return {
            "trials": len(trials),
            "asked": len(saves),
            "visible": summarize_ms(visible),
            "timeouts": sum(1 for t in trials if t["visible_after_ms"] is None),
            "timeout_s": REBUILD_VISIBLE_TIMEOUT_S,
            "catalog_bytes": path.stat().st_size,
            "during": {kind: loops.stats(during, kind) for kind in KINDS},
            "after": {kind: loops.stats(after, kind) for kind in KINDS},
            "per_trial": trials,
        }


def _timed(save: Save, path: Path, old: str, new: str) -> float:
    save(path, old, new)
    return time.perf_counter()


def _in_layout(raw: bytes, name: str) -> Save:
    """A save that writes `raw` (a catalog in another layout, its entry named `name`) with the entry renamed."""
    return lambda path, _old, new: write_renamed(path, raw, name, new)


async def measure_rebuild(run: "SizeRun") -> None:
    """Renames of one entry under load, in each layout: visible p50/p95 and the worst latency while each was applied."""
    args, c = run.ctx.args, run.client
    path = run.ds.models_json
    target = run.ds.truth[0]  # the first entry of models.json, near the top of the file
    await c.detect_point_mode(target.vid)
    loops = RequestLoops(c.session, c.key_h)
    edits = _Edits(run, loops, target.name)
    loops.add("full", c.map_url)
    loops.add("point", c.lookup_url(target.vid), on_body=lambda sample, body: edits.on_point(sample, body, target.vid))
    loops.add("health", c.base + "/health", interval_s=HEALTH_POLL_S)
    layouts = [layout for layout in args.edit_layouts.split(",") if layout]
    run.log(f"rebuild: up to {args.rebuild_trials} renames of one entry in models.json "
            f"({path.stat().st_size / 1e6:.1f} MB) under load (at most {args.phase_budget_s:g} s), "
            f"then in {', '.join(layouts) or 'no other layout'}…")
    async with loops:
        await asyncio.sleep(args.rebuild_baseline)
        t_baseline_end = time.perf_counter()
        rebuild = await edits.trials("rebuild", [rewrite_with_new_name] * args.rebuild_trials, t_baseline_end)
        native, native_name = await asyncio.to_thread(path.read_bytes), edits.name
        others: dict[str, Any] = {}
        for layout in layouts:
            raw = await asyncio.to_thread(relayout, native, layout)
            reformat = await edits.trials(f"{layout}: whole file re-formatted", [_in_layout(raw, native_name)], time.perf_counter())
            del raw
            renames = await edits.trials(f"{layout}: rename", [rewrite_with_new_name] * args.rebuild_trials, time.perf_counter())
            others[layout] = {**renames, "reformat": reformat}
            run.log(f"{layout}: re-formatted visible after {reformat['visible']['max_ms']} ms; renames p95 "
                    f"{renames['visible']['p95_ms']} ms; worst during full {renames['during']['full']['max_ms']} / point "
                    f"{renames['during']['point']['max_ms']} / health {renames['during']['health']['max_ms']} ms")
        if layouts:  # back to this service's layout for whatever runs next
            await asyncio.to_thread(write_renamed, path, native, native_name, edits.name)
    baseline = [s for s in loops.samples if s.end < t_baseline_end]
    run.res["rebuild"] = {**rebuild, "lookup": c.lookup_kind, "baseline": {kind: loops.stats(baseline, kind) for kind in KINDS}}
    run.res["rebuild_layouts"] = others
    r = run.res["rebuild"]
    run.log(f"rebuild: visible p50 {r['visible']['p50_ms']} ms, p95 {r['visible']['p95_ms']} ms over {r['trials']} "
            f"trials; worst during: full {r['during']['full']['max_ms']} / point {r['during']['point']['max_ms']} / "
            f"health {r['during']['health']['max_ms']} ms (baseline {r['baseline']['full']['max_ms']} / "
            f"{r['baseline']['point']['max_ms']} / {r['baseline']['health']['max_ms']} ms)")
