"""The targets of the 100k issue ("A 100,000-entry library behaves like a 1,000-entry one") and their checks."""

from typing import Any

ISSUE_MAX_N = 100_000  # the issue's targets hold for libraries up to this size; larger runs report without a verdict
RSS_MB = 300.0  # peak VmRSS of the service and its children
EDIT_P95_MS = 250.0  # an outside edit of models.json visible in the map, p95
EDIT_WORST_MS = 50.0  # the worst request (full map, point answer, /health) while that edit is applied
LAYOUT_EDIT_P95_MS = 500.0  # the same edit in a file saved in another layout (minified, 4 spaces, tabs, CRLF)
REFORMAT_MS = 1000.0  # an outside save that re-formats the whole file into another layout, visible
FULL_MAP_RATIO = 0.9  # the full map's 200 against a bare handler serving the same bytes, at 10k entries
ADD_P95_MS = 150.0  # POST add against the fake CivitAI, fsync included, p95
BIG_HEALTH_MAX_MS = 100.0  # a 500 MB catalog: /health's worst latency during an add
BIG_RSS_MB = 1024.0  # a 500 MB catalog: peak VmRSS


def issue_applies(n: int) -> bool:
    """Whether the issue's targets hold at n entries."""
    return n <= ISSUE_MAX_N


def rss_ok(res: dict[str, Any]) -> bool:
    """Peak RSS within the target."""
    return res["rss_max_mb"] <= RSS_MB


def edit_visible_ok(rebuild: dict[str, Any]) -> bool:
    """p95 within the target and no trial that never showed."""
    p95 = rebuild["visible"]["p95_ms"]
    return p95 is not None and p95 <= EDIT_P95_MS and not rebuild["timeouts"]


def edit_worst_ok(rebuild: dict[str, Any]) -> bool:
    """Every request of every kind within the target while the edits were applied, none failed."""
    during = rebuild["during"].values()
    worst = [d["max_ms"] for d in during if d["max_ms"] is not None]
    return bool(worst) and max(worst) <= EDIT_WORST_MS and not any(d["errors"] for d in during)


def add_p95_ok(add: dict[str, Any]) -> bool:
    """Add p95 within the target and every add succeeded."""
    return add["p95_ms"] is not None and add["p95_ms"] <= ADD_P95_MS and add["n"] == add["requests"]


def layout_edit_ok(edits: dict[str, Any]) -> bool:
    """Renames in another layout: p95 within its target, the worst request within the edit's,
    and the whole file re-formatted into it visible within its target."""
    p95, reformat = edits["visible"]["p95_ms"], edits["reformat"]["visible"]["max_ms"]
    return (p95 is not None and p95 <= LAYOUT_EDIT_P95_MS and not edits["timeouts"] and edit_worst_ok(edits)
            and reformat is not None and reformat <= REFORMAT_MS and not edits["reformat"]["timeouts"])
