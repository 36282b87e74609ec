"""What the map knows of the bytes on disk (`service/disk/known.py`): hashes by path and by name."""

from __future__ import annotations

import pytest

from service.disk.known import ByPath, KnownHashes

A, B = "a" * 64, "b" * 64


def test_the_hashed_files_of_some_names_follow_every_change() -> None:
    known = KnownHashes()
    known.set_hash("/m/loras/x.safetensors", A)
    known.set_hash("/m/loras/sdxl/x.safetensors", B)
    known.set_hash("/m/checkpoints/y.safetensors", A)
    assert sorted(known.by_path.named({"x.safetensors", "z.safetensors"})) == ["/m/loras/sdxl/x.safetensors", "/m/loras/x.safetensors"]
    known.set_hash("/m/loras/x.safetensors", B)  # hashed again: still one path under its name
    assert sorted(known.by_path.named({"x.safetensors"})) == ["/m/loras/sdxl/x.safetensors", "/m/loras/x.safetensors"]
    known.drop_path("/m/loras/sdxl/x.safetensors")
    assert known.by_path.named({"x.safetensors"}) == ["/m/loras/x.safetensors"]
    known.drop_path("/m/loras/x.safetensors")
    known.drop_path("/m/loras/x.safetensors")  # dropped twice: nothing left, nothing broken
    assert known.by_path.named({"x.safetensors"}) == [] and known.by_path.named({"y.safetensors"}) == ["/m/checkpoints/y.safetensors"]
    assert set(known.by_path) == {"/m/checkpoints/y.safetensors"}


def test_a_table_by_path_finds_its_paths_by_file_name() -> None:
    previews: ByPath[str] = ByPath()
    previews["/m/loras/x.safetensors"] = "x.png"
    previews["/m/loras/sdxl/x.safetensors"] = "x.preview.png"
    previews["/m/loras/x.safetensors"] = "x.jpg"  # another image: still one path
    previews["/m/checkpoints/y.safetensors"] = "y.png"
    assert sorted(previews.named({"x.safetensors", "z.safetensors"})) == ["/m/loras/sdxl/x.safetensors", "/m/loras/x.safetensors"]
    assert previews.pop("/m/loras/sdxl/x.safetensors") == "x.preview.png" and previews.pop("/m/nowhere.safetensors", None) is None
    del previews["/m/loras/x.safetensors"]
    assert previews.named({"x.safetensors"}) == [] and previews.named({"y.safetensors"}) == ["/m/checkpoints/y.safetensors"]
    assert dict(previews) == {"/m/checkpoints/y.safetensors": "y.png"}


def test_a_table_by_path_refuses_changes_its_name_index_would_miss() -> None:
    table: ByPath[str] = ByPath()
    table["/m/a.safetensors"] = "a.png"
    for change in (lambda: table.update({"/m/b.safetensors": "b.png"}), lambda: table.setdefault("/m/b.safetensors", "b.png"), table.clear, table.popitem):
        with pytest.raises(TypeError):
            change()
    with pytest.raises(KeyError):
        table.pop("/m/absent.safetensors")
    assert table.named({"a.safetensors"}) == ["/m/a.safetensors"] and dict(table) == {"/m/a.safetensors": "a.png"}
