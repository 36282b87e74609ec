"""Downloads that stopped, through the real app: a failed job is `missing` with its reason at once,
a part nobody writes any more reads `missing` with its bytes and a Download resumes it, a part
that grows reads `downloading` until it stops changing. Loopback CivitAI, real files."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse

from ..helpers import AUTH, eventually, next_event
from .fake_civitai import FakeCivitai, headers_of
from .jobs import MB, Starter, blob, download, lora, map_entry, until_job

EVENTS = "/api/admin/models/civitai-map/events"


async def change_of(events: ClientResponse, version_id: int, status: str) -> dict[str, Any]:
    """The first `change` event that gives the version that status; its details for it."""
    while True:
        name, data = await next_event(events)
        if name == "change" and data["changes"].get(str(version_id)) == status:
            return data.get("details", {}).get(str(version_id), {})


async def test_a_failed_download_is_missing_at_once_with_its_reason_and_its_part(
    service: Starter, fake: FakeCivitai, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("service.downloads.fetch.MAX_ATTEMPTS", 1)  # the first dropped connection ends the job
    fake.blobs[11] = blob(11, size=8 * MB, drop_after=5 * MB + 17)
    client = await service(lora(11, fake.blobs[11]))
    events = await client.get(EVENTS, headers=AUTH)
    assert (await next_event(events))[0] == "snapshot"
    before = time.time()
    failed = await until_job(client, (await download(client, "lora_11.safetensors"))["job"], "failed")
    assert failed["error_code"] == "connection_lost"
    part = models_dir / "loras" / "lora_11.safetensors.part"
    shown = await map_entry(client, 11)  # the first look after the job said failed
    assert shown["status"] == "missing" and shown["partial_bytes"] == part.stat().st_size > 0
    error = shown["dl_error"]
    assert error["code"] == "connection_lost" and error["detail"] == failed["error"] and before <= error["at"] <= time.time()
    details = await change_of(events, 11, "missing")
    assert details["dl_error"] == error and details["partial_bytes"] == shown["partial_bytes"]

    again = (await download(client, "lora_11.safetensors"))["job"]  # Download resumes it, and the error is gone
    await until_job(client, again, "done")
    assert headers_of(fake, "storage")[-1]["Range"] == f"bytes={shown['partial_bytes']}-"
    shown = await map_entry(client, 11)
    assert shown["status"] == "present" and "dl_error" not in shown and "partial_bytes" not in shown
    events.close()


async def test_a_part_nobody_writes_reads_missing_with_its_bytes_and_download_resumes_it(
    service: Starter, fake: FakeCivitai, models_dir: Path
) -> None:
    fake.blobs[12] = blob(12)
    part = models_dir / "loras" / "lora_12.safetensors.part"
    part.write_bytes(fake.blobs[12].data[: 2 * MB])
    an_hour_ago = time.time() - 3600
    os.utime(part, (an_hour_ago, an_hour_ago))  # left by a restart, a crash, or a program that gave up
    client = await service(lora(12, fake.blobs[12]))
    shown = await map_entry(client, 12)
    assert (shown["status"], shown["partial_bytes"]) == ("missing", 2 * MB) and "dl_error" not in shown
    await until_job(client, (await download(client, "lora_12.safetensors"))["job"], "done")
    assert [h.get("Range") for h in headers_of(fake, "storage")] == [f"bytes={2 * MB}-"]
    assert (models_dir / "loras" / "lora_12.safetensors").read_bytes() == fake.blobs[12].data


async def test_a_growing_part_is_downloading_until_it_stops_changing(service: Starter, fake: FakeCivitai, models_dir: Path) -> None:
    part = models_dir / "loras" / "lora_13.safetensors.part"
    part.write_bytes(b"x" * 1000)  # another program's download, just written
    client = await service(lora(13, blob(13)), stale_part_s=1.0)
    events = await client.get(EVENTS, headers=AUTH)
    assert (await next_event(events))[0] == "snapshot"
    shown = await map_entry(client, 13)
    assert (shown["status"], shown["dl_bytes"]) == ("downloading", 1000)
    with part.open("ab") as growing:
        growing.write(b"y" * 500)

    async def grown() -> bool:
        return (await map_entry(client, 13)).get("dl_bytes") == 1500

    await eventually(grown, what="the part's growth in the map")
    details = await change_of(events, 13, "missing")  # a second later with no change: stopped
    assert details == {"partial_bytes": 1500}
    assert (await map_entry(client, 13))["partial_bytes"] == 1500
    with part.open("ab") as growing:  # it moves again: downloading again
        growing.write(b"z" * 10)
    details = await change_of(events, 13, "downloading")
    assert details["dl_bytes"] == 1510
    events.close()


async def test_a_part_another_program_is_writing_is_left_to_it(service: Starter, fake: FakeCivitai, models_dir: Path) -> None:
    # A browser or wget appending to the part, with no lock: a download asked for meanwhile
    # would write over its bytes, and delete them on the hash mismatch that follows.
    fake.blobs[14] = blob(14)
    part = models_dir / "loras" / "lora_14.safetensors.part"
    part.write_bytes(b"x" * 1000)
    stop = threading.Event()

    def append_until_stopped() -> None:
        while not stop.wait(0.05):
            with part.open("ab") as handle:
                handle.write(b"y" * 100)

    writer = threading.Thread(target=append_until_stopped)
    writer.start()
    try:
        client = await service(lora(14, fake.blobs[14]))
        assert (await map_entry(client, 14))["status"] == "downloading"
        failed = await until_job(client, (await download(client, "lora_14.safetensors"))["job"], "failed")
        assert failed["error_code"] == "downloading_elsewhere", failed
        assert headers_of(fake, "storage") == []
        assert (await map_entry(client, 14))["status"] == "downloading"
    finally:
        stop.set()
        writer.join()
    assert set(part.read_bytes()[1000:]) == {ord("y")} and part.read_bytes()[:1000] == b"x" * 1000


async def test_a_recent_part_left_by_a_restart_is_resumed_at_once(service: Starter, fake: FakeCivitai, models_dir: Path) -> None:
    fake.blobs[15] = blob(15)
    part = models_dir / "loras" / "lora_15.safetensors.part"
    part.write_bytes(fake.blobs[15].data[: 2 * MB])  # written a moment ago, then the service restarted: nobody writes it now
    client = await service(lora(15, fake.blobs[15]))
    await until_job(client, (await download(client, "lora_15.safetensors"))["job"], "done")
    assert [h.get("Range") for h in headers_of(fake, "storage")] == [f"bytes={2 * MB}-"]


async def test_a_cancelled_download_is_missing_in_the_same_step(service: Starter, fake: FakeCivitai, models_dir: Path) -> None:
    fake.blobs[14] = blob(14, size=16 * MB, hold_at=9 * MB)
    client = await service(lora(14, fake.blobs[14]))
    job = (await download(client, "lora_14.safetensors"))["job"]

    async def partway() -> bool:
        return (await map_entry(client, 14)).get("dl_bytes", 0) >= 8 * MB

    await eventually(partway, what="the download under way")
    response = await client.delete(f"/api/admin/downloads/{job}", headers=AUTH)
    assert await response.json() == {"status": "cancelled", "job": job}
    shown = await map_entry(client, 14)
    assert shown["status"] == "missing" and "dl_error" not in shown
    fake.blobs[14].release.set()
