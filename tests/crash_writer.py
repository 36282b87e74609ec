"""A child process for the crash tests: saves or promotes in a loop until it is killed."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from service.catalog.document import CATALOG_NAMES, add_entry, catalog_path
from service.catalog.plans import plan_promote
from service.catalog.store import CatalogStore
from service.catalog.transaction import run_transaction


def save_forever(catalog_dir: Path) -> None:
    store = CatalogStore(catalog_dir / "models.json")
    run = os.getpid()
    print("ready", flush=True)
    n = 0
    while True:
        n += 1
        with store.locked():
            reading = store.read()
            add_entry(reading.doc, "checkpoints", "Checkpoints", {"file": f"f{run}-{n}.safetensors", "dest": "checkpoints", "pad": "x" * 2000})
            store.write(reading)


def promote_all(catalog_dir: Path, first: int, count: int) -> None:
    stores = {name: CatalogStore(catalog_path(catalog_dir, name)) for name in CATALOG_NAMES}
    print("ready", flush=True)
    for version_id in range(first, first + count):
        outcome = run_transaction(stores, lambda readings, v=version_id: plan_promote(readings, v))
        if outcome.error is not None:
            raise outcome.error


if __name__ == "__main__":
    folder = Path(sys.argv[2])
    if sys.argv[1] == "save":
        save_forever(folder)
    else:
        promote_all(folder, int(sys.argv[3]), int(sys.argv[4]))
