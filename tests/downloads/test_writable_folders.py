"""Model folders the service cannot write into: said at start with the path, the uid:gid and the
fix, and a download that fails to write names its folder. Real folders, real permissions: the
start runs as another user (the tests run as root here, whom no permission stops)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..helpers import AUTH
from .fake_civitai import FakeCivitai
from .jobs import Starter, blob, download, lora, until_job

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder another user can reach (pytest's own are root's, mode 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="catalog-perms-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def started_as(uid: int, catalogs: Path, models: Path, downloads: str = "on") -> list[dict[str, str]]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.downloads.start_as_another_user", str(catalogs), str(models), str(uid), downloads],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def folders_root_made(shared_folder: Path) -> tuple[int, Path, Path]:
    """A models folder as Docker and a root ComfyUI leave it: the top and `checkpoints` not
    writable by the service's user, `loras` writable by anyone."""
    uid = NOBODY if os.getuid() == 0 else os.getuid()
    catalogs, models = shared_folder / "catalogs", shared_folder / "models"
    catalogs.mkdir()
    (models / "checkpoints").mkdir(parents=True)  # as Docker and a root ComfyUI leave them
    (models / "loras").mkdir()
    models.chmod(0o755)
    (models / "checkpoints").chmod(0o755 if os.getuid() == 0 else 0o555)
    (models / "loras").chmod(0o777)
    if os.getuid() == 0:
        os.chown(catalogs, uid, uid)
    else:
        models.chmod(0o555)
    return uid, catalogs, models


def told(lines: list[dict[str, str]]) -> list[str]:
    return [line["message"] for line in lines if line["level"] == "WARNING" and "downloads into" in line["message"]]


def test_a_models_folder_the_service_cannot_write_is_told_at_start_with_the_fix(shared_folder: Path) -> None:
    uid, catalogs, models = folders_root_made(shared_folder)
    warnings = told(started_as(uid, catalogs, models))
    named = {message.split(" will fail")[0].removeprefix("downloads into ") for message in warnings}
    assert named == {str(models), str(models / "checkpoints")}  # loras is writable: not told
    checkpoints = next(message for message in warnings if str(models / "checkpoints") in message)
    owner = models.stat()
    assert f"uid:gid {uid}:{uid}" in checkpoints and f"owner {owner.st_uid}:{owner.st_gid}" in checkpoints
    assert f"sudo chown {uid}:{uid} {models / 'checkpoints'}" in checkpoints and "PUID=" in checkpoints


def test_with_downloads_off_read_only_folders_are_not_a_warning(shared_folder: Path) -> None:
    uid, catalogs, models = folders_root_made(shared_folder)
    lines = started_as(uid, catalogs, models, downloads="off")
    assert told(lines) == [] and any("model folder" in line["message"] for line in lines)  # it did start and log


async def test_a_download_that_cannot_write_names_the_folder(service: Starter, fake: FakeCivitai, models_dir: Path) -> None:
    fake.blobs[21] = blob(21, size=1024)
    (models_dir / "loras").rmdir()
    (models_dir / "loras").write_bytes(b"a file where the folder should be")
    client = await service(lora(21, fake.blobs[21]))
    failed = await until_job(client, (await download(client, "lora_21.safetensors"))["job"], "failed")
    assert failed["error_code"] == "write_failed"
    assert "'loras'" in failed["error"] and "uid:gid" in failed["error"]
    assert (await (await client.get("/api/admin/downloads", headers=AUTH)).json())["downloads"][0]["error"] == failed["error"]
