"""What the map knows of the bytes on disk (`service/disk/known.py`): hashes by path and by name."""

from __future__ import annotations

from service.disk.known import KnownHashes

A, B = "a" * 64, "b" * 64


def test_the_hashed_files_of_some_names_follow_every_change() -> None:
    known = KnownHashes()
    known.set_hash("/m/loras/x.safetensors", A)
    known.set_hash("/m/loras/sdxl/x.safetensors", B)
    known.set_hash("/m/checkpoints/y.safetensors", A)
    assert sorted(known.paths_named({"x.safetensors", "z.safetensors"})) == ["/m/loras/sdxl/x.safetensors", "/m/loras/x.safetensors"]
    known.set_hash("/m/loras/x.safetensors", B)  # hashed again: still one path under its name
    assert sorted(known.paths_named({"x.safetensors"})) == ["/m/loras/sdxl/x.safetensors", "/m/loras/x.safetensors"]
    known.drop_path("/m/loras/sdxl/x.safetensors")
    assert known.paths_named({"x.safetensors"}) == ["/m/loras/x.safetensors"]
    known.drop_path("/m/loras/x.safetensors")
    known.drop_path("/m/loras/x.safetensors")  # dropped twice: nothing left, nothing broken
    assert known.paths_named({"x.safetensors"}) == [] and known.paths_named({"y.safetensors"}) == ["/m/checkpoints/y.safetensors"]
    assert set(known.by_path) == {"/m/checkpoints/y.safetensors"}
