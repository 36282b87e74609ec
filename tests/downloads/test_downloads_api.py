"""Downloads through the real app against a loopback CivitAI and a storage server on another port:
resume, verify, atomic rename, cancel, the queue, progress in the map, nothing left on failure."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from service.http.appkeys import DOWNLOADS, EDITOR

from ..helpers import AUTH, entry, eventually, next_event
from .fake_civitai import FakeCivitai, headers_of
from .jobs import (
    CIVITAI_KEY,
    MB,
    Starter,
    blob,
    download,
    job_state,
    leftovers,
    lora,
    map_entry,
    until_job,
)


async def test_a_download_lands_verified_and_the_key_never_leaves_civitai(service: Starter, fake: FakeCivitai, models_dir: Path) -> None:
    fake.blobs[1] = blob(1)
    client = await service(lora(1, fake.blobs[1]))
    answer = await download(client, "lora_1.safetensors")
    assert answer["status"] == "queued" and answer["file"] == "lora_1.safetensors"
    done = await until_job(client, answer["job"], "done")
    assert done["bytes"] == done["total"] == len(fake.blobs[1].data)
    assert (models_dir / "loras" / "lora_1.safetensors").read_bytes() == fake.blobs[1].data
    assert leftovers(models_dir / "loras") == []
    assert (await map_entry(client, 1))["status"] == "present"
    assert [h.get("Authorization") for h in headers_of(fake, "civitai")] == [f"Bearer {CIVITAI_KEY}"]
    assert all("Authorization" not in h for h in headers_of(fake, "storage"))  # the storage host is another origin
    again = await download(client, "lora_1.safetensors")
    assert again == {"status": "already_present", "file": "lora_1.safetensors"}


async def test_a_dropped_connection_resumes_with_range(service: Starter, fake: FakeCivitai, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("service.downloads.fetch.BACKOFF_S", (0.05,))
    fake.blobs[2] = blob(2, size=16 * MB, drop_after=12 * MB + 123)  # past one whole written block
    client = await service(lora(2, fake.blobs[2]))
    job = (await download(client, "lora_2.safetensors"))["job"]
    await until_job(client, job, "done")
    ranges = [h.get("Range") for h in headers_of(fake, "storage")]
    assert ranges[0] is None and ranges[1] is not None and ranges[1].startswith("bytes=")
    assert int(ranges[1][6:-1]) > 0
    assert (models_dir / "loras" / "lora_2.safetensors").read_bytes() == fake.blobs[2].data


async def test_a_part_left_by_a_restart_is_resumed(service: Starter, fake: FakeCivitai, models_dir: Path) -> None:
    fake.blobs[3] = blob(3)
    (models_dir / "loras" / "lora_3.safetensors.part").write_bytes(fake.blobs[3].data[: 2 * MB])
    client = await service(lora(3, fake.blobs[3]))
    job = (await download(client, "lora_3.safetensors"))["job"]
    await until_job(client, job, "done")
    assert [h.get("Range") for h in headers_of(fake, "storage")] == [f"bytes={2 * MB}-"]
    assert (models_dir / "loras" / "lora_3.safetensors").read_bytes() == fake.blobs[3].data


async def test_a_wrong_hash_keeps_nothing_and_says_so(service: Starter, fake: FakeCivitai, models_dir: Path) -> None:
    fake.blobs[4] = blob(4)
    client = await service(lora(4, fake.blobs[4], sha256="AB" * 32))
    job = (await download(client, "lora_4.safetensors"))["job"]
    failed = await until_job(client, job, "failed")
    assert failed["error_code"] == "hash_mismatch" and "nothing was kept" in failed["error"]
    assert os.listdir(models_dir / "loras") == []
    assert (await map_entry(client, 4))["status"] == "missing"


@pytest.mark.parametrize(("status", "code"), [(401, "civitai_key_required"), (403, "civitai_key_required"), (404, "not_found")])
async def test_what_civitai_refuses_is_a_clear_failure(service: Starter, fake: FakeCivitai, models_dir: Path, status: int, code: str) -> None:
    fake.blobs[5] = blob(5)
    fake.refuse[5] = [(status, {})]
    client = await service(lora(5, fake.blobs[5]))
    job = (await download(client, "lora_5.safetensors"))["job"]
    failed = await until_job(client, job, "failed")
    assert failed["error_code"] == code and failed["error"]
    assert os.listdir(models_dir / "loras") == []
    assert (await map_entry(client, 5))["status"] == "missing"


async def test_a_429_waits_as_told_then_downloads(service: Starter, fake: FakeCivitai, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("service.downloads.fetch.BACKOFF_S", (0.05,))
    fake.blobs[6] = blob(6, size=64 * 1024)
    fake.refuse[6] = [(429, {"Retry-After": "1"}), (503, {})]
    client = await service(lora(6, fake.blobs[6]))
    job = (await download(client, "lora_6.safetensors"))["job"]
    await until_job(client, job, "done")
    assert len(headers_of(fake, "civitai")) == 3


async def test_progress_shows_in_the_map_and_the_events(service: Starter, fake: FakeCivitai, models_dir: Path) -> None:
    fake.blobs[7] = blob(7, size=24 * MB, hold_at=12 * MB)
    client = await service(lora(7, fake.blobs[7]))
    events = await client.get("/api/admin/models/civitai-map/events", headers=AUTH)
    assert (await next_event(events))[0] == "snapshot"
    job = (await download(client, "lora_7.safetensors"))["job"]

    async def halfway() -> bool:
        shown = await map_entry(client, 7)
        return shown["status"] == "downloading" and shown.get("dl_bytes", 0) >= 8 * MB

    await eventually(halfway, what="progress in the map")
    shown = await map_entry(client, 7)
    assert shown["dl_total"] == len(fake.blobs[7].data)
    seen = set()
    while "downloading" not in seen:
        _name, data = await next_event(events)
        seen.update(data.get("changes", {}).values())
    fake.blobs[7].release.set()
    await until_job(client, job, "done")
    assert (await map_entry(client, 7))["status"] == "present"
    events.close()


async def test_cancel_stops_and_removes_the_part(service: Starter, fake: FakeCivitai, models_dir: Path) -> None:
    fake.blobs[8] = blob(8, size=16 * MB, hold_at=9 * MB)
    client = await service(lora(8, fake.blobs[8]))
    job = (await download(client, "lora_8.safetensors"))["job"]

    async def partway() -> bool:
        return (await job_state(client, job))["bytes"] >= 8 * MB

    await eventually(partway, what="the download under way")
    response = await client.delete(f"/api/admin/downloads/{job}", headers=AUTH)
    assert await response.json() == {"status": "cancelled", "job": job}
    assert os.listdir(models_dir / "loras") == []
    assert (await map_entry(client, 8))["status"] == "missing"
    assert (await job_state(client, job))["state"] == "cancelled"
    fake.blobs[8].release.set()
    gone = await client.delete(f"/api/admin/downloads/{job}", headers=AUTH)
    assert await gone.json() == {"status": "removed", "job": job}
    unknown = await client.delete("/api/admin/downloads/nope", headers=AUTH)
    assert unknown.status == 404 and (await unknown.json())["code"] == "no_such_job"


async def test_the_queue_runs_in_order_within_the_limit(service: Starter, fake: FakeCivitai) -> None:
    fake.blobs[9] = blob(9, size=10 * MB, hold_at=9 * MB)
    fake.blobs[10] = blob(10, size=64 * 1024)
    client = await service(lora(9, fake.blobs[9]), lora(10, fake.blobs[10]), download_concurrency=1)
    first = await download(client, "lora_9.safetensors")
    second = await download(client, "lora_10.safetensors")
    assert second["status"] == "queued"
    assert await download(client, "lora_10.safetensors") == second  # asking again answers the same job

    async def first_running() -> bool:
        return (await map_entry(client, 9))["status"] == "downloading"

    await eventually(first_running, what="the first download running")
    assert (await map_entry(client, 10))["status"] == "queued"
    assert (await job_state(client, second["job"]))["state"] == "queued"
    fake.blobs[9].release.set()
    await until_job(client, first["job"], "done")
    await until_job(client, second["job"], "done")
    assert (await map_entry(client, 10))["status"] == "present"


async def test_refusals_before_anything_starts(service: Starter, fake: FakeCivitai, models_dir: Path) -> None:
    fake.blobs[11] = blob(11)
    client = await service(lora(11, fake.blobs[11], size_gb=900_000.0), lora(12, None))
    unknown = await client.post("/api/admin/models/download/nothing.safetensors", headers=AUTH)
    assert unknown.status == 404 and (await unknown.json())["code"] == "not_in_catalog"
    hostile = await client.post("/api/admin/models/download/..%2Fevil.safetensors", headers=AUTH)
    assert hostile.status in (400, 404)
    job = (await download(client, "lora_11.safetensors"))["job"]
    failed = await until_job(client, job, "failed")
    assert failed["error_code"] == "no_space" and "GB" in failed["error"]
    assert fake.requests == []  # nothing was fetched


async def test_downloads_off_is_a_clear_409(service: Starter, fake: FakeCivitai) -> None:
    fake.blobs[13] = blob(13)
    client = await service(lora(13, fake.blobs[13]), downloads=False)
    response = await client.post("/api/admin/models/download/lora_13.safetensors", headers=AUTH)
    assert response.status == 409 and (await response.json())["code"] == "downloads_off"


@pytest.mark.parametrize("location", ["ftp://127.0.0.1/x", "file:///etc/passwd"])
async def test_a_redirect_to_another_scheme_is_refused(service: Starter, fake: FakeCivitai, models_dir: Path, location: str) -> None:
    fake.blobs[14] = blob(14)
    fake.redirect_to = location
    client = await service(lora(14, fake.blobs[14]))
    job = (await download(client, "lora_14.safetensors"))["job"]
    failed = await until_job(client, job, "failed")
    assert failed["error_code"] == "bad_redirect"
    assert os.listdir(models_dir / "loras") == []


async def test_a_job_that_says_done_has_its_version_present(service: Starter, fake: FakeCivitai, monkeypatch: pytest.MonkeyPatch) -> None:
    """However long the map takes to learn of the placed file, the job says `done` only after it has."""
    from service.library.library import Library

    real = Library.paths_changed

    async def slow(self: Library, paths: Any) -> bool:
        await asyncio.sleep(0.3)
        return await real(self, paths)

    monkeypatch.setattr(Library, "paths_changed", slow)
    fake.blobs[15] = blob(15, size=64 * 1024)
    client = await service(lora(15, fake.blobs[15]))
    job = (await download(client, "lora_15.safetensors"))["job"]
    await until_job(client, job, "done")
    assert (await map_entry(client, 15))["status"] == "present"


async def test_a_catalogued_name_too_long_to_download_is_refused_saying_why(service: Starter, fake: FakeCivitai, models_dir: Path) -> None:
    name = "l" * 241 + ".safetensors"  # 253 bytes: its .part would be 258, over the 255 a file name can have
    client = await service(entry(40, name, "loras"))
    refused = await client.post(f"/api/admin/models/download/{name}", headers=AUTH, json={})
    assert refused.status == 400
    answer = await refused.json()
    assert answer["code"] == "unsafe_file_name" and "250 bytes" in answer["detail"] and ".part" in answer["detail"]
    assert os.listdir(models_dir / "loras") == []


async def test_an_entry_being_downloaded_is_not_removed_until_its_download_is_cancelled(
    service: Starter, fake: FakeCivitai, models_dir: Path
) -> None:
    # Removed mid-download, the row would leave the map with its Cancel button, and the job
    # would still place a file that no catalog lists.
    fake.blobs[41] = blob(41, hold_at=1 * MB)
    client = await service(lora(41, fake.blobs[41]))
    job = (await download(client, "lora_41.safetensors"))["job"]

    async def under_way() -> bool:
        return (await job_state(client, job))["bytes"] >= 1 * MB

    await eventually(under_way, what="the download under way")
    refused = await client.delete("/api/admin/models/lora_41.safetensors/catalog", headers=AUTH)
    assert refused.status == 409 and (await refused.json())["code"] == "download_active"
    assert (await map_entry(client, 41))["status"] == "downloading"
    assert (await client.delete(f"/api/admin/downloads/{job}", headers=AUTH)).status == 200
    await until_job(client, job, "cancelled")
    removed = await client.delete("/api/admin/models/lora_41.safetensors/catalog", headers=AUTH)
    assert removed.status == 200 and (await removed.json())["status"] == "removed"
    fake.blobs[41].release.set()


async def test_a_download_asked_for_while_its_entry_is_being_removed_is_refused(service: Starter, fake: FakeCivitai, models_dir: Path) -> None:
    fake.blobs[42] = blob(42)
    client = await service(lora(42, fake.blobs[42]))
    editor = client.server.app[EDITOR]
    async with editor._lock:  # another catalog change under way: the remove waits for it
        deleting = asyncio.ensure_future(client.delete("/api/admin/models/lora_42.safetensors/catalog", headers=AUTH))

        async def waiting() -> bool:
            return "lora_42.safetensors" in client.server.app[DOWNLOADS]._removing

        await eventually(waiting, what="the remove waiting for the catalogs")
        answer = await client.post("/api/admin/models/download/lora_42.safetensors", headers=AUTH, json={})
        assert answer.status == 409 and (await answer.json())["code"] == "being_removed"
    removed = await deleting
    assert removed.status == 200 and (await removed.json())["status"] == "removed"
    assert (await (await client.get("/api/admin/downloads", headers=AUTH)).json())["downloads"] == []
    assert os.listdir(models_dir / "loras") == []


async def test_a_download_names_its_version_when_two_folders_hold_files_of_one_name(service: Starter, fake: FakeCivitai, models_dir: Path) -> None:
    fake.blobs[43], fake.blobs[44] = blob(43), blob(44)
    client = await service(
        entry(43, "model.safetensors", "checkpoints", hash=fake.blobs[43].sha256.upper()),
        entry(44, "model.safetensors", "vae", hash=fake.blobs[44].sha256.upper()),
    )
    answer = await client.post("/api/admin/models/download/model.safetensors", headers=AUTH, json={"version_id": 44})
    assert answer.status == 200, await answer.text()
    await until_job(client, (await answer.json())["job"], "done")
    assert (models_dir / "vae" / "model.safetensors").read_bytes() == fake.blobs[44].data
    assert not (models_dir / "checkpoints" / "model.safetensors").exists()
    for body, code in (({"version_id": "44"}, "invalid_version_id"), ({"version": 44}, "invalid_body"), ([44], "invalid_body")):
        refused = await client.post("/api/admin/models/download/model.safetensors", headers=AUTH, json=body)
        assert refused.status == 400 and (await refused.json())["code"] == code
