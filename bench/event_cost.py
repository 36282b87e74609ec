"""What one file event costs, at several catalog sizes: in-process, no server, no disk.

An event is split in the two parts the service does on the event loop:
  - update: apply the probed fact to presence and patch the statuses of the versions
    with that file name (should not grow with the catalog);
  - publish: join the pre-serialized fragments into the new body (a memcpy of the map,
    grows with its size in bytes, never re-serializes).

    python bench/event_cost.py [--sizes 1000,100000] [--events 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.catalog.reading import extract_entries  # noqa: E402
from service.disk.presence import Presence  # noqa: E402
from service.disk.scan import FolderSource, PathFact  # noqa: E402
from service.map.index import CivitaiIndex  # noqa: E402
from service.map.layout import build_layout  # noqa: E402
from service.map.status import MISSING, PRESENT  # noqa: E402

ROOT = "/models"


def catalog(n: int) -> dict[str, object]:
    models = [
        {"name": f"Model {i}", "file": f"f{i}.safetensors", "dest": "loras", "civitai_version_id": i, "civitai_model_id": i, "base_model": "SDXL 1.0"}
        for i in range(1, n + 1)
    ]
    return {"version": 1, "categories": [{"id": "loras", "models": models}]}


async def measure(n: int, events: int) -> dict[str, float]:
    presence = Presence((FolderSource(ROOT),))
    index = CivitaiIndex(presence)
    index.set_layout(build_layout([extract_entries(catalog(n), "models").entries]))
    publish = index._publish
    index._publish = lambda changes: bool(changes)  # type: ignore[method-assign]  # time the update alone
    update_us: list[float] = []
    for k in range(events):
        name = f"f{(k * 7919) % n + 1}.safetensors"
        fact = PathFact(f"{ROOT}/loras/{name}", "file", complete=k % 2 == 0)
        started = time.perf_counter()
        index.files_changed(presence.apply([fact]))
        update_us.append((time.perf_counter() - started) * 1e6)
    publish_us: list[float] = []
    for k in range(min(events, 200)):
        index._layout.parts[index._layout.slots[k % n + 1]] = PRESENT if k % 2 else MISSING  # a status moved
        started = time.perf_counter()
        publish({k % n + 1: "present"})
        publish_us.append((time.perf_counter() - started) * 1e6)
    return {
        "entries": n,
        "map_bytes": len(index.snapshot.body),
        "update_us_p50": statistics.median(update_us),
        "update_us_p95": statistics.quantiles(update_us, n=20)[18],
        "publish_us_p50": statistics.median(publish_us),
        "publish_us_p95": statistics.quantiles(publish_us, n=20)[18],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--events", type=int, default=2000)
    args = parser.parse_args()
    print("| entries | map size | update p50 / p95 (µs) | publish p50 / p95 (µs) |")
    print("|---|---|---|---|")
    for n in (int(s) for s in args.sizes.split(",")):
        r = asyncio.run(measure(n, args.events))
        print(
            f"| {n:,} | {r['map_bytes'] / 1e6:.1f} MB | {r['update_us_p50']:.1f} / {r['update_us_p95']:.1f} "
            f"| {r['publish_us_p50']:.0f} / {r['publish_us_p95']:.0f} |"
        )


if __name__ == "__main__":
    main()
