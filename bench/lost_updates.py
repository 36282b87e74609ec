"""Lost updates against programs that take no lock: does a save of ours ever undo theirs?

Another program (a separate process) saves models.json in a tight loop, each save adding
one marker to a list, either in place (open 'w' + json.dump) or atomically (temp file +
rename). Meanwhile this service's own transaction code (`run_transaction`, as the add route
runs it) adds entries as fast as it can. The other program reads before each save, so a
marker missing at the end was removed by a save of ours: a lost outside save. The target
is 0. (The other program can still overwrite our entries: it takes no lock and cannot be
stopped from doing so; that count is printed for information.) A lost save found in a
conflict copy (`models.json.conflict-*`, left when the other program saved onto our file in
the moment it was shown) is counted as lost too, and then as found there.

Our saves take either path the service has: `whole` (read and parse the whole file) or
`spliced` (read only what the plan asks about against the last cut, as the add route does
once the map holds a cut; the rest copied, the file displaced by the swap trusted by its
stamp when it had been quiet). With --pause-ms the other program rests up to that long
between saves, so ours also meet a file that has been quiet.

    python bench/lost_updates.py [--saves 2000] [--runs 3] [--paths whole,spliced] [--pause-ms 0]
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.catalog.codec import digest  # noqa: E402
from service.catalog.cutting import cut  # noqa: E402
from service.catalog.document import catalog_path  # noqa: E402
from service.catalog.plans import plan_add  # noqa: E402
from service.catalog.store import CatalogStore  # noqa: E402
from service.catalog.text import Text, Unsplittable  # noqa: E402
from service.catalog.transaction import Wanted, run_transaction  # noqa: E402
from service.civitai.routing import MappedVersion  # noqa: E402

OTHER_PROGRAM = """
import json, os, random, sys, time
path, mode, saves, pause = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
for marker in range(saves):
    time.sleep(random.uniform(0, pause))
    doc = json.loads(open(path, "rb").read())  # whole: the service replaces atomically
    doc.setdefault("outside", []).append(marker)
    if mode == "in-place":
        with open(path, "w") as handle:
            json.dump(doc, handle, indent=2)
    else:
        temp = path + ".other~"
        with open(temp, "w") as handle:
            json.dump(doc, handle, indent=2)
        os.replace(temp, path)
"""


def mapped(version_id: int) -> MappedVersion:
    entry = {"name": f"v{version_id}", "file": f"v{version_id}.safetensors", "dest": "loras", "civitai_version_id": version_id}
    return MappedVersion(entry=entry, category="loras", restricted_reason=None)


def cut_of(store: CatalogStore) -> Text:
    raw = store.path.read_bytes()
    return cut(raw, store.name, digest(raw), None)


def one_run(mode: str, saves: int, path: str = "whole", pause_s: float = 0.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        catalogs = Path(folder)
        (catalogs / "models.json").write_text('{\n  "version": 0,\n  "categories": []\n}')
        stores = {name: CatalogStore(catalog_path(catalogs, name)) for name in ("models", "loras")}
        for store in stores.values():
            store.ensure_exists()
        other = subprocess.Popen([sys.executable, "-c", OTHER_PROGRAM, str(catalogs / "models.json"), mode, str(saves), str(pause_s)])
        added: list[int] = []
        failures: list[str] = []
        spliced: list[int] = []  # our saves that went the spliced way (the rest were read whole)

        def add_until_done() -> None:
            version_id = 1
            texts: dict[str, Text] | None = None
            while other.poll() is None:
                plan = functools.partial(plan_add, mapped=mapped(version_id))
                if path == "spliced":
                    if texts is None:
                        try:  # the other program's save may be half-written: cut again next time
                            texts = {name: cut_of(store) for name, store in stores.items()}
                        except (Unsplittable, ValueError):
                            continue
                    wanted = Wanted(frozenset({version_id}), frozenset({f"v{version_id}.safetensors"}))
                    outcome = run_transaction(stores, plan, wanted, texts)
                    if any(saved.changes is not None for saved in outcome.written.values()):
                        spliced.append(version_id)
                    # As the map does: plan on the cut each save derived, whatever the other program did since.
                    texts = {**texts, **{name: saved.text for name, saved in outcome.written.items() if saved.text is not None}}
                else:
                    outcome = run_transaction(stores, plan)
                if outcome.error is None:
                    added.append(version_id)
                else:
                    failures.append(getattr(outcome.error, "code", type(outcome.error).__name__))
                version_id += 1

        started = time.perf_counter()
        ours = threading.Thread(target=add_until_done)
        ours.start()
        other.wait()
        ours.join()
        elapsed = time.perf_counter() - started
        return {
            "mode": mode,
            "our_path": path,
            **_tally(catalogs, saves, added, spliced, failures),
            "seconds": round(elapsed, 1),
        }


def _tally(catalogs: Path, saves: int, added: list[int], spliced: list[int], failures: list[str]) -> dict[str, int]:
    """What the catalog holds after a run: the other program's saves kept or lost, and ours."""
    doc = json.loads((catalogs / "models.json").read_text())
    markers = set(doc.get("outside", []))
    kept = {e.get("civitai_version_id") for c in doc["categories"] for e in c.get("models", [])}
    aside: set[int] = set()  # in the conflict copies a save made onto ours leaves beside the catalog
    for copy in catalogs.glob("models.json.conflict-*"):
        aside |= set(json.loads(copy.read_text()).get("outside", []))
    return {
        "outside_saves": saves,
        "outside_saves_lost": saves - len(markers & set(range(saves))),
        "of_those_in_conflict_copies": len((aside - markers) & set(range(saves))),
        "our_saves": len(added),
        "our_saves_spliced": len(spliced),
        "our_failures": len(failures),
        "our_entries_overwritten_by_them": len(set(added) - kept),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=2000, help="saves by the other program per run")
    parser.add_argument("--runs", type=int, default=3, help="runs per save mode")
    parser.add_argument("--paths", default="whole,spliced", help="our save paths to run: whole, spliced")
    parser.add_argument("--pause-ms", type=float, default=0.0, help="the other program rests up to this long between saves")
    args = parser.parse_args()
    total_lost = 0
    for _ in range(args.runs):
        for path, mode in [(path, mode) for path in args.paths.split(",") for mode in ("in-place", "atomic")]:
            result = one_run(mode, args.saves, path, args.pause_ms / 1000)
            total_lost += result["outside_saves_lost"]
            print(json.dumps(result), flush=True)
    print(f"outside saves lost in total: {total_lost} (target 0)")


if __name__ == "__main__":
    main()
