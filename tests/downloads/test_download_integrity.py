"""A download lands whole and right, or not at all: short and lying servers, entries without a
hash, servers that keep closing, too little space, through the real app against loopback servers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from service.downloads.fetch import FREE_SPACE_MARGIN

from ..helpers import eventually, read_json
from .fake_civitai import FakeCivitai, headers_of
from .jobs import MB, Starter, blob, download, job_state, lora, map_entry, until_job


def civitai_lists_hash(fake: FakeCivitai, version_id: int, sha256: str) -> None:
    """CivitAI's model-version body for a version, with its file's SHA256."""
    fake.versions[version_id] = {
        "id": version_id,
        "modelId": version_id * 10,
        "files": [
            {"name": "training.zip", "type": "Training Data", "hashes": {"SHA256": "00" * 32}},
            {"name": f"lora_{version_id}.safetensors", "type": "Model", "primary": True, "hashes": {"SHA256": sha256.upper()}},
        ],
    }


async def test_a_body_cut_short_is_resumed_never_finished(service: Starter, fake: FakeCivitai, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("service.downloads.fetch.BACKOFF_S", (0.01,))
    fake.blobs[20] = blob(20, size=3 * MB, drop_after=3 * MB - 777)  # the connection closes 777 bytes early
    client = await service(lora(20, fake.blobs[20], with_hash=False))
    job = (await download(client, "lora_20.safetensors"))["job"]
    await until_job(client, job, "done")
    assert (models_dir / "loras" / "lora_20.safetensors").read_bytes() == fake.blobs[20].data
    assert len(headers_of(fake, "storage")) == 2  # the second one resumed what the first left


@pytest.mark.parametrize("hide_length", [False, True], ids=["announced", "no-length"])
async def test_a_body_far_larger_than_the_catalog_says_is_cut_off_and_kept_nowhere(
    service: Starter, fake: FakeCivitai, models_dir: Path, hide_length: bool
) -> None:
    # The catalog says 1 MB; the server announces, or just sends, 4 MB (it could send forever).
    # Its hash matches, so without a bound the disk would fill before anything was checked.
    fake.blobs[22] = blob(22, size=4 * MB, hide_length=hide_length)
    client = await service(lora(22, fake.blobs[22], size_gb=0.001))
    job = (await download(client, "lora_22.safetensors"))["job"]
    failed = await until_job(client, job, "failed")
    assert failed["error_code"] == "too_long", failed
    assert os.listdir(models_dir / "loras") == []
    assert (await map_entry(client, 22))["status"] == "missing"


LIES = {
    "declared-5000-short": {"short_by": 5000},
    "one-byte-flipped": {"flip_at": 1 * MB + 17},
    "no-length-and-cut-short": {"hide_length": True, "short_by": 777},
}


@pytest.mark.parametrize("lie", LIES.values(), ids=LIES.keys())
async def test_without_a_catalog_hash_civitais_hash_refuses_a_wrong_file(
    service: Starter, fake: FakeCivitai, models_dir: Path, lie: dict[str, Any]
) -> None:
    fake.blobs[21] = blob(21, **lie)
    civitai_lists_hash(fake, 21, fake.blobs[21].sha256)
    client = await service(lora(21, fake.blobs[21], with_hash=False))
    job = (await download(client, "lora_21.safetensors"))["job"]
    failed = await until_job(client, job, "failed")
    assert failed["error_code"] == "hash_mismatch", failed
    assert os.listdir(models_dir / "loras") == []
    assert (await map_entry(client, 21))["status"] == "missing"


async def test_the_verified_hash_is_written_into_the_entry(service: Starter, fake: FakeCivitai, models_dir: Path, catalog_dir: Path) -> None:
    fake.blobs[22] = blob(22)
    civitai_lists_hash(fake, 22, fake.blobs[22].sha256)
    client = await service(lora(22, fake.blobs[22], with_hash=False))
    job = (await download(client, "lora_22.safetensors"))["job"]
    await until_job(client, job, "done")
    assert (models_dir / "loras" / "lora_22.safetensors").read_bytes() == fake.blobs[22].data
    [stored] = read_json(catalog_dir / "models.json")["categories"][0]["models"]
    assert stored["hash"] == fake.blobs[22].sha256.upper()
    assert (await map_entry(client, 22))["status"] == "present"


async def test_a_server_that_closes_every_mib_still_delivers(service: Starter, fake: FakeCivitai, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("service.downloads.fetch.BACKOFF_S", (0.01,))
    fake.blobs[23] = blob(23, size=10 * MB, close_every=1 * MB, chunk=1 * MB)  # at full speed: it sits in aiohttp's buffer when the close comes
    client = await service(lora(23, fake.blobs[23]))
    job = (await download(client, "lora_23.safetensors"))["job"]
    done = await until_job(client, job, "done", timeout=30)
    assert done["bytes"] == 10 * MB
    assert (models_dir / "loras" / "lora_23.safetensors").read_bytes() == fake.blobs[23].data
    assert len(headers_of(fake, "storage")) <= 11  # every byte that arrived was kept: no range asked twice


async def test_free_space_is_checked_against_what_the_server_will_send(
    service: Starter, fake: FakeCivitai, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.blobs[24] = blob(24, size=2 * MB)
    client = await service(lora(24, fake.blobs[24], with_hash=True) | {"size_gb": None})  # the catalog does not say how large
    real = shutil.disk_usage
    monkeypatch.setattr("service.downloads.fetch.shutil.disk_usage", lambda path: real(path)._replace(free=50 * MB))  # under the margin
    job = (await download(client, "lora_24.safetensors"))["job"]
    failed = await until_job(client, job, "failed")
    assert failed["error_code"] == "no_space"
    assert os.listdir(models_dir / "loras") == []


@pytest.mark.parametrize("room_mb", [0, 4], ids=["no-room-at-the-start", "room-for-4-mb"])
async def test_a_file_of_no_known_size_stops_before_the_disk_is_full(
    service: Starter, fake: FakeCivitai, models_dir: Path, monkeypatch: pytest.MonkeyPatch, room_mb: int
) -> None:
    # No size from the catalog and none from the server (a 12 MB body): nothing bounds it but the disk.
    fake.blobs[27] = blob(27, size=12 * MB, hide_length=True)
    client = await service(lora(27, fake.blobs[27], with_hash=True) | {"size_gb": None})
    monkeypatch.setattr("service.downloads.fetch.SPACE_LOOK_EVERY", MB)
    part = models_dir / "loras" / "lora_27.safetensors.part"
    real = shutil.disk_usage

    def filling(path: Any) -> Any:
        written = part.stat().st_size if part.exists() else 0
        return real(path)._replace(free=FREE_SPACE_MARGIN + room_mb * MB - written)

    monkeypatch.setattr("service.downloads.fetch.shutil.disk_usage", filling)
    failed = await until_job(client, (await download(client, "lora_27.safetensors"))["job"], "failed")
    assert failed["error_code"] == "no_space" and failed["bytes"] <= room_mb * MB, failed


async def test_with_nothing_to_check_a_file_by_it_is_not_placed(service: Starter, fake: FakeCivitai, models_dir: Path) -> None:
    """No SHA256 in the catalog, none from CivitAI, no size in the catalog, none from the server:
    a body cut short could not be told from a whole one."""
    fake.blobs[25] = blob(25, hide_length=True, short_by=777)
    client = await service(lora(25, fake.blobs[25], with_hash=False) | {"size_gb": None})
    failed = await until_job(client, (await download(client, "lora_25.safetensors"))["job"], "failed")
    assert failed["error_code"] == "unverifiable"
    assert not (models_dir / "loras" / "lora_25.safetensors").exists()


async def test_without_a_hash_a_size_far_from_the_catalogs_is_refused(service: Starter, fake: FakeCivitai, models_dir: Path) -> None:
    fake.blobs[26] = blob(26, size=3 * MB, short_by=2 * MB)  # the server says and sends 1 MiB of a 3 MiB file
    client = await service(lora(26, fake.blobs[26], with_hash=False, size_gb=0.003))
    failed = await until_job(client, (await download(client, "lora_26.safetensors"))["job"], "failed")
    assert failed["error_code"] == "size_mismatch"
    assert os.listdir(models_dir / "loras") == []


async def test_a_server_that_refuses_every_resume_is_given_up_on(service: Starter, fake: FakeCivitai, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("service.downloads.fetch.BACKOFF_S", (0.01,))
    fake.blobs[27] = blob(27, size=2 * MB, drop_after=300_000, refuse_ranges=True)
    for _ in range(20):  # it drops every first answer and refuses every resume
        fake.blobs[27].drop_after = 300_000
    client = await service(lora(27, fake.blobs[27]))
    job = (await download(client, "lora_27.safetensors"))["job"]

    async def ended() -> bool:
        fake.blobs[27].drop_after = fake.blobs[27].drop_after or 300_000  # drop again after every restart
        return (await until_job_state(client, job)) in ("failed", "done")

    await eventually(ended, timeout=20, what="the job given up on")
    assert len(headers_of(fake, "storage")) <= 2 * 6 + 2


async def test_a_ranged_answer_longer_than_it_says_is_cut_to_the_file(service: Starter, fake: FakeCivitai, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("service.downloads.fetch.BACKOFF_S", (0.01,))
    fake.blobs[28] = blob(28, size=1 * MB, overlong=5000, hide_length=True)
    (models_dir / "loras" / "lora_28.safetensors.part").write_bytes(fake.blobs[28].data[:4096])
    client = await service(lora(28, fake.blobs[28]))
    await until_job(client, (await download(client, "lora_28.safetensors"))["job"], "done")
    assert (models_dir / "loras" / "lora_28.safetensors").read_bytes() == fake.blobs[28].data


async def test_free_space_counts_the_whole_file_when_the_server_ignores_the_resume(
    service: Starter, fake: FakeCivitai, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.blobs[29] = blob(29, size=2 * MB, ignore_range=True)
    (models_dir / "loras" / "lora_29.safetensors.part").write_bytes(fake.blobs[29].data[: 2 * MB - 1000])
    client = await service(lora(29, fake.blobs[29]) | {"size_gb": None})
    real = shutil.disk_usage
    monkeypatch.setattr("service.downloads.fetch.shutil.disk_usage", lambda path: real(path)._replace(free=FREE_SPACE_MARGIN + 100_000))
    failed = await until_job(client, (await download(client, "lora_29.safetensors"))["job"], "failed")
    assert failed["error_code"] == "no_space"


async def until_job_state(client: Any, job: str) -> str:
    return (await job_state(client, job))["state"]
