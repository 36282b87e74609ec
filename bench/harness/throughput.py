"""The map itself: status checks, one fetch checked against the truth, and map / 304 / gzip throughput against the ceiling."""

import asyncio
import gzip
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from .client import probe
from .common import _r, percentile
from .dataset import check_map
from .processes import CeilingProc

if TYPE_CHECKING:
    from .bench import SizeRun


async def check_statuses(run: "SizeRun") -> None:
    """/health answers, and the map without the key is refused."""
    c = run.client
    for key, url in (("health_status", c.base + "/health"), ("map_without_key_status", c.map_url)):
        try:
            run.res[key] = (await probe(c.session, "GET", url)).status
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            run.res[key] = f"error {type(e).__name__}"


async def fetch_and_check_map(run: "SizeRun") -> tuple[bytes, str]:
    """Fetch the full map once and check it against the truth; its body and ETag."""
    c, res = run.client, run.res
    p = await probe(c.session, "GET", c.map_url, c.key_h)
    if p.status != 200:
        raise RuntimeError(f"GET civitai-map answered {p.status}: {p.body[:300]!r}")
    etag = p.headers.get("ETag", "")
    res["map_bytes"] = len(p.body)
    res["map_first_fetch_ms"] = _r(p.seconds * 1000, 1)
    res["map_content_type"] = p.headers.get("Content-Type")
    res["map_etag"] = etag
    if p.headers.get("Content-Encoding"):
        res["map_identity_content_encoding"] = p.headers["Content-Encoding"]
    t = time.perf_counter()
    doc = orjson.loads(p.body)
    res["map_parse_ms"] = _r((time.perf_counter() - t) * 1000, 1)
    check = check_map(doc, run.ds.truth)
    del doc
    res["map_check"] = check
    run.log(
        f"map: {len(p.body) / 1e6:.2f} MB, {check.get('by_version_count')} versions "
        f"({check.get('present_count')} present), {check.get('mismatches', '?')} mismatches"
        + ("" if check["ok"] else f" — {check.get('problem') or check.get('mismatch_examples')}")
    )
    if not etag:
        run.log("WARNING: map has no ETag header")
    return p.body, etag


async def fetch_map(run: "SizeRun") -> tuple[bytes, str, bytes, str]:
    """Fetch the map once (identity, gzip, 304), check it against the truth; the bodies and tags for the ceiling."""
    c, res = run.client, run.res
    body, etag = await fetch_and_check_map(run)
    # gzip variant
    pg = await probe(c.session, "GET", c.map_url, {**c.key_h, "Accept-Encoding": "gzip"})
    enc = pg.headers.get("Content-Encoding", "")
    res["gzip_served"] = enc == "gzip"
    res["gzip_etag"] = pg.headers.get("ETag")
    res["gzip_etag_differs"] = pg.headers.get("ETag") != etag
    if enc == "gzip":
        gz_body = pg.body
        res["gzip_bytes"] = len(gz_body)
        try:
            res["gzip_matches_identity"] = gzip.decompress(gz_body) == body
        except (OSError, EOFError):
            res["gzip_matches_identity"] = False
        gz_etag = pg.headers.get("ETag") or (etag[:-1] + '-gz"' if etag.endswith('"') else etag + "-gz")
    else:
        gz_body = gzip.compress(body, compresslevel=6)
        res["gzip_bytes_ceiling_only"] = len(gz_body)
        gz_etag = etag[:-1] + '-gz"' if etag.endswith('"') else '"bench-gz"'
    run.log(f"gzip: service Content-Encoding={enc or 'none'}" + (f", {len(gz_body) / 1e6:.2f} MB" if enc == "gzip" else ""))

    # 304 check
    if etag:
        p304 = await probe(c.session, "GET", c.map_url, {**c.key_h, "If-None-Match": etag})
        res["if_none_match_status"] = p304.status
        res["if_none_match_body_bytes"] = len(p304.body)
    return body, etag or '"bench-none"', gz_body, gz_etag


async def _load_pair(run: "SizeRun", label: str, headers: dict[str, str]) -> dict[str, Any]:
    """Same loader settings against the service, then the ceiling (each after a short warm-up)."""
    assert run.ceiling is not None
    args, loader = run.ctx.args, run.ctx.loader
    targets = {"service": run.client.map_url, "ceiling": run.ceiling.url}
    runs: dict[str, list[dict[str, Any]]] = {"service": [], "ceiling": []}
    for rep in range(args.repeats):
        # Alternate the order (S C, C S, ...) so drift on the machine hits both sides alike.
        order = ("service", "ceiling") if rep % 2 == 0 else ("ceiling", "service")
        for who in order:
            if args.warmup > 0:
                await loader.run(targets[who], headers, args.warmup)
            runs[who].append(await loader.run(targets[who], headers, args.duration))
            if who == "service":
                run.memory.sample()
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
    out["load"] = f"{loader.kind} -t{loader.threads} -c{loader.conns}"
    out["service_rss_after_mb"] = _r(run.memory.sample() / 1024, 1)
    run.log(f"{label}: service {a or 0:,.0f} req/s, ceiling {b or 0:,.0f} req/s, ratio {out['ratio']}"
            + (f"  (service non-2xx/3xx: {out['service'].get('non_2xx_3xx')})"
               if out["service"].get("non_2xx_3xx") else ""))
    return out


async def measure_throughput(run: "SizeRun", body: bytes, etag: str, gz_body: bytes, gz_etag: str) -> None:
    """Map 200, 304 and gzip, each against the ceiling serving the same bytes."""
    args, loader, res = run.ctx.args, run.ctx.loader, run.res
    run.ceiling = CeilingProc(run.ds.root, body, etag, gz_body, gz_etag)
    await run.ceiling.start(run.client.session)
    # Sanity: the ceiling serves the same identity bytes.
    pc = await probe(run.client.session, "GET", run.ceiling.url, run.client.key_h)
    res["ceiling_same_bytes"] = pc.body == body
    del pc
    run.log(f"load ({loader.kind}, {loader.threads} threads, {loader.conns} conns, {args.duration:g} s each)…")
    key_h = run.client.key_h
    if len(body) > args.max_load_body_mb * 1e6:
        # The ceiling would hold a copy of the body per connection, and a few requests a second say little.
        res["map_throughput"] = {"skipped": f"body {len(body) / 1e6:.0f} MB > --max-load-body-mb {args.max_load_body_mb:g}"}
        run.log(f"map 200: skipped ({res['map_throughput']['skipped']})")
    else:
        res["map_throughput"] = await _load_pair(run, "map 200", key_h)
    res["not_modified_throughput"] = await _load_pair(run, "map 304", {**key_h, "If-None-Match": etag})
    res["gzip_throughput"] = await _load_pair(run, "map gzip", {**key_h, "Accept-Encoding": "gzip"})
