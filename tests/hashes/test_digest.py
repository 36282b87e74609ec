"""Hashing one real file: the SHA256 of its bytes, and a refusal when it is not the file stat'ed."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from service.hashes.digest import BLOCK, Cancelled, FileChanged, sha256_of
from service.hashes.store import FileKey


def test_the_sha256_of_a_file_larger_than_a_block(tmp_path: Path) -> None:
    data = os.urandom(BLOCK + 12345)
    path = tmp_path / "m.safetensors"
    path.write_bytes(data)
    progress = [0]
    assert sha256_of(FileKey.of(str(path), os.stat(path)), progress) == hashlib.sha256(data).hexdigest()
    assert progress == [len(data)]


def test_a_file_changed_since_it_was_stated_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"old")
    key = FileKey.of(str(path), os.stat(path))
    path.write_bytes(b"new and longer")
    with pytest.raises(FileChanged):
        sha256_of(key)


def test_a_file_replaced_by_another_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"same")
    key = FileKey.of(str(path), os.stat(path))
    other = tmp_path / "other"
    other.write_bytes(b"same")
    os.utime(other, ns=(key.mtime_ns, key.mtime_ns))
    os.replace(other, path)
    with pytest.raises(FileChanged):
        sha256_of(key)


def test_hashing_stops_at_the_next_block_when_cancelled(tmp_path: Path) -> None:
    path = tmp_path / "big.safetensors"
    path.write_bytes(os.urandom(3 * BLOCK))
    progress = [0]
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        sha256_of(FileKey.of(str(path), os.stat(path)), progress, cancel)
    assert progress == [0]
