"""Freshness on an idle service: a file lands or goes, an outside program adds an entry to models.json."""

import asyncio
import hashlib
import os
import time
from typing import TYPE_CHECKING

import orjson

from .client import poll
from .common import (
    EDIT_TIMEOUT_S,
    EDIT_VID_BASE,
    FRESH_POLL_S,
    FRESH_TIMEOUT_S,
    summarize_ms,
)
from .dataset import atomic_write_json

if TYPE_CHECKING:
    from .bench import SizeRun


async def measure_file_landing(run: "SizeRun") -> None:
    """Rename <file>.part to <file> until the version is present, then delete it until missing."""
    args, c = run.ctx.args, run.client
    candidates = [t for t in run.ds.truth if not t.present]
    step = max(1, len(candidates) // args.fresh_trials)
    picks = candidates[::step][:args.fresh_trials]
    await c.detect_point_mode(picks[0].vid)
    if not c.point_mode:
        run.log("point answer ?versions= is not small; polling the full map instead")
    run.log(f"freshness: {len(picks)} file landings (rename .part → final), then deletions…")
    land: list[float] = []
    gone: list[float] = []
    timeouts = {"land": 0, "delete": 0}
    for t in picks:
        dest_dir = run.ds.models_dir / t.dest
        final = dest_dir / t.file
        part = dest_dir / (t.file + ".part")
        with open(part, "wb") as f:
            f.write(b"\0" * 4096)
        await asyncio.sleep(args.part_settle)  # the download "runs" for a while

        async def has_status(status: str, vid: int = t.vid) -> bool:
            e = await c.lookup(vid)
            return bool(e) and e.get("status") == status

        for change, status, key, into in ((lambda: os.rename(part, final), "present", "land", land),
                                          (lambda: os.unlink(final), "missing", "delete", gone)):
            t0 = time.perf_counter()
            change()
            d = await poll(lambda status=status: has_status(status), t0, FRESH_TIMEOUT_S)
            if d is None:
                timeouts[key] += 1
            else:
                into.append(d)
            await asyncio.sleep(0.05 if key == "land" else 0.1)
    run.res["freshness"] = {
        "landing": summarize_ms(land),
        "deletion": summarize_ms(gone),
        "timeouts": timeouts,
        "timeout_s": FRESH_TIMEOUT_S,
        "poll_interval_ms": FRESH_POLL_S * 1000,
        "lookup": c.lookup_kind,
        "part_settle_s": args.part_settle,
    }
    L, D = run.res["freshness"]["landing"], run.res["freshness"]["deletion"]
    run.log(f"landing p50 {L['p50_ms']} ms, p95 {L['p95_ms']} ms, max {L['max_ms']} ms; "
            f"deletion p50 {D['p50_ms']} ms, p95 {D['p95_ms']} ms; timeouts {timeouts}")


async def measure_catalog_edit(run: "SizeRun") -> None:
    """Editor-style rewrites of models.json, each adding one entry, until the new version shows."""
    trials = run.ctx.args.edit_trials
    path = run.ds.models_json
    run.log(f"catalog edit: {trials} atomic rewrites of models.json adding one entry each…")
    times: list[float] = []
    timeouts = 0
    for k in range(trials):
        doc = orjson.loads(path.read_bytes())
        vid = EDIT_VID_BASE + run.n + k
        doc["categories"][0]["models"].append({
            "name": f"Edited entry {k}", "file": f"edited_{vid}.safetensors", "dest": "checkpoints",
            "source": "civitai", "civitai_version_id": vid, "civitai_model_id": vid - 100,
            "civitai_file_id": vid + 100, "size_gb": 2.0, "base_model": "SDXL 1.0", "tags": [],
            "hash": hashlib.sha256(b"e%d" % vid).hexdigest().upper(),
        })

        async def appeared(vid: int = vid) -> bool:
            return (await run.client.lookup(vid)) is not None

        atomic_write_json(path, doc)
        t0 = time.perf_counter()
        d = await poll(appeared, t0, EDIT_TIMEOUT_S)
        if d is None:
            timeouts += 1
        else:
            times.append(d)
        await asyncio.sleep(0.3)
    run.res["catalog_edit"] = {**summarize_ms(times), "timeouts": timeouts, "timeout_s": EDIT_TIMEOUT_S}
    ce = run.res["catalog_edit"]
    run.log(f"catalog edit visible p50 {ce['p50_ms']} ms, p95 {ce['p95_ms']} ms, max {ce['max_ms']} ms; "
            f"timeouts {timeouts}")
