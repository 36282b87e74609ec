"""The part a download writes is its own: never through a link planted at its name, never a file
another process is writing, and a cancel either stops the download or says it had finished."""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from service.downloads.part import PartFile, PartRefused, remove_unheld_part

from ..helpers import AUTH, eventually
from .fake_civitai import FakeCivitai, headers_of
from .jobs import MB, Starter, blob, download, job_state, lora, map_entry, until_job

VICTIM = b"a file someone else owns\n"
# Holds an exclusive lock on a file until its standard input closes: another service on the same volume.
HOLDER = "import fcntl, sys; f = open(sys.argv[1], 'r+b'); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()"


@pytest.mark.parametrize("ignore_range", [False, True], ids=["server-resumes", "server-sends-whole-file"])
async def test_a_symlink_at_the_part_is_never_written_through(
    service: Starter, fake: FakeCivitai, models_dir: Path, tmp_path: Path, ignore_range: bool
) -> None:
    victim = tmp_path / "victim.bin"
    victim.write_bytes(VICTIM)
    part = models_dir / "loras" / "lora_30.safetensors.part"
    part.symlink_to(victim)
    fake.blobs[30] = blob(30, size=1 * MB, ignore_range=ignore_range)
    client = await service(lora(30, fake.blobs[30]))
    job = (await download(client, "lora_30.safetensors"))["job"]
    failed = await until_job(client, job, "failed")
    assert failed["error_code"] == "part_not_a_file" and "symbolic link" in failed["error"]
    assert victim.read_bytes() == VICTIM
    assert part.is_symlink() and not (models_dir / "loras" / "lora_30.safetensors").exists()
    assert headers_of(fake, "storage") == []
    assert (await map_entry(client, 30))["status"] != "present"


async def test_a_hard_link_at_the_part_is_never_written_through(service: Starter, fake: FakeCivitai, models_dir: Path, tmp_path: Path) -> None:
    victim = models_dir / "victim.bin"
    victim.write_bytes(VICTIM)
    os.link(victim, models_dir / "loras" / "lora_31.safetensors.part")
    fake.blobs[31] = blob(31, size=1 * MB)
    client = await service(lora(31, fake.blobs[31]))
    failed = await until_job(client, (await download(client, "lora_31.safetensors"))["job"], "failed")
    assert failed["error_code"] == "part_not_a_file"
    assert victim.read_bytes() == VICTIM


def test_only_a_regular_file_is_opened(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.part")
    (tmp_path / "folder.part").mkdir()
    (tmp_path / "dangling.part").symlink_to(tmp_path / "nowhere")
    for name in ("fifo.part", "folder.part", "dangling.part"):
        with pytest.raises((PartRefused, IsADirectoryError)):
            PartFile.open(tmp_path / name)
    assert not (tmp_path / "nowhere").exists()  # a dangling link is not followed to create its target


def test_a_part_is_placed_only_as_the_file_written(tmp_path: Path) -> None:
    part = PartFile.open(tmp_path / "a.safetensors.part")
    part.handle.write(b"mine")
    part.sync()
    os.replace(tmp_path / "a.safetensors.part", tmp_path / "elsewhere")  # someone moves ours away ...
    (tmp_path / "a.safetensors.part").symlink_to(tmp_path / "elsewhere")  # ... and plants a link in its place
    with pytest.raises(PartRefused):
        part.place(tmp_path / "a.safetensors")
    part.close()
    assert not (tmp_path / "a.safetensors").exists()


async def test_a_part_another_process_writes_is_left_to_it(service: Starter, fake: FakeCivitai, models_dir: Path) -> None:
    part = models_dir / "loras" / "lora_32.safetensors.part"
    part.write_bytes(b"x" * 4096)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(part)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        fake.blobs[32] = blob(32, size=1 * MB)
        client = await service(lora(32, fake.blobs[32]))
        failed = await until_job(client, (await download(client, "lora_32.safetensors"))["job"], "failed")
        assert failed["error_code"] == "downloading_elsewhere" and "another process" in failed["error"]
        assert part.read_bytes() == b"x" * 4096  # untouched, not removed
        shown = await map_entry(client, 32)
        assert shown["status"] == "downloading" and shown["dl_bytes"] == 4096  # the progress it can see
        assert headers_of(fake, "storage") == []
    finally:
        holder.communicate(b"")


async def test_cancel_either_stops_the_download_or_says_it_had_finished(service: Starter, fake: FakeCivitai, models_dir: Path) -> None:
    """Cancels sent at every moment of short downloads, the last steps included: the answer and
    the disk always agree."""
    versions = range(40, 70)
    for version_id in versions:
        fake.blobs[version_id] = blob(version_id, size=256 * 1024, chunk=16 * 1024)
    client = await service(*(lora(v, fake.blobs[v]) for v in versions), download_concurrency=4)
    outcomes = []
    for n, version_id in enumerate(versions):
        file = f"lora_{version_id}.safetensors"
        job = (await download(client, file))["job"]
        for _ in range(n % 10):  # cancel after 0 to 9 turns of the loop: before, during and at the end
            await asyncio.sleep(0.001)
        answer = await (await client.delete(f"/api/admin/downloads/{job}", headers=AUTH)).json()
        outcomes.append((answer["status"], (models_dir / "loras" / file).exists(), version_id, job))
    for status, placed, version_id, job in outcomes:
        assert status in ("cancelled", "done"), status
        assert placed == (status == "done"), (version_id, status)
        state = (await job_state(client, job))["state"]
        assert state == ("cancelled" if status == "cancelled" else "done")

    async def settled() -> bool:
        shown = [(await map_entry(client, v))["status"] for v in versions]
        return all(status in ("present", "missing") for status in shown)

    await eventually(settled, what="every version settled")
    for status, _placed, version_id, _job in outcomes:
        assert (await map_entry(client, version_id))["status"] == ("present" if status == "done" else "missing")


async def test_a_cancel_while_the_part_is_being_opened_leaves_nothing(
    service: Starter, fake: FakeCivitai, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opening, opened = threading.Event(), threading.Event()
    real_open = PartFile.open

    def slow_open(path: Path, **kwargs: object) -> PartFile:  # the real open, after the cancel has come
        opening.set()
        opened.wait(5)
        return real_open(path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("service.downloads.manager.PartFile.open", slow_open)
    fake.blobs[33] = blob(33, size=1 * MB)
    client = await service(lora(33, fake.blobs[33]))
    job = (await download(client, "lora_33.safetensors"))["job"]
    await eventually(lambda: asyncio.to_thread(opening.wait, 0.01), what="the part being opened")
    cancel = asyncio.ensure_future(client.delete(f"/api/admin/downloads/{job}", headers=AUTH))
    await asyncio.sleep(0.05)
    opened.set()
    assert (await (await cancel).json())["status"] == "cancelled"
    assert os.listdir(models_dir / "loras") == []
    assert (await map_entry(client, 33))["status"] == "missing"
    assert not PartFile.open(models_dir / "loras" / "lora_33.safetensors.part").close()  # nobody holds a lock on it


def test_a_filesystem_without_locks_still_takes_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NFS without lockd answers flock with ENOLCK: the part is written without a lock, no descriptor leaks."""

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr("service.downloads.part.fcntl.flock", no_locks)
    for _ in range(5):
        part = PartFile.open(tmp_path / "a.safetensors.part")
        part.close()
        assert remove_unheld_part(tmp_path / "a.safetensors.part")
    assert not open_in(tmp_path)


def open_in(folder: Path) -> list[str]:
    """What this process holds open in `folder` (counting every descriptor would count other threads' too)."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith(str(folder)):
            held.append(target)
    return held


async def test_a_cancel_with_a_folder_at_the_part_is_no_500(service: Starter, fake: FakeCivitai, models_dir: Path) -> None:
    fake.blobs[34] = blob(34, size=1 * MB, hold_at=0)
    fake.blobs[35] = blob(35, size=1 * MB)
    client = await service(lora(34, fake.blobs[34]), lora(35, fake.blobs[35]), download_concurrency=1)
    await download(client, "lora_34.safetensors")  # holds the only slot
    queued = (await download(client, "lora_35.safetensors"))["job"]
    (models_dir / "loras" / "lora_35.safetensors.part").mkdir()
    response = await client.delete(f"/api/admin/downloads/{queued}", headers=AUTH)
    assert response.status == 200 and (await response.json())["status"] == "cancelled"
    assert (models_dir / "loras" / "lora_35.safetensors.part").is_dir()  # left alone
    fake.blobs[34].release.set()
