"""Turning results into the Markdown tables and the machine summary."""


import argparse
import datetime as _dt
from pathlib import Path
from typing import Any

import orjson

def _pf(ok: bool | None) -> str:
    return "—" if ok is None else ("PASS" if ok else "**FAIL**")


def _fmt(x: Any, unit: str = "", nd: int = 2) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:,.{nd}f}{unit}"
    if isinstance(x, int):
        return f"{x:,}{unit}"
    return f"{x}{unit}"


def table_for(res: dict[str, Any], fresh_n: int) -> tuple[str, list[dict[str, Any]]]:
    n = res["n"]
    rows: list[tuple[str, str, str, bool | None]] = []
    verdicts: list[dict[str, Any]] = []

    def row(metric: str, value: str, target: str = "—", ok: bool | None = None) -> None:
        rows.append((metric, value, target, ok))
        verdicts.append({"metric": metric, "value": value, "target": target, "pass": ok})

    row("catalog generation", _fmt(res.get("generate_s"), " s"))
    if "error" in res:
        lines = [ln.strip() for ln in res["error"].splitlines() if ln.strip()]
        msg = lines[0][:160] + (f" … {lines[-1][:200]}" if len(lines) > 1 else "")
        row("ERROR", msg, "no error", False)
    ready = res.get("ready_s")
    if ready is not None or "error" in res:
        tgt = 3.0 if n == 10_000 else 15.0 if n == 100_000 else None
        row("cold start to /ready", _fmt(ready, " s", 3), f"≤ {tgt:g} s" if tgt else "—",
            (ready is not None and ready <= tgt) if tgt else None)
    if "rss_max_mb" in res:
        tgt = 300.0 if n == 100_000 else None
        row("RSS max (VmRSS, sampled every 100 ms)", _fmt(res["rss_max_mb"], " MB", 1), "≤ 300 MB" if tgt else "—",
            res["rss_max_mb"] <= tgt if tgt else None)
        if res.get("ceiling_rss_max_mb"):
            row("ceiling server RSS max under the same load", _fmt(res["ceiling_rss_max_mb"], " MB", 1))
        row("RSS after ready / after load / VmHWM",
            f"{_fmt(res.get('rss_after_ready_mb'), '', 1)} / {_fmt(res.get('rss_after_load_mb'), '', 1)} / "
            f"{_fmt(res.get('rss_hwm_mb'), ' MB', 1)}")
    chk = res.get("map_check")
    if chk:
        row("map matches generated truth",
            f"{chk.get('by_version_count')} versions, {chk.get('present_count')} present, "
            f"{chk.get('mismatches', 'n/a')} mismatches", f"{chk.get('expected_versions')} / "
            f"{chk.get('expected_present')} / 0", chk.get("ok"))
        row("map body (identity / gzip)", f"{_fmt(res.get('map_bytes'))} B / "
            f"{_fmt(res.get('gzip_bytes'))} B" + ("" if res.get("gzip_served") else " (service does not gzip)"))
    if "map_without_key_status" in res:
        row("map without X-API-Key → status", str(res["map_without_key_status"]), "401",
            res["map_without_key_status"] == 401)
    if "if_none_match_status" in res:
        row("If-None-Match → status", str(res["if_none_match_status"]), "304", res["if_none_match_status"] == 304)

    def tp(name: str, key: str, ceiling_name: str, target: float | None) -> None:
        d = res.get(key)
        if not d:
            return
        sv, cv = d["service"], d["ceiling"]
        bad = (sv.get("non_2xx_3xx") or 0) + (sv.get("socket_errors") or 0)
        extra = f" ({bad} errors)" if bad else ""
        def spread(d: dict[str, Any]) -> str:
            runs = d.get("rps_runs") or []
            return f" [{min(runs):,.0f}–{max(runs):,.0f}]" if len(runs) > 1 else ""

        row(f"{name} req/s: service / {ceiling_name}",
            f"{_fmt(sv.get('rps'), '', 0)}{spread(sv)} / {_fmt(cv.get('rps'), '', 0)}{spread(cv)}{extra}")
        ratio = d.get("ratio")
        ok = None if target is None else (ratio is not None and ratio >= target and not bad)
        row(f"{name} ratio", _fmt(ratio, "", 3), f"≥ {target:g}" if target else "—", ok)
        if sv.get("latency_p99_ms") is not None:
            row(f"{name} latency p50 / p99 (service)",
                f"{_fmt(sv.get('latency_p50_ms'), '', 2)} / {_fmt(sv.get('latency_p99_ms'), ' ms', 2)}")

    tp("map 200", "map_throughput", "ceiling", 0.8 if n == 10_000 else None)
    tp("map 304", "not_modified_throughput", "bare 304", 0.8)
    if "gzip_throughput" in res:
        tp("map gzip", "gzip_throughput", "ceiling (pre-gzipped)", None)
        row("service serves gzip", "yes" if res.get("gzip_served") else "no",
            "—", None)
    fr = res.get("freshness")
    if fr:
        L, D = fr["landing"], fr["deletion"]
        row(f"file landing → present p50 / max ({L['n']} trials)", f"{_fmt(L['p50_ms'], '', 1)} / "
            f"{_fmt(L['max_ms'], ' ms', 1)}" + (f", {fr['timeouts']['land']} timeouts" if fr['timeouts']['land'] else ""))
        row("file landing → present p95", _fmt(L["p95_ms"], " ms", 1), "≤ 250 ms",
            L["p95_ms"] is not None and L["p95_ms"] <= 250 and not fr["timeouts"]["land"])
        row("file deleted → missing p50 / p95 / max", f"{_fmt(D['p50_ms'], '', 1)} / {_fmt(D['p95_ms'], '', 1)} / "
            f"{_fmt(D['max_ms'], ' ms', 1)}" + (f", {fr['timeouts']['delete']} timeouts" if fr['timeouts']['delete'] else ""),
            "≤ 250 ms (p95)", D["p95_ms"] is not None and D["p95_ms"] <= 250 and not fr["timeouts"]["delete"])
    ce = res.get("catalog_edit")
    if ce:
        row(f"external catalog edit → visible p50 / p95 ({ce['n']} trials)",
            f"{_fmt(ce['p50_ms'], '', 1)} / {_fmt(ce['p95_ms'], ' ms', 1)}"
            + (f", {ce['timeouts']} timeouts" if ce["timeouts"] else ""),
            "≤ 250 ms (p95)", ce["p95_ms"] is not None and ce["p95_ms"] <= 250 and not ce["timeouts"])
    ad = res.get("add")
    if ad:
        ok_n = ad["n"]
        row(f"POST add latency p50 / p95 ({ok_n}/{ad['requests']} ok)",
            f"{_fmt(ad['p50_ms'], '', 1)} / {_fmt(ad['p95_ms'], ' ms', 1)}", f"{ad['requests']} added",
            ok_n == ad["requests"])
    rb = res.get("rebuild")
    if rb:
        row("rebuild: change visible after", _fmt(rb["visible_after_ms"], " ms", 1), "visible", rb["visible_after_ms"] is not None)
        row("rebuild: max request latency during rebuild (full / point)",
            f"{_fmt(rb['during']['full']['max_ms'], '', 1)} / {_fmt(rb['during']['point']['max_ms'], ' ms', 1)}"
            f" (baseline max {_fmt(rb['baseline']['full']['max_ms'], '', 1)} / "
            f"{_fmt(rb['baseline']['point']['max_ms'], ' ms', 1)})")
    st = res.get("service_stop")
    if st:
        row("service stop on SIGTERM", f"{_fmt(st.get('stop_s'), ' s', 3)}, exit code {st.get('exit_code')}"
            + (f" ({st['stop_note']})" if st.get("stop_note") else ""))

    out = [f"### N = {n:,}", "", "| metric | value | target | result |", "|---|---|---|---|"]
    for metric, value, target, ok in rows:
        out.append(f"| {metric} | {value.replace('|', '/')} | {target} | {_pf(ok)} |")
    return "\n".join(out) + "\n", verdicts


def machine_md(m: dict[str, Any], args: argparse.Namespace) -> str:
    loader = m["wrk"] if m["load_generator"] == "wrk" else "aiohttp client loop in the harness (fallback; wrk absent or --loader aiohttp)"
    return "\n".join([
        "## Machine",
        "",
        f"- nproc: {m['nproc']} (cpu_count {m['cpu_count']}), CPU: {m['cpu_model']}, RAM: {m['mem_total_mb']} MB",
        f"- Python {m['python']}, aiohttp {m['aiohttp']}, orjson {m['orjson']}, kernel {m['kernel']}",
        f"- load generator: {loader}; {args.threads} threads, {args.conns} connections, "
        f"{args.duration:g} s per run after a {args.warmup:g} s warm-up, {args.repeats} run(s) per target "
        f"alternating service/ceiling (median; range in brackets); service, ceiling and load generator share the cores",
        f"- catalogs in {m['tmp_dir']} ({m['tmp_fs']}), models folder in {m.get('models_tmp_dir')} "
        f"({m.get('models_tmp_fs')})",
        "",
    ])


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------



def write_reports(args: argparse.Namespace, machine: dict[str, Any], results: dict[str, Any], started: str,
                  fresh_n: int, partial: bool) -> str:
    parts = [f"# Catalog service benchmark — {started}" + (" (partial)" if partial else ""), "",
             machine_md(machine, args)]
    verdicts: dict[str, Any] = {}
    for n, res in results.items():
        md, v = table_for(res, fresh_n)
        parts.append(md)
        verdicts[n] = v
    md = "\n".join(parts)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "started": started,
        "finished": None if partial else _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine,
        "settings": {k: v for k, v in vars(args).items() if k not in ("size_list",)},
        "results": results,
        "verdicts": verdicts,
    }
    (out / "latest.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    (out / "latest.md").write_text(md)
    return md
