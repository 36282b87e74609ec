"""service.disk.presence on real folders: which files count as models, which as other programs' downloads.

The reference is ComfyUI's `folder_paths.py`: `get_filename_list_` lists what
`filter_files_extensions` keeps (the extension after `os.path.splitext`, lower-cased, in
`supported_pt_extensions`) of what `recursive_search` finds, skipping `.git` folders only.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from service.disk.names import is_model_file
from service.disk.presence import Presence
from service.disk.scan import MAX_DEPTH, FolderSource, PathFact, probe, scan_sources
from service.http.appkeys import LIBRARY

from .conftest import StartClient
from .helpers import touch


def found_names(root: Path) -> dict[str, str]:
    scan = scan_sources([FolderSource(str(root))])
    return {name: logical for names in scan.dirs.values() for name, logical in names.items()}


@pytest.mark.parametrize(
    ("name", "listed"),
    [
        ("a.safetensors", True),
        ("b.CKPT", True),
        ("c.Pt", True),
        ("d.pt2", True),
        ("e.bin", True),
        ("f.pth", True),
        ("g.pkl", True),
        ("h.sft", True),
        ("i.gguf", True),  # the GGUF loaders (city96/ComfyUI-GGUF) list these
        ("j.tar.safetensors", True),
        (".hidden.safetensors", True),  # splitext keeps the extension of a dotted name
        (".safetensors", False),  # splitext: no extension at all, ComfyUI does not list it
        ("..pt", False),
        ("notes.txt", False),
        ("cover.png", False),
        ("meta.civitai.info", False),
        ("model.safetensors.json", False),
        ("model.onnx", False),
        ("archive.zip", False),
        ("safetensors", False),
    ],
)
def test_model_files_are_what_filter_files_extensions_keeps(tmp_path: Path, name: str, listed: bool) -> None:
    """folder_paths.filter_files_extensions: os.path.splitext(a)[-1].lower() in supported_pt_extensions."""
    touch(tmp_path / "loras" / name, b"x")
    assert is_model_file(name) is listed
    assert (name in found_names(tmp_path)) is listed


def test_only_git_folders_are_skipped(tmp_path: Path) -> None:
    """recursive_search(..., excluded_dir_names=[".git"]): other hidden folders are listed by
    ComfyUI, so their models can be loaded and count as present."""
    touch(tmp_path / "loras" / ".git" / "objects" / "in_git.safetensors")
    touch(tmp_path / "loras" / ".cache" / "in_cache.safetensors")
    touch(tmp_path / "loras" / ".styles" / "in_hidden.safetensors")
    assert found_names(tmp_path) == {"in_cache.safetensors": "loras/.cache", "in_hidden.safetensors": "loras/.styles"}


def test_a_probe_inside_a_git_folder_sees_nothing(tmp_path: Path) -> None:
    sources = (FolderSource(str(tmp_path)),)
    inside = touch(tmp_path / "loras" / ".git" / "late.safetensors")
    assert probe(sources, [str(inside), str(inside.parent)]) == []


@pytest.mark.parametrize(
    ("files", "downloading"),
    [
        (["model.safetensors.part"], {"model.safetensors"}),
        (["model.SAFETENSORS.crdownload"], {"model.SAFETENSORS"}),
        (["model.gguf.download"], {"model.gguf"}),
        (["model.safetensors", "model.safetensors.aria2"], {"model.safetensors"}),  # aria2 writes the final name
        (["notes.txt.part"], set()),  # a download of notes is not a model download
        (["cover.png.crdownload"], set()),
        (["notes.txt", "notes.txt.aria2"], set()),
        ([".part"], set()),
    ],
)
def test_downloads_by_other_programs_count_only_for_model_files(tmp_path: Path, files: list[str], downloading: set[str]) -> None:
    for name in files:
        touch(tmp_path / "loras" / name, b"xyz")
    scan = scan_sources([FolderSource(str(tmp_path))])
    assert {name for partial in scan.partials.values() for name in partial} == downloading
    assert not any(scan.dirs.values())  # none of them is a complete model file


def test_a_probed_non_model_file_changes_nothing(tmp_path: Path) -> None:
    sources = (FolderSource(str(tmp_path)),)
    presence = Presence(sources)
    presence.replace(scan_sources(sources))
    paths = [touch(tmp_path / "loras" / name, b"x") for name in ("notes.txt", "notes.txt.part", "x.safetensors")]
    assert presence.apply(probe(sources, [str(path) for path in paths])) == {"x.safetensors"}
    assert presence.is_present("x.safetensors", "loras")
    assert not presence.is_present("notes.txt", "loras") and presence.partial("notes.txt", "loras") is None


def test_folders_deeper_than_the_limit_are_named_not_silently_skipped(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*(f"d{level}" for level in range(MAX_DEPTH + 2)))
    touch(deep / "buried.safetensors")
    touch(tmp_path / "d0" / "shallow.safetensors")
    scan = scan_sources([FolderSource(str(tmp_path))])
    assert "shallow.safetensors" in found_names(tmp_path) and "buried.safetensors" not in found_names(tmp_path)
    assert scan.too_deep == [str(tmp_path.joinpath(*(f"d{level}" for level in range(MAX_DEPTH + 1))))]


async def test_a_folder_cut_for_depth_is_named_once(start: StartClient, models_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    deep = models_dir.joinpath("checkpoints", *(f"d{level}" for level in range(MAX_DEPTH + 2)))
    touch(deep / "buried.safetensors")
    with caplog.at_level(logging.WARNING, logger="service.library.folders"):
        client = await start()
        library = client.app[LIBRARY]
        await library.reconcile()
        await library.reconcile()
    cut = [record.getMessage() for record in caplog.records if "folders deep" in record.getMessage()]
    assert len(cut) == 1 and f"{MAX_DEPTH} folders deep" in cut[0]


def test_the_files_of_some_names_are_every_complete_file_of_them_and_no_other(tmp_path: Path) -> None:
    sources = (FolderSource(str(tmp_path)),)
    for path in ("loras/a.safetensors", "loras/sdxl/a.safetensors", "checkpoints/b.safetensors", "loras/c.safetensors.part"):
        touch(tmp_path / path, b"x")
    presence = Presence(sources)
    presence.replace(scan_sources(sources))
    named = presence.files_named({"a.safetensors", "c.safetensors", "absent.safetensors"})
    assert sorted(named) == [(str(tmp_path / "loras" / "a.safetensors"), "loras"), (str(tmp_path / "loras" / "sdxl" / "a.safetensors"), "loras/sdxl")]
    assert sorted(presence.files_named({"a.safetensors"})) == sorted(path for path in presence.files() if path[0].endswith("/a.safetensors"))


def test_a_full_scan_into_an_empty_table_names_every_file_and_a_second_only_what_moved(tmp_path: Path) -> None:
    sources = (FolderSource(str(tmp_path)),)
    for path in ("loras/a.safetensors", "loras/sdxl/a.safetensors", "checkpoints/b.safetensors", "loras/c.safetensors.part"):
        touch(tmp_path / path, b"x")
    presence = Presence(sources)
    assert presence.replace(scan_sources(sources)) == {"a.safetensors", "b.safetensors", "c.safetensors"}
    assert sorted(presence.files()) == sorted(
        [
            (str(tmp_path / "loras" / "a.safetensors"), "loras"),
            (str(tmp_path / "loras" / "sdxl" / "a.safetensors"), "loras/sdxl"),
            (str(tmp_path / "checkpoints" / "b.safetensors"), "checkpoints"),
        ]
    )
    assert presence.is_present("a.safetensors", "loras") and presence.is_present("a.safetensors", "loras/sdxl")
    assert presence.is_present("b.safetensors", "checkpoints") and not presence.is_present("b.safetensors", "loras")
    (tmp_path / "checkpoints" / "b.safetensors").unlink()
    touch(tmp_path / "checkpoints" / "d.safetensors", b"x")
    assert presence.replace(scan_sources(sources)) == {"b.safetensors", "d.safetensors"}
    assert len(presence) == 3


def test_a_name_in_two_places_then_one_is_found_where_it_still_is(tmp_path: Path) -> None:
    sources = (FolderSource(str(tmp_path)),)
    for path in ("loras/a.safetensors", "loras/sdxl/a.safetensors"):
        touch(tmp_path / path, b"x")
    presence = Presence(sources)
    presence.replace(scan_sources(sources))
    assert presence.folders_of("a.safetensors") == ["loras", "loras/sdxl"]
    (tmp_path / "loras" / "a.safetensors").unlink()
    assert presence.apply([PathFact(str(tmp_path / "loras" / "a.safetensors"), "gone")]) == {"a.safetensors"}
    assert presence.folders_of("a.safetensors") == ["loras/sdxl"]
    assert presence.paths_of("a.safetensors", "loras") == [str(tmp_path / "loras" / "sdxl" / "a.safetensors")]
    assert not presence.is_present("a.safetensors", "checkpoints") and presence.is_present("a.safetensors", "loras/sdxl")
    touch(tmp_path / "checkpoints" / "a.safetensors", b"x")
    assert presence.apply([PathFact(str(tmp_path / "checkpoints" / "a.safetensors"), "file", complete=True)]) == {"a.safetensors"}
    assert presence.folders_of("a.safetensors") == ["checkpoints", "loras/sdxl"]
    (tmp_path / "loras" / "sdxl" / "a.safetensors").unlink()
    presence.apply([PathFact(str(tmp_path / "loras" / "sdxl" / "a.safetensors"), "gone")])
    assert presence.files_named({"a.safetensors"}) == [(str(tmp_path / "checkpoints" / "a.safetensors"), "checkpoints")]
    assert presence.replace(scan_sources(sources)) == set()  # the tables as a full scan leaves them
