"""Lost updates against programs that take no lock: does a save of ours ever undo theirs?

Another program (a separate process) saves models.json in a tight loop, each save adding
one marker to a list, either in place (open 'w' + json.dump) or atomically (temp file +
rename). Meanwhile this service's own transaction code (`run_transaction`, as the add route
runs it) adds entries as fast as it can. The other program reads before each save, so a
marker missing at the end was removed by a save of ours: a lost outside save. The target
is 0. (The other program can still overwrite our entries: it takes no lock and cannot be
stopped from doing so; that count is printed for information.)

    python bench/lost_updates.py [--saves 2000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.mapping import MappedVersion  # noqa: E402
from service.catalog import catalog_path  # noqa: E402
from service.mutations import plan_add, run_transaction  # noqa: E402
from service.store import CatalogStore  # noqa: E402

OTHER_PROGRAM = """
import json, os, sys
path, mode, saves = sys.argv[1], sys.argv[2], int(sys.argv[3])
for marker in range(saves):
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


def one_run(mode: str, saves: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        catalogs = Path(folder)
        (catalogs / "models.json").write_text('{"version": 0, "categories": []}')
        stores = {name: CatalogStore(catalog_path(catalogs, name)) for name in ("models", "loras")}
        other = subprocess.Popen([sys.executable, "-c", OTHER_PROGRAM, str(catalogs / "models.json"), mode, str(saves)])
        added: list[int] = []
        failures: list[str] = []

        def add_until_done() -> None:
            version_id = 1
            while other.poll() is None:
                outcome = run_transaction(stores, lambda readings, v=version_id: plan_add(readings, mapped(v)))
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
        doc = json.loads((catalogs / "models.json").read_text())
        markers = set(doc.get("outside", []))
        kept = {e.get("civitai_version_id") for c in doc["categories"] for e in c.get("models", [])}
        return {
            "mode": mode,
            "outside_saves": saves,
            "outside_saves_lost": saves - len(markers & set(range(saves))),
            "our_saves": len(added),
            "our_failures": len(failures),
            "our_entries_overwritten_by_them": len(set(added) - kept),
            "seconds": round(elapsed, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=2000, help="saves by the other program per run")
    parser.add_argument("--runs", type=int, default=3, help="runs per save mode")
    args = parser.parse_args()
    total_lost = 0
    for _ in range(args.runs):
        for mode in ("in-place", "atomic"):
            result = one_run(mode, args.saves)
            total_lost += result["outside_saves_lost"]
            print(json.dumps(result), flush=True)
    print(f"outside saves lost in total: {total_lost} (target 0)")


if __name__ == "__main__":
    main()
