"""The watcher keeps the map true on real folders: downloads, deletes, catalog edits, bad files."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from service.disk.scan import FolderSource, Scan
from service.http.appkeys import LIBRARY, WATCHER

from .conftest import StartClient, get_map
from .helpers import (
    AUTH,
    catalog,
    entry,
    eventually,
    replace_json,
    status_of,
    touch,
    until,
    write_json,
)


def status_is(client: TestClient, version_id: int, status: str | None):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        item = (await get_map(client))["by_version"].get(str(version_id))
        return (item or {}).get("status") == status if status else item is None

    return check


@pytest.fixture
def one_checkpoint(catalog_dir: Path) -> None:
    write_json(catalog_dir / "models.json", catalog(entry(1, "one.safetensors", "checkpoints"), entry(2, "two.safetensors", "loras")))


@pytest.fixture(params=[False, True], ids=["inotify", "polling"])
def polling(request: pytest.FixtureRequest) -> bool:
    return request.param


@pytest.mark.usefixtures("one_checkpoint")
async def test_a_finished_download_becomes_present_and_a_delete_missing(start: StartClient, models_dir: Path, polling: bool) -> None:
    client = await start(watch_force_polling=polling, watch_poll_interval_ms=50)
    assert (await get_map(client))["by_version"]["1"]["status"] == "missing"
    part = touch(models_dir / "checkpoints" / "one.safetensors.part", b"x" * 1024)
    final = part.with_name("one.safetensors")
    os.rename(part, final)
    await eventually(status_is(client, 1, "present"), what="download landing")
    final.unlink()
    await eventually(status_is(client, 1, "missing"), what="file deleted")


@pytest.mark.usefixtures("one_checkpoint")
async def test_aria2_control_file_holds_presence_until_it_goes(start: StartClient, models_dir: Path) -> None:
    client = await start()
    control = touch(models_dir / "loras" / "two.safetensors.aria2")
    touch(models_dir / "loras" / "two.safetensors", b"partial")
    touch(models_dir / "checkpoints" / "one.safetensors")  # a marker change we can wait on
    await eventually(status_is(client, 1, "present"))
    shown = (await get_map(client))["by_version"]["2"]
    assert (shown["status"], shown["dl_bytes"]) == ("downloading", len(b"partial"))  # another program's download
    control.unlink()
    await eventually(status_is(client, 2, "present"), what="aria2 download finishing")


@pytest.mark.usefixtures("one_checkpoint")
async def test_folders_moved_in_and_out_are_seen(start: StartClient, models_dir: Path, tmp_path: Path) -> None:
    client = await start()
    outside = tmp_path / "elsewhere" / "batch"
    touch(outside / "one.safetensors")
    os.rename(outside, models_dir / "checkpoints" / "batch")
    await eventually(status_is(client, 1, "present"), what="a folder moved in")
    os.rename(models_dir / "checkpoints" / "batch", tmp_path / "elsewhere" / "back")
    await eventually(status_is(client, 1, "missing"), what="a folder moved out")
    touch(models_dir / "loras" / "deep" / "two.safetensors")
    await eventually(status_is(client, 2, "present"))
    shutil.rmtree(models_dir / "loras" / "deep")
    await eventually(status_is(client, 2, "missing"), what="a folder deleted")


@pytest.mark.usefixtures("one_checkpoint")
async def test_catalog_replaced_atomically_by_another_program(start: StartClient, catalog_dir: Path, polling: bool) -> None:
    client = await start(watch_force_polling=polling, watch_poll_interval_ms=50)
    replace_json(catalog_dir / "models.json", catalog(entry(1, "one.safetensors"), entry(3, "three.safetensors")))
    await eventually(status_is(client, 3, "missing"), what="an atomic replace")
    replace_json(catalog_dir / "models.json", catalog(entry(3, "three.safetensors")))
    await eventually(status_is(client, 1, None), what="a second atomic replace")


@pytest.mark.usefixtures("one_checkpoint")
async def test_catalog_edited_in_place(start: StartClient, catalog_dir: Path) -> None:
    client = await start()
    write_json(catalog_dir / "loras.json", catalog(entry(9, "nine.safetensors", "loras"), category="sdxl_loras"))
    await eventually(status_is(client, 9, "missing"), what="an in-place edit")
    assert (await get_map(client))["by_version"]["9"]["catalog"] == "loras"


@pytest.mark.usefixtures("one_checkpoint")
async def test_corrupt_catalog_keeps_last_good_index_and_recovers(start: StartClient, catalog_dir: Path) -> None:
    client = await start()
    good = await get_map(client)
    broken = b'{"version": 2, "categories": [ {"id": "checkpoints", "models": [\n'
    (catalog_dir / "models.json").write_bytes(broken)

    async def not_ready() -> bool:
        return (await client.get("/ready")).status == 503

    await eventually(not_ready, what="readiness reporting the broken catalog")
    ready = await (await client.get("/ready")).json()
    assert ready["catalogs"]["models"]["state"] == "unusable"
    assert "JSON" in ready["catalogs"]["models"]["reason"]
    assert await get_map(client) == good
    assert (catalog_dir / "models.json").read_bytes() == broken  # never rewritten
    write_json(catalog_dir / "models.json", catalog(entry(1, "one.safetensors"), entry(5, "five.safetensors")))
    await eventually(status_is(client, 5, "missing"), what="recovery")
    assert (await client.get("/ready")).status == 200


@pytest.mark.usefixtures("one_checkpoint")
async def test_wrong_shape_counts_as_unparsable(start: StartClient, catalog_dir: Path) -> None:
    client = await start()
    write_json(catalog_dir / "models.json", {"categories": "oops"})

    async def not_ready() -> bool:
        return (await client.get("/ready")).status == 503

    await eventually(not_ready)
    assert (await get_map(client))["by_version"]["1"]["file"] == "one.safetensors"


@pytest.mark.usefixtures("one_checkpoint")
async def test_reconcile_catches_what_events_missed(start: StartClient, models_dir: Path) -> None:
    client = await start()
    library = client.app[LIBRARY]
    stop_watching = client.app[WATCHER].state  # the watcher keeps running; the scan must agree with it
    library.presence.replace(Scan())  # forget everything, as if every event had been lost
    touch(models_dir / "checkpoints" / "one.safetensors")
    await library.reconcile()
    assert (await get_map(client))["by_version"]["1"]["status"] == "present"
    assert stop_watching == "running"


@pytest.mark.usefixtures("one_checkpoint")
async def test_large_catalogs_are_parsed_in_a_worker_process(start: StartClient, catalog_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import service.workers

    monkeypatch.setattr(service.workers, "PROCESS_BYTES", 0)  # every catalog counts as large
    client = await start()
    assert (await get_map(client))["by_version"]["1"]["status"] == "missing"
    replace_json(catalog_dir / "models.json", catalog(entry(1, "one.safetensors"), entry(4, "four.safetensors", model_id=44)))
    await eventually(status_is(client, 4, "missing"), what="a reload parsed in a worker process")
    assert (await get_map(client, models="44"))["by_model"] == {"44": [4]}
    (catalog_dir / "models.json").write_bytes(b"{ broken")

    async def not_ready() -> bool:
        return (await client.get("/ready")).status == 503

    await eventually(not_ready, what="a parse error reported from the worker")


@pytest.mark.usefixtures("one_checkpoint")
async def test_a_reformatted_catalog_keeps_the_etag(start: StartClient, catalog_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="service")
    client = await start()
    before = (await client.get("/api/admin/models/civitai-map", headers=AUTH)).headers["ETag"]
    doc = orjson.loads((catalog_dir / "models.json").read_bytes())
    (catalog_dir / "models.json").write_bytes(orjson.dumps(doc))  # same content, other bytes

    async def reloaded() -> bool:
        return any("models.json loaded" in r.getMessage() for r in caplog.records if r.created > started)

    started = time.time()
    await eventually(reloaded, what="the reformatted catalog re-read")
    assert (await client.get("/api/admin/models/civitai-map", headers=AUTH)).headers["ETag"] == before


async def test_another_programs_download_shows_progress_at_most_once_a_second(start: StartClient, models_dir: Path, catalog_dir: Path) -> None:
    write_json(catalog_dir / "models.json", catalog(entry(9, "big.safetensors", "loras", size_gb=0.001)))
    client = await start()
    part = models_dir / "loras" / "big.safetensors.part"
    with open(part, "wb") as handle:
        handle.write(b"x" * 1000)
        handle.flush()

        async def shows(size: int) -> bool:
            shown = (await get_map(client))["by_version"]["9"]
            return shown["status"] == "downloading" and shown["dl_bytes"] == size

        await eventually(lambda: shows(1000), what="a browser's .part in the map")
        assert (await get_map(client))["by_version"]["9"]["dl_total"] == 1_000_000  # from size_gb
        etags = set()
        for _ in range(20):  # grows in many small writes, each an event
            handle.write(b"x" * 1000)
            handle.flush()
            etags.add((await client.get("/api/admin/models/civitai-map", headers=AUTH)).headers["ETag"])
            await asyncio.sleep(0.02)
        await eventually(lambda: shows(21000), what="the last size shown once the second is up")
    assert len(etags) <= 3  # the map moved about once a second, not once per write
    os.rename(part, models_dir / "loras" / "big.safetensors")
    await eventually(status_is(client, 9, "present"), what="the finished download")


@pytest.mark.parametrize("what", ["root", "top folder"])
async def test_a_models_folder_deleted_and_recreated_converges_in_seconds(start: StartClient, models_dir: Path, catalog_dir: Path, what: str) -> None:
    write_json(catalog_dir / "models.json", catalog(entry(21, "back.safetensors", "loras")))
    touch(models_dir / "loras" / "back.safetensors")
    client = await start(reconcile_interval_s=3600)  # the periodic safety net is out of reach
    await eventually(status_is(client, 21, "present"))
    gone = models_dir if what == "root" else models_dir / "loras"
    shutil.rmtree(gone)
    # A root that goes is offline (an unmounted volume looks the same): what only it could hold is unavailable.
    expected = "unavailable" if what == "root" else "missing"
    await eventually(status_is(client, 21, expected), timeout=10, what=f"the {what} gone")
    touch(models_dir / "loras" / "back.safetensors")
    await eventually(status_is(client, 21, "present"), timeout=10, what=f"the {what} back")
    touch(models_dir / "loras" / "later.safetensors")  # and it is watched again, not just rescanned once
    write_json(catalog_dir / "models.json", catalog(entry(21, "back.safetensors", "loras"), entry(22, "later.safetensors", "loras")))
    await eventually(status_is(client, 22, "present"), timeout=10, what="a file in the recreated folder")


async def test_a_root_that_appears_after_start_is_watched(start: StartClient, catalog_dir: Path, tmp_path: Path) -> None:
    late = tmp_path / "late_mount"
    (tmp_path / "extra.yaml").write_text(f"late:\n  loras: {late}\n")
    write_json(catalog_dir / "models.json", catalog(entry(23, "mounted.safetensors", "loras")))
    client = await start(extra_model_paths=tmp_path / "extra.yaml", reconcile_interval_s=3600)
    late.mkdir()  # the network volume is mounted now
    await eventually(lambda: watched_again(client), timeout=10, what="the late root watched")
    touch(late / "mounted.safetensors")
    await eventually(status_is(client, 23, "present"), timeout=10, what="a file on the late root")


async def watched_again(client: TestClient) -> bool:
    return client.app[WATCHER].live.is_set() and any("late_mount" in root for root in client.app[WATCHER].roots)


async def test_a_burst_that_may_have_overflowed_the_queue_rescans(
    start: StartClient, models_dir: Path, catalog_dir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An inotify overflow drops events silently (watchfiles does not report it): a burst large
    enough to be one is answered with a full rescan. Here a small limit stands in for the 2,048
    derived from the queue's 16,384; tests/test_inotify_overflow.py makes real overflows."""
    caplog.set_level(logging.INFO, logger="service")
    write_json(catalog_dir / "models.json", catalog(entry(24, "f0.safetensors", "loras")))
    client = await start(reconcile_interval_s=3600)
    client.app[WATCHER].suspicious_batch = 20
    library = client.app[LIBRARY]
    rescans = 0
    real = library.reconcile

    async def counted() -> bool:
        nonlocal rescans
        rescans += 1
        return await real()

    monkeypatch.setattr(library, "reconcile", counted)
    for i in range(40):
        touch(models_dir / "loras" / f"f{i}.safetensors")

    async def rescanned() -> bool:
        return rescans > 0 and any("events may have been lost" in r.getMessage() for r in caplog.records)

    await eventually(rescanned, timeout=10, what="a rescan after the burst")
    assert (await get_map(client))["by_version"]["24"]["status"] == "present"


async def test_a_symlinked_alias_inside_a_root_sees_deletions(start: StartClient, models_dir: Path, catalog_dir: Path) -> None:
    (models_dir / "unet").symlink_to(models_dir / "diffusion_models")  # a common setup: both names, one folder
    real = touch(models_dir / "diffusion_models" / "flux.safetensors")
    write_json(catalog_dir / "models.json", catalog(entry(1, "flux.safetensors", "diffusion_models")))
    client = await start()
    assert await status_of(client, 1)() == "present"
    real.unlink()
    await until(client, 1, "missing", "a deletion seen through both paths")


async def test_a_symlinked_folder_made_after_start_is_watched(start: StartClient, models_dir: Path, catalog_dir: Path, tmp_path: Path) -> None:
    write_json(catalog_dir / "models.json", catalog(entry(2, "far.safetensors", "loras")))
    client = await start(reconcile_interval_s=3600)
    drive = tmp_path / "drive"
    drive.mkdir()
    (models_dir / "loras" / "drive").symlink_to(drive)

    async def rewatched() -> bool:
        return client.app[WATCHER].live.is_set() and not client.app[WATCHER].rewatch_requested and client.app[LIBRARY].links > 0

    await eventually(rewatched, what="the watches set up again")
    touch(drive / "far.safetensors")
    await until(client, 2, "present", "a file landing inside the new link's target")


async def test_a_folder_with_a_download_like_name_is_followed(start: StartClient, models_dir: Path, catalog_dir: Path) -> None:
    write_json(catalog_dir / "models.json", catalog(entry(3, "packed.safetensors", "loras")))
    client = await start(reconcile_interval_s=3600)
    staging = models_dir / "loras" / "pack.tmp"
    touch(staging / "packed.safetensors")
    await until(client, 3, "present", "a file in a pack.tmp folder")  # ComfyUI would load it too
    os.rename(staging, models_dir / "loras" / "pack")
    (models_dir / "loras" / "pack" / "packed.safetensors").unlink()
    await until(client, 3, "missing", "the file deleted after the folder was renamed")


async def test_reconcile_rereads_catalogs_whose_events_were_lost(start: StartClient, catalog_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_json(catalog_dir / "models.json", catalog(entry(8, "eight.safetensors")))
    client = await start()

    async def lose(_batch: object) -> None:  # every event from now on is lost
        return None

    monkeypatch.setattr(client.app[WATCHER], "_handle", lose)
    monkeypatch.setattr(client.app[WATCHER], "polling", False)
    replace_json(catalog_dir / "models.json", catalog(entry(8, "eight.safetensors"), entry(9, "nine.safetensors")))
    await client.app[LIBRARY].reconcile()
    assert await status_of(client, 9)() == "missing"


async def test_two_rescans_at_once_do_not_undo_a_change_seen_between_them(
    start: StartClient, models_dir: Path, catalog_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rescan asked for while another runs (the watcher's catch-up after setting up its watches
    again, beside the coalesced one) must not swap in the older scan last, forgetting a file
    that landed between the two."""
    import threading

    import service.library.folders

    write_json(catalog_dir / "models.json", catalog(entry(31, "between.safetensors", "loras")))
    client = await start(reconcile_interval_s=3600)
    library = client.app[LIBRARY]
    real_scan = service.library.folders.scan_sources
    first_scanned, release_first = threading.Event(), threading.Event()
    scans = 0

    def held_first_scan(sources: Iterable[FolderSource], scan: Scan | None = None) -> Scan:
        nonlocal scans
        scans += 1
        found = real_scan(sources, scan)
        if scans == 1:  # the first rescan has looked, and is held before it swaps its view in
            first_scanned.set()
            release_first.wait(10)
        return found

    monkeypatch.setattr(service.library.folders, "scan_sources", held_first_scan)
    first = asyncio.create_task(library.reconcile())
    async def first_held() -> bool:
        return first_scanned.is_set()

    await eventually(first_held, what="the first rescan's scan")
    touch(models_dir / "loras" / "between.safetensors")
    await until(client, 31, "present", "the file landing between the two scans")
    second = asyncio.create_task(library.reconcile())

    async def second_finished_or_waiting() -> bool:
        lock = getattr(library, "_reconcile_lock", None)
        return second.done() or (lock is not None and lock.locked() and scans == 1)

    await eventually(second_finished_or_waiting, what="the second rescan done or waiting its turn")
    release_first.set()
    await asyncio.gather(first, second)
    assert await status_of(client, 31)() == "present"


async def test_a_models_folder_swapped_for_another_by_renames_converges(start: StartClient, models_dir: Path, catalog_dir: Path, tmp_path: Path) -> None:
    """`mv models models.old && mv models.new models`: the watches follow the old folder away, so
    the new one is watched again and rescanned, and later files in it are seen."""
    write_json(catalog_dir / "models.json", catalog(entry(51, "old.safetensors", "loras"), entry(52, "new.safetensors", "loras"), entry(53, "after.safetensors", "loras")))
    touch(models_dir / "loras" / "old.safetensors")
    prepared = touch(tmp_path / "models.new" / "loras" / "new.safetensors").parent.parent
    client = await start(reconcile_interval_s=3600)
    os.rename(models_dir, tmp_path / "models.old")
    os.rename(prepared, models_dir)
    await until(client, 52, "present", "the file in the new folder", timeout=10)
    assert await status_of(client, 51)() == "missing"
    new_identity = (models_dir.stat().st_dev, models_dir.stat().st_ino)
    watcher = client.app[WATCHER]

    async def watching_the_new_folder() -> bool:
        return watcher.live.is_set() and not watcher.rewatch_requested and watcher.watched_identities.get(str(models_dir)) == new_identity

    await eventually(watching_the_new_folder, timeout=10, what="the new folder watched")
    touch(models_dir / "loras" / "after.safetensors")
    await until(client, 53, "present", "a file landing in the new folder", timeout=10)


async def test_one_catalog_that_fails_to_reload_does_not_keep_the_other_from_it(
    start: StartClient, catalog_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from service.library.library import Library

    write_json(catalog_dir / "models.json", catalog(entry(1, "one.safetensors")))
    client = await start()
    real = Library.reload_catalog

    async def loras_fails(self: Library, name: str, **kwargs: Any) -> bool:
        if name == "loras":
            raise RuntimeError("loras.json cannot be read just now")
        return await real(self, name, **kwargs)

    monkeypatch.setattr(Library, "reload_catalog", loras_fails)
    write_json(catalog_dir / "loras.json", catalog(entry(7, "seven.safetensors", "loras"), category="loras"))
    write_json(catalog_dir / "models.json", catalog(entry(1, "one.safetensors"), entry(2, "two.safetensors")))
    await until(client, 2, "missing", "models.json read again beside a loras.json that fails")
