"""The map's layout built whole (`service/map/layout.py`): its parts, slots and lookups, against a
plain loop over the versions that says what each must be."""

from __future__ import annotations

import bisect
import random
from typing import Any

import orjson
import pytest

from service.map.entry import MapEntry, disk_entry, shown_entry
from service.map.layout import CLOSE, MIDDLE, OPEN, Versions, build_layout
from service.map.status import MISSING


def catalog_entry(rng: random.Random, version_id: int, catalog: str) -> MapEntry:
    found = shown_entry(
        {
            "name": f"Version {version_id}",
            "file": f"f{rng.randrange(40)}.safetensors",  # files shared by several versions
            "dest": rng.choice(["loras", "checkpoints"]),
            "civitai_version_id": version_id,
            **({"civitai_model_id": rng.randrange(1, 30)} if rng.random() < 0.9 else {}),
            **({"hash": f"{rng.randrange(25):064x}"} if rng.random() < 0.7 else {}),  # hashes shared too
        },
        catalog,
    )
    assert isinstance(found, MapEntry)
    return found


def expected_layout(catalogs: list[list[MapEntry]]) -> dict[str, Any]:
    """The layout, worked out one version at a time."""
    entries: dict[int, MapEntry] = {}
    for listed in catalogs:
        for item in listed:
            entries.setdefault(item.version_id, item)
    parts: list[bytes] = [OPEN]
    slots: dict[int, int] = {}
    by_file: dict[str, list[int]] = {}
    by_model: dict[int, list[int]] = {}
    by_sha256: dict[str, list[int]] = {}
    for version_id in sorted(entries):
        item = entries[version_id]
        parts += [b"," if len(parts) > 1 else b"", item.head]
        slots[version_id] = len(parts)
        parts.append(MISSING)
        bisect.insort(by_file.setdefault(item.file, []), version_id)
        if item.model_id is not None:
            by_model.setdefault(item.model_id, []).append(version_id)
        if item.catalog and item.sha256 is not None:
            bisect.insort(by_sha256.setdefault(item.sha256, []), version_id)
    return {"entries": entries, "parts": parts, "slots": slots, "by_file": by_file, "by_model": by_model, "by_sha256": by_sha256}


def listed(lookup: dict[Any, Versions]) -> dict[Any, list[int]]:
    return {key: [found] if type(found) is int else list(found) for key, found in lookup.items()}  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(8))
def test_a_layout_built_column_by_column_is_the_one_a_loop_over_versions_builds(seed: int) -> None:
    rng = random.Random(seed)
    loras = [catalog_entry(rng, rng.randrange(1, 200), "loras") for _ in range(rng.randrange(0, 60))]
    models = [catalog_entry(rng, rng.randrange(1, 200), "models") for _ in range(rng.randrange(0, 120))]
    disk = [disk_entry(v, rng.randrange(1, 30), f"d{v}.safetensors", "loras", f"D{v}", None, f"{v:064x}") for v in rng.sample(range(150, 260), rng.randrange(0, 5))]
    layout = build_layout([loras, models, disk])
    want = expected_layout([loras, models, disk])
    assert layout.entries == want["entries"] and layout.slots == want["slots"]
    assert listed(layout.by_file) == want["by_file"] and listed(layout.by_sha256) == want["by_sha256"]
    assert layout.by_model == want["by_model"]
    assert layout.parts.items[: len(want["parts"])] == want["parts"]
    assert layout.parts.items[len(want["parts"])] == MIDDLE + b"{" and layout.parts.items[-1] == CLOSE + CLOSE
    body = orjson.loads(b"".join(layout.parts.items))
    assert sorted(map(int, body["by_version"])) == sorted(want["entries"])
    catalogued = {m: [v for v in versions if want["entries"][v].catalog] for m, versions in want["by_model"].items()}
    assert (layout.catalogued_models or layout.by_model) == {m: v for m, v in catalogued.items() if v}


def test_an_empty_layout_is_an_empty_map() -> None:
    layout = build_layout([[], []])
    assert orjson.loads(b"".join(layout.parts.items)) == {"by_version": {}, "by_model": {}}
    assert layout.slots == {} and layout.by_file == {} and layout.by_sha256 == {}
