"""The in-memory map: versions spliced into the layout in place answer exactly as a map laid out anew."""

from __future__ import annotations

import gzip
import random

import orjson
import pytest

from service.disk.presence import Presence
from service.disk.scan import FolderSource, PathFact
from service.map import body as body_module
from service.map import chunks as chunks_module
from service.map.entry import MapEntry, disk_entry, shown_entry
from service.map.index import CivitaiIndex
from service.map.layout import build_layout
from service.map.status import Transfer

ROOT = "/models"


def entry(version_id: int, *, model_id: int | None = None, file: str | None = None, name: str = "", catalog: str = "models") -> MapEntry:
    found = shown_entry(
        {
            "name": name or f"Version {version_id}",
            "file": file or f"v{version_id}.safetensors",
            "dest": "loras",
            "civitai_version_id": version_id,
            "civitai_model_id": model_id if model_id is not None else version_id // 3 + 1,
            "hash": f"{version_id:064x}",
        },
        catalog,
    )
    assert isinstance(found, MapEntry)
    return found


def fresh_body(presence: Presence, entries: dict[int, MapEntry], transfers: dict[str, Transfer]) -> dict[str, object]:
    """What the map says when laid out from scratch over the same state."""
    index = CivitaiIndex(presence)
    for file, transfer in transfers.items():
        index.set_transfer(file, "loras", transfer)
    index.set_layout(build_layout([entries.values()]))
    return orjson.loads(index.snapshot.body)


def test_random_splices_answer_as_a_fresh_layout() -> None:
    rng = random.Random(7)
    presence = Presence((FolderSource(ROOT),))
    presence.apply([PathFact(f"{ROOT}/loras/v{v}.safetensors", "file", complete=True) for v in range(0, 400, 2)])
    index = CivitaiIndex(presence)
    transfers = {"v5.safetensors": Transfer("downloading", 10, 100)}
    for file, transfer in transfers.items():
        index.set_transfer(file, "loras", transfer)
    truth = {v: entry(v) for v in range(1, 200)}
    index.set_layout(build_layout([truth.values()]))
    for _round in range(60):
        change: dict[int, MapEntry | None] = {}
        for _ in range(rng.randint(1, 12)):
            version_id = rng.randint(1, 400)
            roll = rng.random()
            if roll < 0.1 and truth:
                change[min(truth)] = None  # the first version shown: the next one must lose its comma
            elif roll < 0.3:
                change[version_id] = None
            elif roll < 0.6:
                change[version_id] = entry(version_id, name=f"renamed {rng.random()}")
            elif roll < 0.8:
                change[version_id] = entry(version_id, model_id=rng.randint(1, 5))
            else:
                change[version_id] = disk_entry(version_id, rng.randint(1, 5), f"v{version_id}.safetensors", "loras", "on disk", None, "ab" * 32)
        for version_id, new in change.items():
            if new is None:
                truth.pop(version_id, None)
            else:
                truth[version_id] = new
        index.update(change)
        body = orjson.loads(index.snapshot.body)  # each step is valid JSON: commas right after any blanking
        assert body == fresh_body(presence, truth, transfers)
        assert index.catalogued_models() == {
            m: kept for m, vs in build_layout([truth.values()]).by_model.items() if (kept := [v for v in vs if truth[v].catalog])
        }
    assert index.layout.holes > 0


def test_removing_every_version_then_adding_one_leaves_valid_json() -> None:
    presence = Presence((FolderSource(ROOT),))
    index = CivitaiIndex(presence)
    index.set_layout(build_layout([[entry(1), entry(2), entry(3)]]))
    assert index.update({1: None, 2: None, 3: None})
    assert orjson.loads(index.snapshot.body) == {"by_version": {}, "by_model": {}}
    assert index.update({9: entry(9)})
    assert list(orjson.loads(index.snapshot.body)["by_version"]) == ["9"]


def test_removing_the_first_version_leaves_valid_json() -> None:
    presence = Presence((FolderSource(ROOT),))
    index = CivitaiIndex(presence)
    index.set_layout(build_layout([[entry(1), entry(2), entry(3)]]))
    assert index.update({1: None})
    assert list(orjson.loads(index.snapshot.body)["by_version"]) == ["2", "3"]


def test_an_unchanged_entry_publishes_nothing() -> None:
    presence = Presence((FolderSource(ROOT),))
    index = CivitaiIndex(presence)
    index.set_layout(build_layout([[entry(1)]]))
    etag = index.snapshot.etag
    assert not index.update({1: entry(1), 2: None})
    assert index.snapshot.etag == etag


def test_a_spliced_version_is_found_by_file_model_and_hash() -> None:
    presence = Presence((FolderSource(ROOT),))
    index = CivitaiIndex(presence)
    index.set_layout(build_layout([[entry(1)]]))
    index.update({1: entry(1, file="moved.safetensors", model_id=50)})
    assert index.versions_of_file("moved.safetensors") == (1,)
    assert index.versions_of_file("v1.safetensors") == ()
    assert index.catalogued_models() == {50: [1]}
    presence.apply([PathFact(f"{ROOT}/loras/moved.safetensors", "file", complete=True)])
    assert index.files_changed({"moved.safetensors"})
    assert orjson.loads(index.snapshot.body)["by_version"]["1"]["status"] == "present"


def test_versions_sharing_a_file_are_all_found_as_they_come_and_go() -> None:
    index = CivitaiIndex(Presence((FolderSource(ROOT),)))
    shared = {"file": "same.safetensors"}
    index.set_layout(build_layout([[entry(3, **shared), entry(1, **shared)]]))
    assert index.versions_of_file("same.safetensors") == (1, 3)
    index.update({2: entry(2, **shared)})
    assert index.versions_of_file("same.safetensors") == (1, 2, 3)
    index.update({1: None, 3: None})
    assert index.versions_of_file("same.safetensors") == (2,)
    index.update({2: entry(2, file="other.safetensors")})
    assert index.versions_of_file("same.safetensors") == ()
    assert index.versions_of_file("other.safetensors") == (2,)


def large_index(monkeypatch: pytest.MonkeyPatch, count: int = 3000) -> CivitaiIndex:
    """A map over KEEP_JOINED_BYTES (lowered): sent in slices, never joined whole."""
    monkeypatch.setattr(body_module, "KEEP_JOINED_BYTES", 64 * 1024)
    monkeypatch.setattr(chunks_module, "CHUNK_PARTS", 3 * 40)
    monkeypatch.setattr(body_module, "JOIN_IN_THREAD_PARTS", 100)
    index = CivitaiIndex(Presence((FolderSource(ROOT),)))
    index.set_layout(build_layout([[entry(v) for v in range(1, count + 1)]]))
    return index


async def test_a_large_map_is_kept_in_slices_and_a_change_rejoins_only_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    index = large_index(monkeypatch)
    first = await index.snapshot.sliced()
    assert first is not None and len(first.slices) > 20
    body = b"".join(first)
    assert len(body) == first.size and orjson.loads(body) == orjson.loads(index.snapshot.body)
    assert index.update({1500: entry(1500, name="Renamed")})
    second = await index.snapshot.sliced()
    assert second is not None
    assert orjson.loads(b"".join(second))["by_version"]["1500"]["name"] == "Renamed"
    taken_over = sum(a is b for a, b in zip(first.slices, second.slices))
    assert taken_over >= len(first.slices) - 2  # the slice of that version, and maybe the one after it
    assert index.update({9999: entry(9999)})  # a new version goes last: the tail slice is joined anew
    third = await index.snapshot.sliced()
    assert third is not None and orjson.loads(b"".join(third))["by_version"]["9999"]["file"] == "v9999.safetensors"
    assert sum(a is b for a, b in zip(second.slices, third.slices)) >= len(second.slices) - 2


async def test_a_large_map_gzipped_slice_by_slice_is_the_map(monkeypatch: pytest.MonkeyPatch) -> None:
    index = large_index(monkeypatch)
    sliced = await index.snapshot.sliced()
    assert sliced is not None
    assert gzip.decompress(await index.snapshot.gzip_body()) == b"".join(sliced)


async def test_a_huge_map_keeps_no_slices_and_joins_each_as_it_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    index = large_index(monkeypatch)
    monkeypatch.setattr(body_module, "KEEP_SLICES_BYTES", 128 * 1024)
    sliced = await index.snapshot.sliced()
    assert sliced is not None and sliced.slices is None
    body = b"".join(sliced)
    assert len(body) == sliced.size and orjson.loads(body) == orjson.loads(index.snapshot.body)
    assert gzip.decompress(await index.snapshot.gzip_body()) == body
    assert index.update({1500: entry(1500, name="Renamed")})
    again = await index.snapshot.sliced()
    assert again is not None and again.slices is None
    assert orjson.loads(b"".join(again))["by_version"]["1500"]["name"] == "Renamed"


async def test_a_small_map_is_kept_joined(monkeypatch: pytest.MonkeyPatch) -> None:
    index = CivitaiIndex(Presence((FolderSource(ROOT),)))
    index.set_layout(build_layout([[entry(v) for v in range(1, 50)]]))
    assert await index.snapshot.sliced() is None
    assert orjson.loads(await index.snapshot.full_body())["by_version"]["49"]["status"] == "missing"


def test_listeners_are_told_what_each_changed_version_showed_before() -> None:
    presence = Presence((FolderSource(ROOT),))
    index = CivitaiIndex(presence)
    seen: list[dict[int, tuple[object, str | None]]] = []

    def listener(_etag: str, changes: dict[int, object]) -> None:
        before = {}
        for version in changes:
            status, shown = index.was(version)
            before[version] = (status, None if shown is None else shown.file)
        seen.append(before)

    index.listeners.append(listener)
    index.set_layout(build_layout([[entry(1), entry(2)]]))
    assert seen[-1] == {1: (None, None), 2: (None, None)}  # the first layout: nothing was in the map
    presence.apply([PathFact(f"{ROOT}/loras/v1.safetensors", "file", complete=True)])
    index.files_changed({"v1.safetensors"})
    assert seen[-1] == {1: ("missing", "v1.safetensors")}
    index.update({2: entry(2, file="renamed.safetensors"), 3: entry(3), 1: None})
    assert seen[-1] == {1: ("present", "v1.safetensors"), 2: ("missing", "v2.safetensors"), 3: (None, None)}
    index.set_layout(build_layout([[entry(3)]]))
    assert seen[-1] == {2: ("missing", "renamed.safetensors")}
    assert index.was(3) == ("missing", index.shown(3)) and index.was(2) == (None, None)  # between publishes: as it is now


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("ABCDEF0123456789" * 4, "abcdef0123456789" * 4),
        ("abcdef0123456789" * 4, "abcdef0123456789" * 4),
        ("ABCDEF0123456789" * 4 + "0", None),  # 65 digits
        ("ABCDEF0123456789" * 3 + "ABCDEF012345678g", None),
        ("ABCDEF0123456789" * 3 + "ABCDEF0123456 78", None),  # white space fromhex would pass over
        (" " + "ABCDEF0123456789" * 3 + "ABCDEF012345678", None),
        ("ABCDEF0123456789" * 3 + "ABCDEF012345678\u0661", None),  # a digit, but not an ASCII one
        ("ABCDEF0123456789" * 3 + "ABCDEF012345678\u00e9", None),
        (12345, None),
    ],
)
def test_an_entrys_hash_is_kept_only_when_it_is_a_sha256(given: object, kept: str | None) -> None:
    found = shown_entry({"civitai_version_id": 1, "file": "a.safetensors", "dest": "loras", "hash": given}, "loras")
    assert found is not None and found.sha256 == kept
