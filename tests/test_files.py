"""disk/files.write_atomically on real folders: whole files or none, and no-replace when asked."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from service.disk import files
from service.disk.files import write_atomically


def test_a_file_is_replaced_whole_with_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    path.write_bytes(b"old")
    assert write_atomically(path, b"new", mode=0o600)
    assert path.read_bytes() == b"new" and path.stat().st_mode & 0o777 == 0o600
    assert sorted(os.listdir(tmp_path)) == ["cache.json"]


def test_no_replace_keeps_what_is_there(tmp_path: Path) -> None:
    path = tmp_path / ".api_key"
    assert write_atomically(path, b"first", replace=False)
    assert not write_atomically(path, b"second", replace=False)
    assert path.read_bytes() == b"first" and sorted(os.listdir(tmp_path)) == [".api_key"]


def test_without_renameat2_or_hard_links_a_new_file_is_still_made_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_hard_links(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(files, "rename_with", lambda *_args: False)
    monkeypatch.setattr(files.os, "link", no_hard_links)
    path = tmp_path / ".api_key"
    assert write_atomically(path, b"key\n", mode=0o600, replace=False)
    assert not write_atomically(path, b"other\n", mode=0o600, replace=False)
    assert path.read_bytes() == b"key\n" and path.stat().st_mode & 0o777 == 0o600
    assert sorted(os.listdir(tmp_path)) == [".api_key"]
