"""Turning results into Markdown tables (with a verdict per row that has a target) and latest.json / latest.md."""

import argparse
import datetime as _dt
from pathlib import Path
from typing import Any

import orjson

from .tables import Table, fmt
from .targets import (
    ADD_P95_MS,
    BIG_HEALTH_MAX_MS,
    BIG_RSS_MB,
    EDIT_P95_MS,
    EDIT_WORST_MS,
    FULL_MAP_RATIO,
    LAYOUT_EDIT_P95_MS,
    REFORMAT_MS,
    RSS_MB,
    add_p95_ok,
    edit_visible_ok,
    edit_worst_ok,
    issue_applies,
    layout_edit_ok,
    rss_ok,
)


def _common_rows(t: Table, res: dict[str, Any], ready_target_s: float | None, rss_target_mb: float | None) -> None:
    """Generation, error, start, memory: the rows every run has."""
    t.row("catalog generation", fmt(res.get("generate_s"), " s"))
    if "error" in res:
        lines = [ln.strip() for ln in res["error"].splitlines() if ln.strip()]
        msg = lines[0][:160] + (f" … {lines[-1][:200]}" if len(lines) > 1 else "")
        t.row("ERROR", msg, "no error", False)
    ready = res.get("ready_s")
    if ready is not None or "error" in res:
        t.row("cold start to /ready", fmt(ready, " s", 3), f"≤ {ready_target_s:g} s" if ready_target_s else "—",
              (ready is not None and ready <= ready_target_s) if ready_target_s else None)
    if "rss_max_mb" in res:
        t.row("RSS max (VmRSS of the service and its children, sampled every 100 ms)", fmt(res["rss_max_mb"], " MB", 1),
              f"≤ {rss_target_mb:g} MB" if rss_target_mb else "—",
              res["rss_max_mb"] <= rss_target_mb if rss_target_mb else None)
        if res.get("ceiling_rss_max_mb"):
            t.row("ceiling server RSS max under the same load", fmt(res["ceiling_rss_max_mb"], " MB", 1))
        t.row("RSS after ready / after load / VmHWM (service process)",
              f"{fmt(res.get('rss_after_ready_mb'), '', 1)} / {fmt(res.get('rss_after_load_mb'), '', 1)} / "
              f"{fmt(res.get('rss_hwm_mb'), ' MB', 1)}")
    if res.get("rss_by_phase_mb"):
        t.row("RSS peak by phase", phases_text(res))


def phases_text(res: dict[str, Any]) -> str:
    """'start 45 / load 46 / rebuild 80 MB (peak: rebuild)'."""
    phases = res.get("rss_by_phase_mb") or {}
    return (" / ".join(f"{p} {fmt(v, '', 0)}" for p, v in phases.items()) + " MB"
            + (f" (peak: {res['rss_peak_phase']})" if res.get("rss_peak_phase") else ""))


def _add_rows(t: Table, ad: dict[str, Any], p95_target: bool) -> None:
    ok_n = ad["n"]
    cut = f", stopped after {ad['requests']} of {ad['asked']} by --phase-budget-s" if ad["requests"] < ad.get("asked", 0) else ""
    t.row(f"POST add latency p50 / p95 ({ok_n}/{ad['requests']} ok{cut})",
          f"{fmt(ad['p50_ms'], '', 1)} / {fmt(ad['p95_ms'], ' ms', 1)} (max {fmt(ad['max_ms'], ' ms', 1)})",
          f"{ad['requests']} added", ok_n == ad["requests"])
    if p95_target:
        t.row("POST add latency p95 (fake CivitAI, fsync)", fmt(ad["p95_ms"], " ms", 1), f"≤ {ADD_P95_MS:g} ms",
              add_p95_ok(ad))


def table_for(res: dict[str, Any], fresh_n: int) -> tuple[str, list[dict[str, Any]]]:
    """The Markdown table of one catalog size and its verdicts."""
    n = res["n"]
    t = Table()
    _common_rows(t, res, 3.0 if n == 10_000 else 15.0 if n == 100_000 else None, RSS_MB if issue_applies(n) else None)
    _map_rows(t, res)
    _throughput_rows(t, res, n)
    _freshness_rows(t, res)
    if res.get("add"):
        _add_rows(t, res["add"], issue_applies(n))
    _edit_rows(t, res, n)
    _stop_row(t, res)
    return t.markdown(f"### N = {n:,}"), t.verdicts


def _map_rows(t: Table, res: dict[str, Any]) -> None:
    """The map against the generated truth, its sizes, the key and the 304."""
    row = t.row
    chk = res.get("map_check")
    if chk:
        row("map matches generated truth",
            f"{chk.get('by_version_count')} versions, {chk.get('present_count')} present, "
            f"{chk.get('mismatches', 'n/a')} mismatches", f"{chk.get('expected_versions')} / "
            f"{chk.get('expected_present')} / 0", chk.get("ok"))
        row("map body (identity / gzip)", f"{fmt(res.get('map_bytes'))} B / "
            f"{fmt(res.get('gzip_bytes'))} B" + ("" if res.get("gzip_served") else " (service does not gzip)"))
    if "map_without_key_status" in res:
        row("map without X-API-Key → status", str(res["map_without_key_status"]), "401",
            res["map_without_key_status"] == 401)
    if "if_none_match_status" in res:
        row("If-None-Match → status", str(res["if_none_match_status"]), "304", res["if_none_match_status"] == 304)


def _throughput_rows(t: Table, res: dict[str, Any], n: int) -> None:
    """Requests a second against the ceiling: the map's 200, 304 and gzip."""
    row = t.row

    def tp(name: str, key: str, ceiling_name: str, target: float | None) -> None:
        d = res.get(key)
        if not d:
            return
        if "skipped" in d:
            row(f"{name} req/s: service / {ceiling_name}", f"skipped: {d['skipped']}")
            return
        sv, cv = d["service"], d["ceiling"]
        bad = (sv.get("non_2xx_3xx") or 0) + (sv.get("socket_errors") or 0)
        extra = f" ({bad} errors)" if bad else ""

        def spread(d: dict[str, Any]) -> str:
            runs = d.get("rps_runs") or []
            return f" [{min(runs):,.0f}–{max(runs):,.0f}]" if len(runs) > 1 else ""

        row(f"{name} req/s: service / {ceiling_name}",
            f"{fmt(sv.get('rps'), '', 0)}{spread(sv)} / {fmt(cv.get('rps'), '', 0)}{spread(cv)}{extra}")
        ratio = d.get("ratio")
        ok = None if target is None else (ratio is not None and ratio >= target and not bad)
        row(f"{name} ratio", fmt(ratio, "", 3), f"≥ {target:g}" if target else "—", ok)
        if sv.get("latency_p99_ms") is not None:
            row(f"{name} latency p50 / p99 (service)",
                f"{fmt(sv.get('latency_p50_ms'), '', 2)} / {fmt(sv.get('latency_p99_ms'), ' ms', 2)}")

    tp("map 200", "map_throughput", "ceiling", 0.8 if n == 10_000 else None)
    tp("map 304", "not_modified_throughput", "bare 304", 0.8)
    if "gzip_throughput" in res:
        tp("map gzip", "gzip_throughput", "ceiling (pre-gzipped)", None)
        row("service serves gzip", "yes" if res.get("gzip_served") else "no", "—", None)


def _freshness_rows(t: Table, res: dict[str, Any]) -> None:
    """Files landing and leaving, and an outside catalog edit, until the map shows them."""
    row = t.row
    fr = res.get("freshness")
    if fr:
        L, D = fr["landing"], fr["deletion"]
        row(f"file landing → present p50 / max ({L['n']} trials)", f"{fmt(L['p50_ms'], '', 1)} / "
            f"{fmt(L['max_ms'], ' ms', 1)}" + (f", {fr['timeouts']['land']} timeouts" if fr['timeouts']['land'] else ""))
        row("file landing → present p95", fmt(L["p95_ms"], " ms", 1), "≤ 250 ms",
            L["p95_ms"] is not None and L["p95_ms"] <= 250 and not fr["timeouts"]["land"])
        row("file deleted → missing p50 / p95 / max", f"{fmt(D['p50_ms'], '', 1)} / {fmt(D['p95_ms'], '', 1)} / "
            f"{fmt(D['max_ms'], ' ms', 1)}" + (f", {fr['timeouts']['delete']} timeouts" if fr['timeouts']['delete'] else ""),
            "≤ 250 ms (p95)", D["p95_ms"] is not None and D["p95_ms"] <= 250 and not fr["timeouts"]["delete"])
    ce = res.get("catalog_edit")
    if ce:
        row(f"external catalog edit (idle, one entry added) → visible p50 / p95 ({ce['n']} trials)",
            f"{fmt(ce['p50_ms'], '', 1)} / {fmt(ce['p95_ms'], ' ms', 1)}"
            + (f", {ce['timeouts']} timeouts" if ce["timeouts"] else ""),
            "≤ 250 ms (p95)", ce["p95_ms"] is not None and ce["p95_ms"] <= 250 and not ce["timeouts"])


def _edit_rows(t: Table, res: dict[str, Any], n: int) -> None:
    """The outside edits under load: in this service's layout, then in each other one."""
    rb = res.get("rebuild")
    if rb:
        v, dur, base, aft = rb["visible"], rb["during"], rb["baseline"], rb["after"]
        applies = issue_applies(n)
        t.row(f"outside edit of models.json under load (one entry renamed) → visible p50 / p95 / max "
            f"({rb['trials']} trials)",
            f"{fmt(v['p50_ms'], '', 1)} / {fmt(v['p95_ms'], '', 1)} / {fmt(v['max_ms'], ' ms', 1)}"
            + (f", {rb['timeouts']} timeouts" if rb["timeouts"] else ""),
            f"≤ {EDIT_P95_MS:g} ms (p95)" if applies else "visible", edit_visible_ok(rb) if applies else v["n"] > 0)
        errors = sum(dur[k]["errors"] for k in dur)
        t.row("worst request while that edit is applied: full map / point / /health",
            " / ".join(fmt(dur[k]["max_ms"], "", 1) for k in ("full", "point", "health")) + " ms"
            + (f", {errors} failed" if errors else "")
            + " (baseline max " + " / ".join(fmt(base[k]["max_ms"], "", 1) for k in ("full", "point", "health")) + " ms)",
            f"≤ {EDIT_WORST_MS:g} ms" if applies else "—", edit_worst_ok(rb) if applies else None)
        t.row("worst request in the 1 s after it showed: full map / point / /health",
            " / ".join(fmt(aft[k]["max_ms"], "", 1) for k in ("full", "point", "health")) + " ms")
    for layout, edits in (res.get("rebuild_layouts") or {}).items():
        t.row(f"the same in a file saved {layout}: whole file re-formatted → visible; renames p50 / p95 "
            f"({edits['trials']} trials); worst full map / point / /health",
            _layout_cell(edits), f"≤ {REFORMAT_MS:g} ms; ≤ {LAYOUT_EDIT_P95_MS:g} ms (p95); ≤ {EDIT_WORST_MS:g} ms"
            if issue_applies(n) else "visible", layout_edit_ok(edits) if issue_applies(n) else edits["visible"]["n"] > 0)


def _layout_cell(edits: dict[str, Any]) -> str:
    v, dur = edits["visible"], edits["during"]
    return (f"{fmt(edits['reformat']['visible']['max_ms'], ' ms', 0)}; {fmt(v['p50_ms'], '', 0)} / {fmt(v['p95_ms'], ' ms', 0)}; "
            + " / ".join(fmt(dur[k]["max_ms"], "", 0) for k in ("full", "point", "health")) + " ms"
            + (f", {edits['timeouts']} timeouts" if edits["timeouts"] else ""))


def _stop_row(t: Table, res: dict[str, Any]) -> None:
    st = res.get("service_stop")
    if st:
        t.row("service stop on SIGTERM", f"{fmt(st.get('stop_s'), ' s', 3)}, exit code {st.get('exit_code')}"
              + (f" ({st['stop_note']})" if st.get("stop_note") else ""))


def big_table_for(res: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The Markdown table of the big-catalog run and its verdicts."""
    t = Table()
    t.row("models.json size", fmt(res.get("models_json_bytes"), " B"))
    _common_rows(t, res, None, BIG_RSS_MB)
    chk = res.get("map_check")
    if chk:
        t.row("map matches generated truth", f"{chk.get('by_version_count')} versions, {chk.get('mismatches')} mismatches",
              "0 mismatches", chk.get("ok"))
    if res.get("add"):
        _add_rows(t, res["add"], p95_target=False)
    h, idle = res.get("health_during_adds"), res.get("health_idle")
    if h:
        t.row(f"/health worst during the adds ({h['n']} requests, every 10 ms)",
              fmt(h["max_ms"], " ms", 1) + (f", {h['errors']} failed" if h["errors"] else "")
              + f" (p50 {fmt(h['p50_ms'], ' ms', 1)}; idle max {fmt((idle or {}).get('max_ms'), ' ms', 1)})",
              f"≤ {BIG_HEALTH_MAX_MS:g} ms", big_health_ok(res))
    _stop_row(t, res)
    mb = (res.get("models_json_bytes") or 0) / 1e6
    return t.markdown(f"### Big catalog: {res['n']:,} entries, models.json {mb:,.0f} MB"), t.verdicts


def big_health_ok(res: dict[str, Any]) -> bool | None:
    """/health within its target during the adds, none failed (None: not measured)."""
    h = res.get("health_during_adds")
    if not h or h["max_ms"] is None:
        return None
    return h["max_ms"] <= BIG_HEALTH_MAX_MS and not h["errors"]


def _cell(value: str, ok: bool | None) -> str:
    return value if ok is None else f"{value} {'met' if ok else '**missed**'}"


def _rss_cell(r: dict[str, Any]) -> str:
    if "rss_max_mb" not in r:
        return "n/a"
    return _cell(f"{fmt(r['rss_max_mb'], ' MB', 0)} (VmHWM {fmt(r.get('rss_hwm_mb'), '', 0)})", rss_ok(r) if issue_applies(r["n"]) else None)


def _phases_cell(r: dict[str, Any]) -> str:
    return phases_text(r) if r.get("rss_by_phase_mb") else "n/a"


def _judged(r: dict[str, Any], key: str, text: Any, ok: Any, missing: str = "n/a") -> str:
    """The cell of one measure (`r[key]`): its text, judged where the issue's targets hold."""
    measured = r.get(key)
    if not measured:
        return missing
    return _cell(text(measured), ok(measured) if issue_applies(r["n"]) else None)


def _visible_cell(r: dict[str, Any]) -> str:
    return _judged(r, "rebuild", lambda rb: f"{fmt(rb['visible']['p95_ms'], ' ms', 0)} ({rb['trials']} trials)", edit_visible_ok)


def _worst_text(rb: dict[str, Any]) -> str:
    d, b = rb["during"], rb["baseline"]
    return (" / ".join(fmt(d[k]["max_ms"], "", 0) for k in ("full", "point", "health")) + " ms (idle "
            + " / ".join(fmt(b[k]["max_ms"], "", 0) for k in ("full", "point", "health")) + ")")


def _worst_cell(r: dict[str, Any]) -> str:
    return _judged(r, "rebuild", _worst_text, edit_worst_ok)


def _add_cell(r: dict[str, Any]) -> str:
    return _judged(r, "add", lambda ad: f"{fmt(ad['p50_ms'], '', 0)} / {fmt(ad['p95_ms'], ' ms', 0)}", add_p95_ok, "not measured")


def _full_map_cell(r: dict[str, Any]) -> str:
    d = r.get("map_throughput")
    if not d or "skipped" in d or d.get("ratio") is None:
        return "n/a"
    return _cell(f"{fmt(d['ratio'], '', 2)} ({d.get('load', '')})", d["ratio"] >= FULL_MAP_RATIO if r["n"] == 10_000 else None)


def _layout_edit_cell(layout: str) -> Any:
    def cell(r: dict[str, Any]) -> str:
        edits = (r.get("rebuild_layouts") or {}).get(layout)
        if not edits:
            return "n/a"
        return _cell(_layout_cell(edits), layout_edit_ok(edits) if issue_applies(r["n"]) else None)

    return cell


def issue_table(results: dict[str, Any]) -> str:
    """The 100k issue's rows for every size (and the big catalog), each cell with its verdict."""
    sizes = [r for r in results.values() if r.get("kind", "size") == "size"]
    if not sizes:
        return ""
    cols = [f"{r['n']:,}" for r in sizes]
    lines = ["## The 100k issue's measures", "",
             "| measure | " + " | ".join(cols) + " | target (sizes ≤ 100,000) |",
             "|---|" + "---|" * len(cols) + "---|"]
    rows = [
        ("peak RSS, service + children (sampled)", _rss_cell, f"≤ {RSS_MB:g} MB"),
        ("RSS peak by phase", _phases_cell, "—"),
        ("outside edit of `models.json` → visible in the map, p95 (under load)", _visible_cell, f"≤ {EDIT_P95_MS:g} ms"),
        ("worst request while it is applied: full map / point / `/health`", _worst_cell, f"≤ {EDIT_WORST_MS:g} ms"),
        ("add (fake CivitAI, fsync), p50 / p95", _add_cell, f"p95 ≤ {ADD_P95_MS:g} ms"),
        ("full map 200 against a bare handler of the same bytes (ratio of req/s)", _full_map_cell, f"≥ {FULL_MAP_RATIO:g} at 10k"),
    ]
    rows += [
        (f"saved {layout}: re-formatted → visible; rename p50 / p95; worst full / point / `/health`", _layout_edit_cell(layout),
         f"≤ {REFORMAT_MS:g}; ≤ {LAYOUT_EDIT_P95_MS:g} (p95); ≤ {EDIT_WORST_MS:g} ms")
        for layout in dict.fromkeys(layout for r in sizes for layout in r.get("rebuild_layouts") or {})
    ]
    lines += [f"| {measure} | " + " | ".join(cell(r) for r in sizes) + f" | {target} |" for measure, cell, target in rows]
    for r in results.values():
        if r.get("kind") == "big_catalog" and "health_during_adds" in r:
            lines += _big_catalog_lines(r)
    return "\n".join(lines) + "\n"


def _big_catalog_lines(r: dict[str, Any]) -> list[str]:
    mb = (r.get("models_json_bytes") or 0) / 1e6
    h = r["health_during_adds"]
    rss_value = _cell(fmt(r.get("rss_max_mb"), " MB", 0), r["rss_max_mb"] <= BIG_RSS_MB if "rss_max_mb" in r else None)
    return ["", f"| a {mb:,.0f} MB catalog ({r['n']:,} entries) | value | target |", "|---|---|---|",
            f"| `/health` worst during an add | {_cell(fmt(h['max_ms'], ' ms', 0), big_health_ok(r))} | ≤ {BIG_HEALTH_MAX_MS:g} ms |",
            f"| peak RSS | {rss_value} | ≤ {BIG_RSS_MB / 1024:g} GB |",
            f"| add p50 / p95 | {fmt(r['add']['p50_ms'], '', 0)} / {fmt(r['add']['p95_ms'], ' ms', 0)} | — |"]


def machine_md(m: dict[str, Any], args: argparse.Namespace) -> str:
    """The Machine section of the report."""
    loader = m["wrk"] if m["load_generator"] == "wrk" else "aiohttp client loop in the harness (fallback; wrk absent or --loader aiohttp)"
    return "\n".join([
        "## Machine",
        "",
        f"- nproc: {m['nproc']} (cpu_count {m['cpu_count']}), CPU: {m['cpu_model']}, RAM: {m['mem_total_mb']} MB, "
        f"load average at the start: {m.get('loadavg', 'n/a')}"
        + (f", at the end: {m['loadavg_end']}" if m.get("loadavg_end") else ""),
        f"- Python {m['python']}, aiohttp {m['aiohttp']}, orjson {m['orjson']}, kernel {m['kernel']}",
        f"- load generator: {loader}; {args.threads} threads, {args.conns} connections, "
        f"{args.duration:g} s per run after a {args.warmup:g} s warm-up, {args.repeats} run(s) per target "
        f"alternating service/ceiling (median; range in brackets); service, ceiling and load generator share the cores",
        f"- catalogs in {m['tmp_dir']} ({m['tmp_fs']}), models folder in {m.get('models_tmp_dir')} "
        f"({m.get('models_tmp_fs')})",
        "",
    ])


def write_reports(args: argparse.Namespace, machine: dict[str, Any], results: dict[str, Any], started: str,
                  fresh_n: int, partial: bool) -> str:
    """Write latest.json and latest.md; the Markdown."""
    parts = [f"# Catalog service benchmark — {started}" + (" (partial)" if partial else ""), "",
             machine_md(machine, args), issue_table(results)]
    verdicts: dict[str, Any] = {}
    for key, res in results.items():
        md, v = big_table_for(res) if res.get("kind") == "big_catalog" else table_for(res, fresh_n)
        parts.append(md)
        verdicts[key] = v
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
