"""The first build of the library (`Library.start`): catalogs, then the disk, then the map laid
out once, with what changes meanwhile taken in. Real folders and catalog files."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from service import workers
from service.disk.scan import FolderSource
from service.library import catalogs as catalogs_module
from service.library import library as library_module
from service.library.library import SPLICE_LIMIT, Library
from service.map.status import PRESENT

from .helpers import catalog, entry, touch, write_json


def library_at(tmp_path: Path, *files: str) -> tuple[Library, Path]:
    catalogs, models = tmp_path / "catalogs", tmp_path / "models"
    catalogs.mkdir()
    for name in files:
        touch(models / "checkpoints" / name, b"x")
    write_json(catalogs / "models.json", catalog())
    write_json(catalogs / "loras.json", catalog())
    return Library(catalogs, (FolderSource(str(models)),)), catalogs


async def start_with_a_save_during_the_scan(library: Library, save: Callable[[], Awaitable[Any]]) -> None:
    """Start, and while the first scan walks the disk, have another program save a catalog
    that the watcher takes in (the scan is held at its start until then)."""
    walk, scanning, go_on = library.folders.rescan, asyncio.Event(), asyncio.Event()

    async def held_scan(**kwargs: Any) -> tuple[set[str], bool]:
        scanning.set()
        await go_on.wait()
        return await walk(**kwargs)

    library.folders.rescan = held_scan  # type: ignore[method-assign]
    started = asyncio.create_task(library.start())
    await scanning.wait()
    await save()
    go_on.set()
    await started


async def test_a_version_saved_while_the_first_scan_runs_shows_its_file_present(tmp_path: Path) -> None:
    library, catalogs = library_at(tmp_path, "a.safetensors", "b.safetensors")
    write_json(catalogs / "models.json", catalog(entry(1, "a.safetensors")))

    async def save() -> None:
        write_json(catalogs / "models.json", catalog(entry(1, "a.safetensors"), entry(2, "b.safetensors")))
        await library.catalogs_changed(["models"])

    await start_with_a_save_during_the_scan(library, save)
    assert library.index.status(1) == PRESENT and library.index.status(2) == PRESENT
    assert b'"2":' in library.index.snapshot.body


async def test_a_catalog_rewritten_while_the_first_scan_runs_shows_every_file_present(tmp_path: Path) -> None:
    count = SPLICE_LIMIT + 100  # more than are spliced in: the watcher's reading lays the map out whole
    library, catalogs = library_at(tmp_path, *(f"m{v}.safetensors" for v in range(1, count + 1)))

    async def save() -> None:
        write_json(catalogs / "models.json", catalog(*(entry(v, f"m{v}.safetensors") for v in range(1, count + 1))))
        await library.catalogs_changed(["models"])

    await start_with_a_save_during_the_scan(library, save)
    assert [v for v in range(1, count + 1) if library.index.status(v) != PRESENT] == []


async def test_the_start_sets_its_build_aside_without_a_walk_and_later_builds_get_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalogs_module, "TRIM_AFTER_ENTRIES", 2)
    walks: list[bool] = []
    monkeypatch.setattr(workers, "set_long_lived_aside", lambda collect=True: walks.append(collect))
    library, catalogs = library_at(tmp_path, "a.safetensors")
    write_json(catalogs / "models.json", catalog(*(entry(v, f"v{v}.safetensors") for v in range(1, 6))))
    await library.start()
    assert walks and not any(walks)  # the start's own build: nothing worth a walk
    walks.clear()
    write_json(catalogs / "models.json", catalog(*(entry(v, f"w{v}.safetensors") for v in range(1, 8))))
    await library.reload_catalog("models")
    await library._rebuild()
    assert walks and all(walks)


async def test_a_start_that_fails_leaves_later_builds_their_walk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalogs_module, "TRIM_AFTER_ENTRIES", 2)
    walks: list[bool] = []
    monkeypatch.setattr(workers, "set_long_lived_aside", lambda collect=True: walks.append(collect))
    library, catalogs = library_at(tmp_path)
    write_json(catalogs / "models.json", catalog(*(entry(v, f"v{v}.safetensors") for v in range(1, 6))))

    async def broken_scan(**_kwargs: Any) -> None:
        raise OSError("the disk went away")

    library.folders.rescan = broken_scan  # type: ignore[method-assign]
    with pytest.raises(OSError):
        await library.start()
    walks.clear()
    write_json(catalogs / "models.json", catalog(*(entry(v, f"w{v}.safetensors") for v in range(1, 8))))
    await library.reload_catalog("models")
    assert walks and all(walks)


async def test_the_smaller_of_two_large_catalogs_is_cut_in_a_worker_beside_the_larger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(library_module, "BESIDE_BYTES", 1000)
    jobs: list[str] = []
    real = workers.in_worker_process

    async def recorded(function: Callable[..., Any], *args: object, **kwargs: Any) -> Any:
        jobs.append(function.__name__)
        return await real(function, *args, **kwargs)

    monkeypatch.setattr(workers, "in_worker_process", recorded)
    names = [f"v{v}.safetensors" for v in range(1, 60)]
    library, catalogs = library_at(tmp_path, *names[::2])
    write_json(catalogs / "models.json", catalog(*(entry(v, f"v{v}.safetensors") for v in range(1, 40))))
    write_json(catalogs / "loras.json", catalog(*(entry(v, f"v{v}.safetensors", "loras") for v in range(30, 60))))
    await library.start()
    assert jobs == ["cut_rows"]
    taken = library.catalogs["loras"].text
    assert taken is not None and not any(piece.content for piece in taken.pieces.values())  # the worker's pieces: no content hash of this process
    (tmp_path / "plain").mkdir()
    plain, _ = library_at(tmp_path / "plain", *names[::2])
    for name in ("models.json", "loras.json"):
        (tmp_path / "plain" / "catalogs" / name).write_bytes((catalogs / name).read_bytes())
    monkeypatch.setattr(library_module, "BESIDE_BYTES", 1 << 40)
    await plain.start()
    assert jobs == ["cut_rows"]
    assert library.catalogs["loras"].text is not None and library.catalogs["loras"].text.keys == plain.catalogs["loras"].text.keys  # type: ignore[union-attr]
    for version in range(1, 60):
        assert library.index.status(version) == plain.index.status(version) and library.index.shown(version) == plain.index.shown(version)


@pytest.mark.parametrize("worker", ["dies", "hangs"])
async def test_a_worker_that_dies_or_hangs_leaves_the_catalog_read_here(worker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(library_module, "BESIDE_BYTES", 1000)
    monkeypatch.setattr(catalogs_module, "BESIDE_WAIT_S", 0.2)

    async def broken(_function: Callable[..., Any], *_args: object, **_kwargs: Any) -> Any:
        if worker == "hangs":
            await asyncio.sleep(60)
        raise BrokenPipeError("the worker process died")

    monkeypatch.setattr(workers, "in_worker_process", broken)
    library, catalogs = library_at(tmp_path, "v5.safetensors")
    write_json(catalogs / "models.json", catalog(*(entry(v, f"v{v}.safetensors") for v in range(1, 40))))
    write_json(catalogs / "loras.json", catalog(*(entry(v, f"v{v}.safetensors", "loras") for v in range(30, 60))))
    await library.start()
    assert "loras.json could not be cut in a worker process" in caplog.text
    assert library.index.status(5) == PRESENT and library.index.shown(59) is not None and library.index.shown(59).catalog == "loras"  # type: ignore[union-attr]


async def test_a_start_stopped_while_a_worker_cuts_beside_it_stops_the_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(library_module, "BESIDE_BYTES", 1000)
    started, stopped = asyncio.Event(), asyncio.Event()

    async def slow(_function: Callable[..., Any], *_args: object, killed_if_cancelled: bool = False) -> Any:
        assert killed_if_cancelled  # a cut changes nothing: its process may be stopped where it stands
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.set()
            raise

    monkeypatch.setattr(workers, "in_worker_process", slow)
    library, catalogs = library_at(tmp_path)
    write_json(catalogs / "models.json", catalog(*(entry(v, f"v{v}.safetensors") for v in range(1, 40))))
    write_json(catalogs / "loras.json", catalog(*(entry(v, f"v{v}.safetensors", "loras") for v in range(30, 60))))
    starting = asyncio.create_task(library.start())
    await started.wait()
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    assert stopped.is_set()
