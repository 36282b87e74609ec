"""The page at 100,000 entries, in headless Chromium (Debian's `chromium`, over the DevTools
protocol, as the page's tests drive it). Loopback only.

    python bench/page.py [--entries 100000] [--runs 3] [--screenshots docs/screenshots]

For each run, against `python -m service` on a generated library (half the files on disk):
- time to a usable list: from the key being accepted (the map's request starting) until the
  first rows are on the page and take clicks (target: 1 s);
- event to row: the page's handling of a change event, from its arrival to its row redrawn,
  for status changes of rows in view (target: 50 ms, the worst of 20);
- keystroke to results: typing a search, a letter at a time, each answered with the filtered
  list drawn (target: 50 ms, the worst keystroke);
- the tab's JS heap after a garbage collection (target: 200 MB).
With --screenshots, the main states are saved at 1280x800 and 390x844.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from harness.dataset import generate  # noqa: E402
from loopback import KEY, ServiceProcess  # noqa: E402

from tests.browser import Page, browser_page  # noqa: E402

TARGETS = {"usable_s": 1.0, "event_to_row_ms": 50.0, "keystroke_ms": 50.0, "heap_mb": 200.0}
MAP_TIMING = """(() => { const e = performance.getEntriesByType('resource').find((r) => r.name.endsWith('/civitai-map'));
  return e ? e.startTime : null; })()"""
# Each change goes through the page's own handler (`onChange`, as an event from the stream
# would); the time is measured inside the page, around it.
EVENTS = """(async () => {
  const ids = [...document.querySelectorAll('[data-version-id]')].map((e) => Number(e.dataset.versionId)).slice(0, 20);
  const times = [];
  for (const id of ids) {
    const row = state.rows.get(id);
    const status = row.status === 'present' ? 'missing' : 'present';
    const started = performance.now();
    onChange({changes: {[id]: status}, details: {}});
    times.push(performance.now() - started);
    await new Promise((resolve) => requestAnimationFrame(resolve));
  }
  return times;
})()"""
KEYSTROKES = """(async (word) => {
  const search = document.getElementById('search');
  const times = [];
  for (let n = 1; n <= word.length; n++) {
    search.value = word.slice(0, n);
    const started = performance.now();
    applyView();
    times.push(performance.now() - started);
    await new Promise((resolve) => requestAnimationFrame(resolve));
  }
  search.value = ''; applyView();
  return times;
})"""


async def login(page: Page, base: str) -> float:
    """Open the page, give the key; seconds from the map's request to a usable list."""
    await page.goto(f"{base}/")
    await page.evaluate(f"document.getElementById('key').value = '{KEY}'; document.getElementById('key-form').requestSubmit()")
    await page.wait_for("document.querySelectorAll('[data-version-id] button, [data-version-id] input').length > 5", timeout=120)
    shown_at = await page.evaluate("performance.now()")
    asked_at = await page.evaluate(MAP_TIMING)
    return (shown_at - asked_at) / 1000


async def one_run(base: str, screenshots: Path | None) -> dict[str, Any]:
    async with browser_page() as page:
        await page.send("Emulation.setDeviceMetricsOverride", width=1280, height=800, deviceScaleFactor=1, mobile=False)
        usable = await login(page, base)
        await asyncio.sleep(1.0)  # the search index is made in slices after the first paint
        events = await page.evaluate(EVENTS)
        keys = await page.evaluate(f"({KEYSTROKES})('bench loras model 1')")
        await page.send("HeapProfiler.collectGarbage")
        heap = (await page.send("Runtime.getHeapUsage"))["usedSize"] / 1e6
        if screenshots is not None:
            await shots(page, screenshots)
    return {"usable_s": usable, "event_to_row_ms": max(events), "keystroke_ms": max(keys), "heap_mb": heap}


async def shots(page: Page, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    await page.screenshot(folder / "desktop-list.png")
    await page.evaluate("{ const s = document.getElementById('search'); s.value = 'model 12 v'; s.dispatchEvent(new Event('input')); }")
    await page.evaluate("{ const f = document.getElementById('f-status'); f.value = 'missing'; f.dispatchEvent(new Event('change')); }")
    await asyncio.sleep(0.3)
    await page.screenshot(folder / "desktop-search.png")
    await page.evaluate("location.hash = ''; location.reload()")
    await page.send("Emulation.setDeviceMetricsOverride", width=390, height=844, deviceScaleFactor=1, mobile=True)
    await page.wait_for("document.readyState === 'complete' && document.querySelectorAll('[data-version-id]').length > 2", timeout=120)
    await asyncio.sleep(0.3)
    await page.screenshot(folder / "phone-list.png")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--screenshots", type=Path, default=None, help="save the main states as PNGs into this folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-page-") as work:
        dataset = generate(args.entries, Path(work))
        service = ServiceProcess(dataset.catalog_dir, dataset.models_dir, "http://127.0.0.1:9", Path(work) / "service.log", HASHING="off")
        try:
            async with aiohttp.ClientSession() as session:
                await service.wait_ready(session, timeout_s=120)
            runs = []
            for number in range(args.runs):
                runs.append(await one_run(service.base, args.screenshots if number == 0 else None))
                print(f"run {number + 1}: " + ", ".join(f"{name} {value:.2f}" for name, value in runs[-1].items()), flush=True)
        finally:
            service.stop()
    result = {name: round(statistics.median(run[name] for run in runs), 3) for name in TARGETS}
    print(json.dumps({"entries": args.entries, "runs": args.runs, "median": result}, indent=2))
    for name, target in TARGETS.items():
        print(f"{'met ' if result[name] <= target else 'MISSED'}  {name}: {result[name]} (target {target})")
    sys.exit(0 if all(result[name] <= target for name, target in TARGETS.items()) else 1)


if __name__ == "__main__":
    asyncio.run(main())
