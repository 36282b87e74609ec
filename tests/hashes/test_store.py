"""The hash store on real SQLite files: a file is found by its key or, after a remount, by its
path; CivitAI's answers survive; a corrupt or foreign database is set aside, never fatal."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from service.hashes.store import APPLICATION_ID, FileKey, HashStore, Identity

SHA = "ab" * 32


def key(path: Path, *, dev: int | None = None) -> FileKey:
    found = FileKey.of(str(path), os.stat(path))
    return found if dev is None else FileKey(dev, found.ino, found.size, found.mtime_ns, found.path)


def opened(path: Path) -> HashStore:
    store = HashStore(path)
    store.open()
    return store


def test_a_hashed_file_is_known_until_it_changes(tmp_path: Path) -> None:
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"x" * 100)
    store = opened(tmp_path / "hashes.sqlite3")
    assert store.known_hashes([key(model)]) == {}
    store.remember_hash(key(model), SHA)
    store.close()
    store = opened(tmp_path / "hashes.sqlite3")  # survives a restart
    assert store.known_hashes([key(model)]) == {str(model): SHA}
    model.write_bytes(b"y" * 101)
    assert store.known_hashes([key(model)]) == {}


def test_a_volume_mounted_again_keeps_its_hashes_by_path(tmp_path: Path) -> None:
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"x" * 100)
    store = opened(tmp_path / "hashes.sqlite3")
    store.remember_hash(key(model), SHA)
    remounted = key(model, dev=key(model).dev + 1)  # same path, size and mtime; a new device number
    assert store.known_hashes([remounted]) == {str(model): SHA}
    moved_elsewhere = FileKey(remounted.dev, remounted.ino, remounted.size, remounted.mtime_ns, str(tmp_path / "other"))
    assert store.known_hashes([moved_elsewhere]) == {str(tmp_path / "other"): SHA}, "by its new key now"


def test_identities_round_trip(tmp_path: Path) -> None:
    store = opened(tmp_path / "hashes.sqlite3")
    known = Identity(SHA, 7, 70, "Model", "v1", "LORA", "SDXL 1.0", b'{"id":7}', 1.0, None)
    unknown = Identity("cd" * 32, checked_at=2.0, retry_at=86402.0)
    store.remember_identities([known, unknown])
    assert store.identities([SHA, "cd" * 32, "ef" * 32]) == {SHA: known, "cd" * 32: unknown}
    assert store.counts() == (0, 1)


def test_a_corrupt_database_is_set_aside_and_a_new_one_made(tmp_path: Path) -> None:
    path = tmp_path / "hashes.sqlite3"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 5000)
    store = opened(path)
    store.remember_hash(FileKey(1, 2, 3, 4, "/m"), SHA)
    assert [p.name.split("-")[0] for p in tmp_path.glob("hashes.sqlite3.unusable-*")] == ["hashes.sqlite3.unusable"]
    assert store.counts() == (1, 0)


def test_another_programs_database_is_not_used(tmp_path: Path) -> None:
    path = tmp_path / "hashes.sqlite3"
    with sqlite3.connect(path) as other:
        other.execute("CREATE TABLE notes (text TEXT)")
        other.execute("INSERT INTO notes VALUES ('mine')")
    store = opened(path)
    assert store.counts() == (0, 0)
    kept = next(tmp_path.glob("hashes.sqlite3.unusable-*"))
    with sqlite3.connect(kept) as other:
        assert other.execute("SELECT text FROM notes").fetchall() == [("mine",)]


def test_the_database_is_private_to_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "hashes.sqlite3"
    opened(path)
    assert path.stat().st_mode & 0o077 == 0


def test_a_whole_library_is_looked_up_in_one_scan_with_the_same_answers(tmp_path: Path) -> None:
    store = opened(tmp_path / "hashes.sqlite3")
    keys = [FileKey(1, ino, 10, 20, f"/m/{ino}") for ino in range(2500)]
    store.remember_hashes([(key, f"{key.ino:064x}") for key in keys[:2000]])
    changed = FileKey(1, 5, 11, 20, "/m/5")  # grown since it was hashed
    remounted = FileKey(2, 7, 10, 20, "/m/7")  # a new device number, the same path, size and mtime
    asked = [*keys[8:], changed, remounted]
    found = store.known_hashes(asked)
    assert len(found) == 1992 + 1 and found["/m/7"] == f"{7:064x}" and "/m/5" not in found
    assert not any(key.path in found for key in keys[2000:]), "never hashed"


def test_our_store_of_another_schema_version_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "hashes.sqlite3"
    with sqlite3.connect(path) as older:  # ours (the application id), but laid out by another version of the service
        older.execute(f"PRAGMA application_id={APPLICATION_ID}")
        older.execute("PRAGMA user_version=99")
        older.execute("CREATE TABLE files (path TEXT, digest BLOB)")
    store = opened(path)
    store.remember_hash(FileKey(1, 2, 3, 4, "/m"), SHA)
    assert store.counts() == (1, 0)
    assert len(list(tmp_path.glob("hashes.sqlite3.unusable-*"))) == 1


def test_a_store_another_process_holds_is_not_set_aside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("service.hashes.store.BUSY_TIMEOUT_S", 0.05)
    path = tmp_path / "hashes.sqlite3"
    opened(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=DELETE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(sqlite3.OperationalError):
            HashStore(path).open()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not list(tmp_path.glob("hashes.sqlite3.unusable-*"))
    assert opened(path).counts() == (0, 0)
