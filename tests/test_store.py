"""Durable writes on real files: stamping, temp cleanup, lock respect, foreign edits never lost."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

import service.catalog.swap
from service.catalog.codec import digest, parse_catalog
from service.catalog.cutting import load_text
from service.catalog.document import add_entry
from service.catalog.store import CatalogStore, Reading, StaleRead
from service.errors import Unavailable

from .helpers import catalog, entry, read_json, replace_json, touch, write_json


@pytest.fixture
def store(tmp_path: Path) -> CatalogStore:
    write_json(tmp_path / "models.json", catalog(entry(1, "a.safetensors", extra_field={"z": 1, "a": 2})))
    return CatalogStore(tmp_path / "models.json")


def test_write_stamps_and_keeps_everything_else(store: CatalogStore) -> None:
    reading = store.read()
    add_entry(reading.doc, "loras", "LoRAs", entry(2, "b.safetensors", "loras"))
    store.write(reading)
    doc = read_json(store.path)
    assert doc["version"] == 2 and doc["date"] != "2026-11-23 14:05"
    first = doc["categories"][0]["models"][0]
    assert list(first) == list(entry(1, "a.safetensors", extra_field={})) and first["extra_field"] == {"z": 1, "a": 2}
    assert list(first["extra_field"]) == ["z", "a"]  # key order kept
    assert [c["id"] for c in doc["categories"]] == ["checkpoints", "loras"]


def test_no_temp_files_are_left_behind_on_success_or_failure(store: CatalogStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.write(store.read())
    reading = store.read()

    def failing_fsync(_fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    before = store.path.read_bytes()
    with pytest.raises(OSError):
        store.write(reading)
    assert store.path.read_bytes() == before
    assert sorted(p.name for p in store.path.parent.iterdir()) == ["models.json"]


def test_a_foreign_edit_between_read_and_replace_is_detected(store: CatalogStore) -> None:
    reading = store.read()
    write_json(store.path, catalog(entry(1, "a.safetensors"), entry(3, "foreign.safetensors")))  # a program that takes no lock
    foreign = store.path.read_bytes()
    with pytest.raises(StaleRead):
        store.write(reading)
    assert store.path.read_bytes() == foreign
    assert not [p for p in store.path.parent.iterdir() if p.name.startswith(".tmp-")]


def test_an_unparsable_catalog_is_refused_and_untouched(store: CatalogStore) -> None:
    store.path.write_bytes(b'{"categories": [')
    with pytest.raises(Unavailable) as caught:
        store.read()
    assert caught.value.code == "catalog_unparsable"
    assert store.path.read_bytes() == b'{"categories": ['


def test_a_catalog_that_keeps_changing_half_written_is_read_until_whole(store: CatalogStore) -> None:
    """A program saving in place many times a second leaves the file half-written most of the
    time: it is read again for as long as it keeps changing, not called unparsable after a second."""
    whole = orjson.dumps(catalog(entry(1, "a.safetensors"), entry(5, "e.safetensors")), option=orjson.OPT_INDENT_2)
    stop = threading.Event()

    def keep_saving_half() -> None:
        deadline = time.monotonic() + 1.8  # longer than the retries for a file that stays as it is
        n = 0
        while time.monotonic() < deadline:
            n += 1
            store.path.write_bytes(whole[: len(whole) // 2] + b" " * (n % 7))
            time.sleep(0.005)
        store.path.write_bytes(whole)

    saver = threading.Thread(target=keep_saving_half)
    store.path.write_bytes(whole[: len(whole) // 2])
    saver.start()
    try:
        reading = store.read()
    finally:
        stop.set()
        saver.join()
    assert reading.doc == orjson.loads(whole)


def test_a_catalog_that_stays_half_written_is_unparsable(store: CatalogStore) -> None:
    store.path.write_bytes(b'{"version": 1, "categories": [')
    with pytest.raises(Unavailable) as caught:
        store.read()
    assert caught.value.code == "catalog_unparsable"


def test_the_sidecar_lock_excludes_other_holders(store: CatalogStore) -> None:
    other = CatalogStore(store.path)
    with store.locked():
        with pytest.raises(Unavailable) as caught:
            with other.locked(timeout_s=0.1):
                pass
        assert caught.value.code == "catalog_locked"
    with other.locked(timeout_s=0.1):
        pass
    assert store.lock_path.name == ".models.json.lock"


def test_threads_writing_under_the_lock_lose_nothing(store: CatalogStore) -> None:
    def add(version_id: int) -> None:
        mine = CatalogStore(store.path)
        with mine.locked():
            reading = mine.read()
            add_entry(reading.doc, "checkpoints", "Checkpoints", entry(version_id, f"{version_id}.safetensors"))
            mine.write(reading)

    threads = [threading.Thread(target=add, args=(100 + i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    doc = parse_catalog(store.path.read_bytes())
    versions = {e["civitai_version_id"] for c in doc["categories"] for e in c["models"]}
    assert versions == {1, *range(100, 120)}
    assert doc["version"] == 21


def test_ensure_exists_creates_once(tmp_path: Path) -> None:
    store = CatalogStore(tmp_path / "loras.json")
    assert store.ensure_exists() is True
    assert read_json(store.path)["categories"] == []
    assert store.ensure_exists() is False


def test_a_catalog_half_written_in_place_is_read_again_until_whole(store: CatalogStore) -> None:
    """A program that saves with open('w') + json.dump leaves a half file for a moment: not 'unparsable'."""
    whole = orjson.dumps(catalog(entry(1, "a.safetensors"), entry(5, "e.safetensors")), option=orjson.OPT_INDENT_2)
    store.path.write_bytes(whole[: len(whole) // 2])
    finisher = threading.Timer(0.15, store.path.write_bytes, args=(whole,))
    finisher.start()
    try:
        reading = store.read()
    finally:
        finisher.join()
    assert reading.doc == orjson.loads(whole)


def _outside_save_after_the_check(store: CatalogStore, monkeypatch: pytest.MonkeyPatch, save: Callable[[], None]) -> None:
    """Let another program's save land right after the store's last check and before its swap:
    the stat of the file (when it existed) or the hash of it (when it did not)."""
    checked, looked = service.catalog.swap.current_digest, service.catalog.swap.stat_of

    def check_then_race(path: Path) -> str | None:
        seen = checked(path)
        save()
        return seen

    def look_then_race(*args: object) -> object:
        seen = looked(*args)  # type: ignore[arg-type]
        save()
        return seen

    monkeypatch.setattr(service.catalog.swap, "current_digest", check_then_race)
    monkeypatch.setattr(service.catalog.swap, "stat_of", look_then_race)


def _spliced_reading(store: CatalogStore) -> Reading:
    """A reading of the store's file as a plan for version 2 / b.safetensors gets it: the rest copied."""
    raw = store.path.read_bytes()
    text = load_text(raw, store.name, digest(raw), None).text
    assert text is not None
    reading = store.read_spliced(text, {2}, {"b.safetensors"})
    assert reading.source is not None
    return reading


def _until_quiet(path: Path) -> None:
    """Wait (polling, with a deadline) until the filesystem's clock, read off a file touched
    beside `path`, is QUIET_NS past path's last change."""
    stat = path.stat()
    last = max(stat.st_mtime_ns, stat.st_ctime_ns) + service.catalog.swap.QUIET_NS
    probe = path.with_name("clock-probe")
    deadline = time.monotonic() + 5
    try:
        while True:
            probe.touch()
            now = probe.stat()
            if max(now.st_mtime_ns, now.st_ctime_ns) >= last:
                return
            assert time.monotonic() < deadline, "the filesystem's clock did not move on in 5 s"
            time.sleep(0.001)
    finally:
        probe.unlink()


def _hashes_of_files(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files the store hashes from disk from now on (what it reads whole)."""
    hashed: list[str] = []
    real = service.catalog.swap.digest_or_none

    def recording(path: str | Path) -> str | None:
        hashed.append(str(path))
        return real(path)

    monkeypatch.setattr(service.catalog.swap, "digest_or_none", recording)
    return hashed


@pytest.mark.parametrize("read", ["whole", "spliced and quiet"])
@pytest.mark.parametrize("how", ["atomic", "in place"])
def test_an_outside_save_between_check_and_swap_is_given_back(store: CatalogStore, monkeypatch: pytest.MonkeyPatch, how: str, read: str) -> None:
    foreign = catalog(entry(1, "a.safetensors"), entry(3, "foreign.safetensors"))
    with store.locked():
        if read == "whole":
            reading = store.read()
        else:
            _until_quiet(store.path)
            reading = _spliced_reading(store)
        add_entry(reading.doc, "loras", "LoRAs", entry(2, "b.safetensors", "loras"))
        _outside_save_after_the_check(store, monkeypatch, lambda: (replace_json if how == "atomic" else write_json)(store.path, foreign))
        with pytest.raises(StaleRead):
            store.write(reading)
        reading.close()
    assert read_json(store.path) == foreign  # the outside save is what is on disk, ready for the change to be applied again
    assert not [p for p in store.path.parent.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize("quiet", [True, False])
def test_the_displaced_file_is_hashed_again_unless_the_file_was_quiet(store: CatalogStore, monkeypatch: pytest.MonkeyPatch, quiet: bool) -> None:
    """A file untouched for QUIET_NS by the filesystem's clock when the copy begins is known
    after the swap by its size and mtime (a 36 MB catalog is not read a third time). One
    written just before (adds back to back) is hashed again: a write(2) moves the mtime as it
    starts, and one still landing its bytes would be missed by its stamp."""
    if not quiet:
        monkeypatch.setattr(service.catalog.swap, "QUIET_NS", 3600 * 10**9)
    with store.locked():
        store.write(store.read())
        if quiet:
            _until_quiet(store.path)
        reading = _spliced_reading(store)
        add_entry(reading.doc, "loras", "LoRAs", entry(2, "b.safetensors", "loras"))
        hashed = _hashes_of_files(monkeypatch)
        store.write(reading)
        reading.close()
    assert len(hashed) == (0 if quiet else 1)
    assert [e["civitai_version_id"] for c in read_json(store.path)["categories"] for e in c["models"]] == [1, 2]


def test_a_catalog_whose_mtime_is_ahead_is_hashed_when_displaced(store: CatalogStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file copied with its times kept can carry an mtime ahead of the clock; a save in
    place may then leave it where it was (here: set back, as `rsync --inplace -t` does).
    Its stamp proves nothing, so the displaced file is hashed and that save given back."""
    ahead = time.time_ns() + 3600 * 10**9
    os.utime(store.path, ns=(ahead, ahead))
    original = store.path.read_bytes()
    foreign = original.replace(b'"a.safetensors"', b'"x.safetensors"')
    assert len(foreign) == len(original) and foreign != original

    def save_in_place_keeping_the_stamp() -> None:
        with open(store.path, "r+b") as handle:
            handle.write(foreign)
        os.utime(store.path, ns=(ahead, ahead))

    with store.locked():
        reading = _spliced_reading(store)
        add_entry(reading.doc, "loras", "LoRAs", entry(2, "b.safetensors", "loras"))
        _outside_save_after_the_check(store, monkeypatch, save_in_place_keeping_the_stamp)
        with pytest.raises(StaleRead):
            store.write(reading)
        reading.close()
    assert store.path.read_bytes() == foreign


def test_a_catalog_created_by_someone_else_meanwhile_is_not_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = CatalogStore(tmp_path / "loras.json")
    reading = store.read()
    assert reading.digest is None
    _outside_save_after_the_check(store, monkeypatch, lambda: write_json(store.path, catalog(entry(9, "x.safetensors"))))
    with pytest.raises(StaleRead):
        store.write(reading)
    assert read_json(store.path) == catalog(entry(9, "x.safetensors"))


def test_temp_files_of_a_killed_writer_are_removed_under_the_lock(store: CatalogStore) -> None:
    stale = [touch(store.path.with_name(f".tmp-models.json.{suffix}"), b"{}") for suffix in ("a1b2", "zz9")]
    other = touch(store.path.with_name(".tmp-loras.json.q1"), b"{}")  # another catalog's: its own lock holder cleans it
    with store.locked():
        pass
    assert not any(path.exists() for path in stale)
    assert other.exists()


def test_a_symlinked_catalog_is_never_replaced_by_a_file(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "models.json"
    target.parent.mkdir()
    write_json(target, catalog(entry(1, "a.safetensors")))
    (tmp_path / "models.json").symlink_to(target)
    store = CatalogStore(tmp_path / "models.json")
    reading = store.read()
    with pytest.raises(Unavailable) as caught:
        store.write(reading)
    assert caught.value.code == "catalog_is_link"
    assert (tmp_path / "models.json").is_symlink() and read_json(target) == catalog(entry(1, "a.safetensors"))


def test_a_document_that_cannot_be_written_back_unchanged_is_refused(store: CatalogStore) -> None:
    reading = store.read()
    reading.doc["odd"] = {1, 2}  # cannot come from a file; stands for any value no writer keeps
    before = store.path.read_bytes()
    with pytest.raises(Unavailable) as caught:
        store.write(reading)
    assert caught.value.code == "catalog_unwritable"
    assert store.path.read_bytes() == before



@pytest.mark.parametrize("how", ["atomic", "in place"])
def test_a_save_made_onto_ours_in_the_moment_it_shows_is_kept(store: CatalogStore, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """Another program saves once between our last check and our swap, and once more onto the
    file our swap put in place, before it is given back: that newest save stays in place (the
    change is then applied on top of it), and the save before it is kept as a conflict copy."""
    first = catalog(entry(1, "a.safetensors"), entry(3, "first.safetensors"))
    second = catalog(entry(1, "a.safetensors"), entry(3, "first.safetensors"), entry(4, "second.safetensors"))
    save = replace_json if how == "atomic" else write_json
    exchanges = 0
    real_rename = service.catalog.swap.rename_with

    def rename_and_race(source: object, target: object, flags: int) -> bool:
        nonlocal exchanges
        done = real_rename(source, target, flags)  # type: ignore[arg-type]
        exchanges += flags == service.catalog.swap.RENAME_EXCHANGE
        if exchanges == 1:
            save(store.path, second)  # onto our file, while it is what others read
        return done

    with store.locked():
        reading = store.read()
        add_entry(reading.doc, "loras", "LoRAs", entry(2, "b.safetensors", "loras"))
        _outside_save_after_the_check(store, monkeypatch, lambda: save(store.path, first))
        monkeypatch.setattr(service.catalog.swap, "rename_with", rename_and_race)
        with pytest.raises(StaleRead):
            store.write(reading)
    assert read_json(store.path) == second
    [aside] = [p for p in store.path.parent.iterdir() if ".conflict-" in p.name]
    assert read_json(aside) == first
    assert not [p for p in store.path.parent.iterdir() if p.name.startswith(".tmp-")]
