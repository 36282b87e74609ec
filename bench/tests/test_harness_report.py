"""The tables: the 100k issue's rows with a verdict where its targets hold, and the big-catalog table."""

from typing import Any


def _rebuild(p95: float, worst: float, timeouts: int = 0, errors: int = 0) -> dict[str, Any]:
    stats = {"n": 50, "p50_ms": 1.0, "p95_ms": 2.0, "max_ms": worst, "min_ms": 0.5, "errors": errors}
    idle = {**stats, "max_ms": 3.0, "errors": 0}
    return {
        "trials": 5, "asked": 5, "timeouts": timeouts, "lookup": "point answer", "catalog_bytes": 1,
        "visible": {"n": 5 - timeouts, "p50_ms": p95 / 2, "p95_ms": p95, "max_ms": p95, "min_ms": 1.0},
        "during": {k: dict(stats) for k in ("full", "point", "health")},
        "baseline": {k: dict(idle) for k in ("full", "point", "health")},
        "after": {k: dict(idle) for k in ("full", "point", "health")},
        "per_trial": [],
    }


def _size(n: int, rss: float, p95: float, worst: float, add_p95: float) -> dict[str, Any]:
    return {
        "n": n, "rss_max_mb": rss, "rss_hwm_mb": rss - 10, "rss_by_phase_mb": {"start": 40.0, "rebuild": rss},
        "rss_peak_phase": "rebuild", "rebuild": _rebuild(p95, worst),
        "add": {"n": 50, "requests": 50, "asked": 50, "p50_ms": add_p95 / 2, "p95_ms": add_p95, "max_ms": add_p95},
    }


def test_the_issue_table_says_met_and_missed_at_100k() -> None:
    from harness.report import issue_table

    md = issue_table({"100000": _size(100_000, rss=453.0, p95=2270.0, worst=12.0, add_p95=140.0)})
    rows = {line.split(" | ")[0].strip("| "): line for line in md.splitlines() if line.startswith("| ")}
    assert "453 MB (VmHWM 443) **missed**" in rows["peak RSS, service + children (sampled)"]
    assert "2,270 ms (5 trials) **missed**" in rows["outside edit of `models.json` → visible in the map, p95 (under load)"]
    assert "12 / 12 / 12 ms (idle 3 / 3 / 3) met" in rows["worst request while it is applied: full map / point / `/health`"]
    assert "70 / 140 ms met" in rows["add (fake CivitAI, fsync), p50 / p95"]
    assert "start 40 / rebuild 453 MB (peak: rebuild)" in rows["RSS peak by phase"]


def test_a_million_entries_report_numbers_without_a_verdict() -> None:
    from harness.report import issue_table

    md = issue_table({"1000000": _size(1_000_000, rss=3000.0, p95=20_000.0, worst=900.0, add_p95=9000.0)})
    assert "missed" not in md and " met" not in md
    assert "3,000 MB" in md and "20,000 ms" in md


def test_a_failed_request_during_an_edit_misses_the_target_whatever_the_latency() -> None:
    from harness.targets import edit_worst_ok

    assert edit_worst_ok(_rebuild(100.0, worst=10.0))
    assert not edit_worst_ok(_rebuild(100.0, worst=10.0, errors=1))
    assert not edit_worst_ok(_rebuild(100.0, worst=51.0))


def test_an_edit_that_never_showed_misses_the_target() -> None:
    from harness.targets import edit_visible_ok

    assert edit_visible_ok(_rebuild(240.0, worst=1.0))
    assert not edit_visible_ok(_rebuild(240.0, worst=1.0, timeouts=1))


def test_the_big_catalog_table_judges_health_and_memory() -> None:
    from harness.report import big_table_for, issue_table

    health = {"n": 900, "p50_ms": 2.0, "p95_ms": 5.0, "max_ms": 1900.0, "min_ms": 1.0, "errors": 0}
    res = {"n": 10_000, "kind": "big_catalog", "models_json_bytes": 500_000_000, "ready_s": 9.0,
           "rss_max_mb": 2048.0, "health_during_adds": health, "health_idle": {**health, "max_ms": 4.0},
           "add": {"n": 3, "requests": 3, "asked": 3, "p50_ms": 8000.0, "p95_ms": 8100.0, "max_ms": 8200.0}}
    md, verdicts = big_table_for(res)
    assert "### Big catalog: 10,000 entries, models.json 500 MB" in md
    judged = {v["metric"]: v["pass"] for v in verdicts if v["pass"] is not None}
    assert judged["/health worst during the adds (900 requests, every 10 ms)"] is False
    assert judged["RSS max (VmRSS of the service and its children, sampled every 100 ms)"] is False
    summary = issue_table({"100000": _size(100_000, 250.0, 100.0, 10.0, 100.0), "big-500MB": res})
    assert "| `/health` worst during an add | 1,900 ms **missed** | ≤ 100 ms |" in summary
    assert "| peak RSS | 2,048 MB **missed** | ≤ 1 GB |" in summary


def test_the_issue_table_judges_the_full_map_at_10k_and_edits_in_each_layout() -> None:
    from harness.report import issue_table

    size = _size(10_000, rss=200.0, p95=100.0, worst=10.0, add_p95=100.0)
    size["map_throughput"] = {"ratio": 0.96, "load": "wrk -t1 -c8", "service": {}, "ceiling": {}}
    minified = {**_rebuild(300.0, worst=10.0), "reformat": _rebuild(900.0, worst=10.0)}
    tabs = {**_rebuild(300.0, worst=10.0), "reformat": _rebuild(1200.0, worst=10.0)}
    size["rebuild_layouts"] = {"minified": minified, "tabs": tabs}
    md = issue_table({"10000": size})
    rows = {line.split(" | ")[0].strip("| "): line for line in md.splitlines() if line.startswith("| ")}
    assert "0.96 (wrk -t1 -c8) met" in rows["full map 200 against a bare handler of the same bytes (ratio of req/s)"]
    assert rows["saved minified: re-formatted → visible; rename p50 / p95; worst full / point / `/health`"].endswith("met | ≤ 1000; ≤ 500 (p95); ≤ 50 ms |")
    assert "**missed**" in rows["saved tabs: re-formatted → visible; rename p50 / p95; worst full / point / `/health`"]  # the re-format took 1.2 s
