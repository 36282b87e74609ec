"""The measurements of one catalog size: start, memory, throughput, freshness, adds, rebuild."""


import asyncio
import gzip
import hashlib
import os
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Awaitable, Callable

import aiohttp
import orjson
from .common import ADD_VID_BASE, MID_BASE, VID_BASE, CLEANUP, EDIT_TIMEOUT_S, EDIT_VID_BASE, FRESH_POLL_S, FRESH_TIMEOUT_S, MAP_PATH, REBUILD_VISIBLE_TIMEOUT_S, _r, log, percentile, summarize_ms, tree_rss_kb
from .dataset import Dataset, atomic_write_json, generate
from .load import Ctx, check_map, probe
from .processes import CeilingProc, ServiceProc, tail

class Bench:
    def __init__(self, ctx: Ctx, n: int) -> None:
        self.ctx = ctx
        self.n = n
        self.res: dict[str, Any] = {"n": n}
        self.svc: ServiceProc | None = None
        self.ceiling: CeilingProc | None = None
        self.ds: Dataset | None = None
        self.point_mode: bool | None = None

    def log(self, msg: str) -> None:
        log(self.n, msg)

    @property
    def key_h(self) -> dict[str, str]:
        return {"X-API-Key": self.ctx.api_key}

    @property
    def map_url(self) -> str:
        assert self.svc is not None
        return self.svc.base + MAP_PATH

    async def run(self) -> dict[str, Any]:
        root = CLEANUP.add_dir(Path(tempfile.mkdtemp(prefix=f"bench-{self.n}-", dir=self.ctx.args.tmpdir)))
        models_root = CLEANUP.add_dir(Path(tempfile.mkdtemp(prefix=f"bench-{self.n}-models-",
                                                            dir=self.ctx.args.models_tmpdir)))
        sampler: asyncio.Task | None = None
        try:
            self.log("generating catalogs…")
            self.ds = ds = generate(self.n, root, models_root)
            self.res["generate_s"] = _r(ds.gen_seconds, 3)
            self.res["files_created"] = ds.files_created
            self.log(f"generated {self.n} entries, {ds.files_created} files in {ds.gen_seconds:.2f} s")

            self.svc = ServiceProc(ds, self.ctx.api_key, self.ctx.fake.base_url, self.ctx.extra_env,
                                  self.ctx.args.service_cwd)
            self.log(f"starting service on port {self.svc.port}…")
            self.svc.spawn()
            ready_timeout = 30.0 + self.n / 1000.0
            ready_s = await self.svc.wait_ready(self.ctx.session, ready_timeout)
            self.res["ready_s"] = _r(ready_s, 3)
            self.res["rss_after_ready_mb"] = _r(self.svc.sample_rss() / 1024, 1)
            self.log(f"ready in {ready_s:.2f} s, RSS {self.res['rss_after_ready_mb']} MB")
            sampler = asyncio.create_task(self._rss_sampler())

            await self._health()
            body, etag, gz_body, gz_etag = await self._fetch_map()
            await self._throughput(body, etag, gz_body, gz_etag)
            self.svc.sample_rss()
            self.res["rss_after_load_mb"] = _r(self.svc.sample_rss() / 1024, 1)

            if self.n == self.ctx.fresh_n and not self.ctx.args.skip_freshness:
                await self._freshness()
                await self._catalog_edit()
            if self.n == self.ctx.fresh_n and not self.ctx.args.skip_add:
                await self._add_latency()
            if self.n == self.ctx.largest_n and not self.ctx.args.skip_rebuild:
                await self._rebuild()
            self.svc.sample_rss()
        except (asyncio.CancelledError, KeyboardInterrupt):
            self.res["error"] = "interrupted"
            raise
        except Exception as e:  # noqa: BLE001 - record and go on with the next N
            self.res["error"] = f"{type(e).__name__}: {e}"
            self.res["traceback"] = traceback.format_exc()
            self.log(f"ERROR: {type(e).__name__}: {e}")
        finally:
            if sampler is not None:
                sampler.cancel()
                try:
                    await sampler
                except (asyncio.CancelledError, Exception):  # noqa: BLE001
                    pass
            if self.svc is not None and self.svc.proc is not None:
                if self.svc.rss_samples_kb:
                    self.res["rss_max_mb"] = _r(max(self.svc.rss_samples_kb) / 1024, 1)
                hwm = self.svc.hwm_kb()
                if hwm:
                    self.res["rss_hwm_mb"] = _r(hwm / 1024, 1)
                self.res["service_stop"] = self.svc.stop()
                log_tail = tail(self.svc.log_path, 15).replace(self.ctx.api_key, "<API_KEY>")
                if log_tail:
                    self.res["service_log_tail"] = log_tail
            if self.ceiling is not None:
                self.ceiling.stop()
            for d in (root, models_root):
                if self.ctx.args.keep_tmp:
                    self.log(f"keeping {d}")
                    CLEANUP.dirs.remove(d)
                else:
                    CLEANUP.remove_dir(d)
        if "rss_max_mb" in self.res:
            self.log(f"max RSS {self.res['rss_max_mb']} MB (VmHWM {self.res.get('rss_hwm_mb')} MB)")
        return self.res

    async def _rss_sampler(self) -> None:
        assert self.svc is not None
        while True:
            self.svc.sample_rss()
            if self.ceiling is not None and self.ceiling.proc is not None:
                kb = tree_rss_kb(self.ceiling.proc.pid)
                if kb:
                    self.res["ceiling_rss_max_mb"] = max(self.res.get("ceiling_rss_max_mb") or 0, _r(kb / 1024, 1))
            await asyncio.sleep(0.1)

    async def _health(self) -> None:
        assert self.svc is not None
        try:
            p = await probe(self.ctx.session, "GET", self.svc.base + "/health")
            self.res["health_status"] = p.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            self.res["health_status"] = f"error {type(e).__name__}"
        try:
            p = await probe(self.ctx.session, "GET", self.map_url)
            self.res["map_without_key_status"] = p.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            self.res["map_without_key_status"] = f"error {type(e).__name__}"

    async def _fetch_map(self) -> tuple[bytes, str, bytes, str]:
        assert self.ds is not None
        s = self.ctx.session
        p = await probe(s, "GET", self.map_url, self.key_h)
        if p.status != 200:
            raise RuntimeError(f"GET civitai-map answered {p.status}: {p.body[:300]!r}")
        etag = p.headers.get("ETag", "")
        self.res["map_bytes"] = len(p.body)
        self.res["map_first_fetch_ms"] = _r(p.seconds * 1000, 1)
        self.res["map_content_type"] = p.headers.get("Content-Type")
        self.res["map_etag"] = etag
        if p.headers.get("Content-Encoding"):
            self.res["map_identity_content_encoding"] = p.headers["Content-Encoding"]
        t = time.perf_counter()
        doc = orjson.loads(p.body)
        self.res["map_parse_ms"] = _r((time.perf_counter() - t) * 1000, 1)
        check = check_map(doc, self.ds.truth)
        self.res["map_check"] = check
        self.log(
            f"map: {len(p.body) / 1e6:.2f} MB, {check.get('by_version_count')} versions "
            f"({check.get('present_count')} present), {check.get('mismatches', '?')} mismatches"
            + ("" if check["ok"] else f" — {check.get('problem') or check.get('mismatch_examples')}")
        )
        if not etag:
            self.log("WARNING: map has no ETag header")

        # gzip variant
        pg = await probe(s, "GET", self.map_url, {**self.key_h, "Accept-Encoding": "gzip"})
        enc = pg.headers.get("Content-Encoding", "")
        self.res["gzip_served"] = enc == "gzip"
        self.res["gzip_etag"] = pg.headers.get("ETag")
        self.res["gzip_etag_differs"] = pg.headers.get("ETag") != etag
        if enc == "gzip":
            gz_body = pg.body
            self.res["gzip_bytes"] = len(gz_body)
            try:
                self.res["gzip_matches_identity"] = gzip.decompress(gz_body) == p.body
            except (OSError, EOFError):
                self.res["gzip_matches_identity"] = False
            gz_etag = pg.headers.get("ETag") or (etag[:-1] + '-gz"' if etag.endswith('"') else etag + "-gz")
        else:
            gz_body = gzip.compress(p.body, compresslevel=6)
            self.res["gzip_bytes_ceiling_only"] = len(gz_body)
            gz_etag = etag[:-1] + '-gz"' if etag.endswith('"') else '"bench-gz"'
        self.log(f"gzip: service Content-Encoding={enc or 'none'}"
                 + (f", {len(gz_body) / 1e6:.2f} MB" if enc == "gzip" else ""))

        # 304 check
        if etag:
            p304 = await probe(s, "GET", self.map_url, {**self.key_h, "If-None-Match": etag})
            self.res["if_none_match_status"] = p304.status
            self.res["if_none_match_body_bytes"] = len(p304.body)
        return p.body, etag or '"bench-none"', gz_body, gz_etag

    async def _load_pair(self, label: str, svc_headers: dict[str, str], ceil_headers: dict[str, str]) -> dict[str, Any]:
        """Same loader settings against the service, then the ceiling (each after a short warm-up)."""
        assert self.ceiling is not None
        dur = self.ctx.args.duration
        warm = self.ctx.args.warmup
        targets = {"service": (self.map_url, svc_headers), "ceiling": (self.ceiling.url, ceil_headers)}
        runs: dict[str, list[dict[str, Any]]] = {"service": [], "ceiling": []}
        for rep in range(self.ctx.args.repeats):
            # Alternate the order (S C, C S, ...) so drift on the machine hits both sides alike.
            order = ("service", "ceiling") if rep % 2 == 0 else ("ceiling", "service")
            for who in order:
                url, headers = targets[who]
                if warm > 0:
                    await self.ctx.loader.run(url, headers, warm)
                runs[who].append(await self.ctx.loader.run(url, headers, dur))
                if who == "service":
                    self.svc.sample_rss()  # type: ignore[union-attr]
        out: dict[str, Any] = {}
        for who, rs in runs.items():
            merged = dict(rs[-1])
            vals = [r["rps"] for r in rs if r.get("rps") is not None]
            merged["rps"] = _r(percentile(vals, 50), 2)  # median of the runs
            merged["rps_runs"] = vals
            merged["non_2xx_3xx"] = sum(r.get("non_2xx_3xx") or 0 for r in rs)
            merged["socket_errors"] = sum(r.get("socket_errors") or 0 for r in rs)
            out[who] = merged
        a, b = out["service"].get("rps"), out["ceiling"].get("rps")
        out["ratio"] = _r(a / b, 3) if a and b else None
        out["service_rss_after_mb"] = _r(self.svc.sample_rss() / 1024, 1)  # type: ignore[union-attr]
        self.log(f"{label}: service {a or 0:,.0f} req/s, ceiling {b or 0:,.0f} req/s, ratio {out['ratio']}"
                 + (f"  (service non-2xx/3xx: {out['service'].get('non_2xx_3xx')})"
                    if out["service"].get("non_2xx_3xx") else ""))
        return out

    async def _throughput(self, body: bytes, etag: str, gz_body: bytes, gz_etag: str) -> None:
        assert self.ds is not None
        self.ceiling = CeilingProc(self.ds.root, body, etag, gz_body, gz_etag)
        await self.ceiling.start(self.ctx.session)
        s = self.ctx.session
        # Sanity: the ceiling serves the same identity bytes.
        pc = await probe(s, "GET", self.ceiling.url, self.key_h)
        self.res["ceiling_same_bytes"] = pc.body == body
        self.log(f"load ({self.ctx.loader.kind}, {self.ctx.loader.threads} threads, {self.ctx.loader.conns} conns, "
                 f"{self.ctx.args.duration:g} s each)…")
        self.res["map_throughput"] = await self._load_pair("map 200", self.key_h, self.key_h)
        inm = {**self.key_h, "If-None-Match": etag}
        self.res["not_modified_throughput"] = await self._load_pair("map 304", inm, inm)
        gz = {**self.key_h, "Accept-Encoding": "gzip"}
        self.res["gzip_throughput"] = await self._load_pair("map gzip", gz, gz)

    # ---- point answers / status lookups -------------------------------------------------

    async def _detect_point_mode(self, vid: int) -> None:
        p = await probe(self.ctx.session, "GET", f"{self.map_url}?versions={vid}", self.key_h)
        ok = False
        if p.status == 200:
            try:
                doc = orjson.loads(p.body)
                ok = isinstance(doc.get("by_version"), dict) and len(p.body) < 100_000
            except (orjson.JSONDecodeError, AttributeError):
                ok = False
        self.point_mode = ok
        self.res["point_answers"] = {"status": p.status, "bytes": len(p.body), "used": ok}
        pm = await probe(self.ctx.session, "GET", f"{self.map_url}?models={MID_BASE}", self.key_h)
        self.res["point_answers"]["models_status"] = pm.status
        self.res["point_answers"]["models_bytes"] = len(pm.body)
        if not ok:
            self.log(f"point answer ?versions= gave HTTP {p.status} ({len(p.body)} B); polling the full map instead")

    async def _lookup(self, vid: int) -> dict[str, Any] | None:
        """The by_version entry for vid (None when absent)."""
        url = f"{self.map_url}?versions={vid}" if self.point_mode else self.map_url
        async with self.ctx.session.get(url, headers=self.key_h) as r:
            body = await r.read()
            if r.status != 200:
                return None
        e = orjson.loads(body).get("by_version", {}).get(str(vid))
        return e if isinstance(e, dict) else None

    async def _poll(self, check: Callable[[], Awaitable[bool]], t0: float, timeout_s: float) -> float | None:
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

    # ---- freshness -------------------------------------------------------------------------

    async def _freshness(self) -> None:
        assert self.ds is not None
        trials = self.ctx.args.fresh_trials
        candidates = [t for t in self.ds.truth if not t.present]
        step = max(1, len(candidates) // trials)
        picks = candidates[::step][:trials]
        await self._detect_point_mode(picks[0].vid)
        self.log(f"freshness: {len(picks)} file landings (rename .part → final), then deletions…")
        land: list[float] = []
        gone: list[float] = []
        timeouts = {"land": 0, "delete": 0}
        for t in picks:
            dest_dir = self.ds.models_dir / t.dest
            final = dest_dir / t.file
            part = dest_dir / (t.file + ".part")
            with open(part, "wb") as f:
                f.write(b"\0" * 4096)
            await asyncio.sleep(self.ctx.args.part_settle)  # the download "runs" for a while

            async def is_present(vid: int = t.vid) -> bool:
                e = await self._lookup(vid)
                return bool(e) and e.get("status") == "present"

            async def is_missing(vid: int = t.vid) -> bool:
                e = await self._lookup(vid)
                return bool(e) and e.get("status") == "missing"

            t0 = time.perf_counter()
            os.rename(part, final)
            d = await self._poll(is_present, t0, FRESH_TIMEOUT_S)
            if d is None:
                timeouts["land"] += 1
            else:
                land.append(d)
            await asyncio.sleep(0.05)
            t0 = time.perf_counter()
            os.unlink(final)
            d = await self._poll(is_missing, t0, FRESH_TIMEOUT_S)
            if d is None:
                timeouts["delete"] += 1
            else:
                gone.append(d)
            await asyncio.sleep(0.1)
        self.res["freshness"] = {
            "landing": summarize_ms(land),
            "deletion": summarize_ms(gone),
            "timeouts": timeouts,
            "timeout_s": FRESH_TIMEOUT_S,
            "poll_interval_ms": FRESH_POLL_S * 1000,
            "lookup": "point answer" if self.point_mode else "full map",
            "part_settle_s": self.ctx.args.part_settle,
        }
        L, D = self.res["freshness"]["landing"], self.res["freshness"]["deletion"]
        self.log(f"landing p50 {L['p50_ms']} ms, p95 {L['p95_ms']} ms, max {L['max_ms']} ms; "
                 f"deletion p50 {D['p50_ms']} ms, p95 {D['p95_ms']} ms; timeouts {timeouts}")

    async def _catalog_edit(self) -> None:
        assert self.ds is not None
        trials = self.ctx.args.edit_trials
        path = self.ds.catalog_dir / "models.json"
        self.log(f"catalog edit: {trials} atomic rewrites of models.json adding one entry each…")
        times: list[float] = []
        timeouts = 0
        for k in range(trials):
            doc = orjson.loads(path.read_bytes())
            vid = EDIT_VID_BASE + self.n + k
            doc["categories"][0]["models"].append({
                "name": f"Edited entry {k}", "file": f"edited_{vid}.safetensors", "dest": "checkpoints",
                "source": "civitai", "civitai_version_id": vid, "civitai_model_id": vid - 100,
                "civitai_file_id": vid + 100, "size_gb": 2.0, "base_model": "SDXL 1.0", "tags": [],
                "hash": hashlib.sha256(b"e%d" % vid).hexdigest().upper(),
            })

            async def appeared(vid: int = vid) -> bool:
                return (await self._lookup(vid)) is not None

            atomic_write_json(path, doc)
            t0 = time.perf_counter()
            d = await self._poll(appeared, t0, EDIT_TIMEOUT_S)
            if d is None:
                timeouts += 1
            else:
                times.append(d)
            await asyncio.sleep(0.3)
        self.res["catalog_edit"] = {**summarize_ms(times), "timeouts": timeouts, "timeout_s": EDIT_TIMEOUT_S}
        c = self.res["catalog_edit"]
        self.log(f"catalog edit visible p50 {c['p50_ms']} ms, p95 {c['p95_ms']} ms, max {c['max_ms']} ms; "
                 f"timeouts {timeouts}")

    # ---- add ---------------------------------------------------------------------------------

    async def _add_latency(self) -> None:
        assert self.svc is not None
        count = self.ctx.args.adds
        self.log(f"add: {count} sequential POST /api/admin/civitai/add/<id> against the fake CivitAI…")
        hits0 = self.ctx.fake.hits
        times: list[float] = []
        failures: dict[str, int] = {}
        examples: list[str] = []
        send_json: bool | None = None
        for k in range(count):
            vid = ADD_VID_BASE + self.n + k
            url = f"{self.svc.base}/api/admin/civitai/add/{vid}"
            kw: dict[str, Any] = {"json": {}} if send_json else {}
            p = await probe(self.ctx.session, "POST", url, self.key_h, **kw)
            if send_json is None and p.status in (400, 415, 422):
                # Maybe the endpoint wants a JSON body: try once with {} and keep that mode if it works.
                p2 = await probe(self.ctx.session, "POST", url, self.key_h, json={})
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
                if self.point_mode is None:
                    await self._detect_point_mode(ADD_VID_BASE + self.n)
                visible = (await self._lookup(ADD_VID_BASE + self.n + count - 1)) is not None
            except (aiohttp.ClientError, asyncio.TimeoutError, orjson.JSONDecodeError):
                visible = False
        self.res["add"] = {
            **summarize_ms(times), "requests": count, "failures": failures, "failure_examples": examples,
            "fake_civitai_hits": self.ctx.fake.hits - hits0, "sent_json_body": bool(send_json),
            "last_added_visible_in_map": visible,
        }
        a = self.res["add"]
        self.log(f"add p50 {a['p50_ms']} ms, p95 {a['p95_ms']} ms ({len(times)}/{count} ok"
                 + (f", failures {failures}" if failures else "") + ")")

    # ---- rebuild -----------------------------------------------------------------------------

    async def _rebuild(self) -> None:
        assert self.ds is not None and self.svc is not None
        path = self.ds.catalog_dir / "models.json"
        doc = orjson.loads(path.read_bytes())
        target = None
        for cat in doc["categories"]:
            for m in cat["models"]:
                if isinstance(m.get("civitai_version_id"), int) and m["civitai_version_id"] >= VID_BASE:
                    target = m
                    break
            if target:
                break
        if target is None:
            raise RuntimeError("no entry to change in models.json")
        vid = target["civitai_version_id"]
        if self.point_mode is None:
            await self._detect_point_mode(vid)
        new_name = f"Rebuilt at {time.time():.3f}"
        target["name"] = new_name
        target["base_model"] = "Rebuilt"
        self.log(f"rebuild: load on the map while models.json ({path.stat().st_size / 1e6:.1f} MB) is rewritten…")

        samples: list[tuple[str, float, float, int]] = []  # (kind, start, end, status)
        stop = asyncio.Event()
        visible_at: list[float] = []
        t_write: list[float] = []
        max_requests = 200_000
        full_url = self.map_url
        point_url = f"{self.map_url}?versions={vid}" if self.point_mode else self.map_url

        async def loop(kind: str, url: str) -> None:
            while not stop.is_set() and len(samples) < max_requests:
                t = time.perf_counter()
                status = -1
                body = b""
                try:
                    async with self.ctx.session.get(url, headers=self.key_h) as r:
                        body = await r.read()
                        status = r.status
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                    pass
                e = time.perf_counter()
                samples.append((kind, t, e, status))
                if kind == "point" and t_write and not visible_at and status == 200 and t >= t_write[0]:
                    try:
                        entry = orjson.loads(body).get("by_version", {}).get(str(vid)) or {}
                    except orjson.JSONDecodeError:
                        entry = {}
                    if entry.get("name") == new_name:
                        visible_at.append(e)

        tasks = [asyncio.create_task(loop("full", full_url)), asyncio.create_task(loop("point", point_url))]
        try:
            await asyncio.sleep(self.ctx.args.rebuild_baseline)
            atomic_write_json(path, doc)
            t_write.append(time.perf_counter())
            deadline = t_write[0] + REBUILD_VISIBLE_TIMEOUT_S
            while not visible_at and time.perf_counter() < deadline and all(not t.done() for t in tasks):
                await asyncio.sleep(0.01)
            await asyncio.sleep(1.0)  # a little after the switch
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        tw = t_write[0]
        tv = visible_at[0] if visible_at else None
        end = tv if tv is not None else tw + REBUILD_VISIBLE_TIMEOUT_S
        before = [s for s in samples if s[2] < tw]
        during = [s for s in samples if s[2] >= tw and s[1] <= end]
        after = [s for s in samples if s[1] > end]

        def stats(rows: list[tuple[str, float, float, int]], kind: str | None = None) -> dict[str, Any]:
            lat = [(e - b) for k, b, e, _ in rows if kind is None or k == kind]
            return {**summarize_ms(lat), "errors": sum(1 for r in rows if r[3] != 200 and (kind is None or r[0] == kind))}

        self.res["rebuild"] = {
            "visible_after_ms": _r((tv - tw) * 1000, 1) if tv is not None else None,
            "lookup": "point answer" if self.point_mode else "full map",
            "catalog_bytes": path.stat().st_size,
            "during": {"all": stats(during), "full": stats(during, "full"), "point": stats(during, "point")},
            "baseline": {"all": stats(before), "full": stats(before, "full"), "point": stats(before, "point")},
            "after": {"all": stats(after)},
        }
        r = self.res["rebuild"]
        self.log(f"rebuild: change visible after {r['visible_after_ms']} ms; max latency during "
                 f"{r['during']['all']['max_ms']} ms (full map {r['during']['full']['max_ms']} ms, point "
                 f"{r['during']['point']['max_ms']} ms) vs baseline max {r['baseline']['all']['max_ms']} ms")


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------
