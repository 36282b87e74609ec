"""Several model roots (ComfyUI's extra_model_paths.yaml), symlinked folders, network mounts."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest

from service.disk.mounts import filesystem_of, is_network_fs, parse_mounts
from service.disk.scan import FolderSource, scan_sources
from service.http.appkeys import LIBRARY
from service.library.library import Library
from service.settings import Settings

from .conftest import StartClient, get_map
from .helpers import catalog, entry, eventually, touch, write_json

YAML = """
comfyui:
    base_path: {base}
    is_default: true
    checkpoints: |
        models/checkpoints/
        other/checkpoints
    unet: models/unet
    custom_nodes: custom_nodes/
a111:
    base_path: relative/webui
    loras: |
         models/Lora
         models/LyCORIS
    upscale_models: models/ESRGAN
"""


async def test_entries_are_present_under_any_root(start: StartClient, tmp_path: Path, catalog_dir: Path) -> None:
    pod = tmp_path / "pod"
    (tmp_path / "extra.yaml").write_text(YAML.format(base=pod))
    write_json(
        catalog_dir / "models.json",
        catalog(entry(1, "a.safetensors", "checkpoints"), entry(2, "b.safetensors", "diffusion_models"), entry(3, "c.safetensors", "loras"), entry(4, "d.safetensors", "loras")),
    )
    touch(pod / "other" / "checkpoints" / "sdxl" / "a.safetensors")
    touch(pod / "models" / "unet" / "b.safetensors")
    client = await start(extra_model_paths=tmp_path / "extra.yaml")
    statuses = {k: v["status"] for k, v in (await get_map(client))["by_version"].items()}
    assert statuses == {"1": "present", "2": "present", "3": "missing", "4": "missing"}
    ready = await (await client.get("/ready")).json()
    # models/checkpoints, Lora, LyCORIS, ESRGAN: never there, so missing rather than offline
    assert ready["model_folders"] == {"configured": 7, "missing_or_unreadable": 4, "offline": 0}
    assert ready["ready"] is True  # a missing extra root is reported, not fatal
    touch(pod / "models" / "unet" / "late.safetensors")  # extra roots are watched too
    touch(tmp_path / "relative" / "webui" / "models" / "Lora" / "c.safetensors")  # a root that appeared later

    async def third_seen() -> bool:
        await client.app[LIBRARY].reconcile()
        return (await get_map(client))["by_version"]["3"]["status"] == "present"

    await eventually(third_seen, what="a late root found by reconcile")


def test_symlinked_folders_are_followed_and_loops_are_cut(tmp_path: Path) -> None:
    root = tmp_path / "models"
    drive = tmp_path / "bigdrive" / "loras"
    touch(drive / "linked.safetensors")
    touch(root / "loras" / "local.safetensors")
    (root / "loras" / "ext").symlink_to(drive)
    (root / "loras" / "loop").symlink_to(root)  # points at an ancestor
    scan = scan_sources([FolderSource(str(root))])
    found = {name: logical for names in scan.dirs.values() for name, logical in names.items()}
    assert found["linked.safetensors"] == "loras/ext"
    assert found["local.safetensors"] == "loras"
    assert len([d for d in scan.dirs if "loop" in d]) <= 1  # the loop is entered at most once, then cut


async def test_a_symlinked_model_folder_is_watched(start: StartClient, tmp_path: Path, models_dir: Path, catalog_dir: Path) -> None:
    drive = tmp_path / "bigdrive"
    drive.mkdir()
    (models_dir / "loras" / "drive").symlink_to(drive)
    write_json(catalog_dir / "models.json", catalog(entry(5, "far.safetensors", "loras")))
    client = await start()
    touch(drive / "far.safetensors")

    async def present() -> bool:
        return (await get_map(client))["by_version"]["5"]["status"] == "present"

    await eventually(present, what="a download landing through a symlinked folder")


async def test_a_symlink_loop_under_polling_falls_back_to_rescans(start: StartClient, models_dir: Path, catalog_dir: Path) -> None:
    (models_dir / "loras" / "loop").symlink_to(models_dir)
    write_json(catalog_dir / "models.json", catalog(entry(6, "six.safetensors", "loras")))
    client = await start(watch_force_polling=True, watch_poll_interval_ms=50)

    async def rescanning() -> bool:
        return (await (await client.get("/ready")).json())["watcher"]["mode"] == "rescan"

    await eventually(rescanning, what="the fallback to rescans")
    assert (await client.get("/ready")).status == 200
    touch(models_dir / "loras" / "six.safetensors")

    async def present() -> bool:
        return (await get_map(client))["by_version"]["6"]["status"] == "present"

    await eventually(present, timeout=10, what="a file found by the rescans")


MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
server:/export /mnt/nfs nfs4 rw 0 0
//nas/share /mnt/smb cifs rw 0 0
s3fs /mnt/s3 fuse.s3fs rw 0 0
/dev/vdb /mnt/nfs/local ext4 rw 0 0
overlay /var/lib/docker overlay rw 0 0
models /mnt/desktop virtiofs rw 0 0
grpcfuse /mnt/fakeowner fakeowner rw 0 0
"""


@pytest.mark.parametrize(
    ("path", "network"),
    [
        ("/home/u/models", False),
        ("/mnt/nfs/models", True),
        ("/mnt/smb", True),
        ("/mnt/s3/x", True),
        ("/mnt/nfs/local/x", False),
        ("/mnt/nfsish", False),
        ("/mnt/desktop/models", True),  # Docker Desktop's virtiofs share of the host's folder
        ("/mnt/fakeowner/m", True),  # Docker Desktop's fakeowner layer
    ],
)
def test_network_filesystems_are_recognised(path: str, network: bool) -> None:
    assert is_network_fs(filesystem_of(path, parse_mounts(MOUNTS))) is network


def test_polling_is_chosen_for_network_mounts(tmp_path: Path) -> None:
    from service.disk.mounts import network_paths

    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/vda / ext4 rw 0 0\nserver:/x {tmp_path}/nfs nfs rw 0 0\n")
    (tmp_path / "nfs").mkdir()
    (tmp_path / "local").mkdir()
    assert network_paths([str(tmp_path / "nfs" / "models"), str(tmp_path / "local")], str(mounts)) == [str(tmp_path / "nfs" / "models")]


async def test_only_files_comfyui_loads_count_and_git_folders_are_skipped(start: StartClient, models_dir: Path, catalog_dir: Path) -> None:
    """folder_paths.supported_pt_extensions (+ .gguf for the GGUF loaders); recursive_search skips .git."""
    names = ["a.safetensors", "b.CKPT", "c.pt", "d.pt2", "e.bin", "f.pth", "g.pkl", "h.sft", "i.gguf", "notes.txt", "cover.png", "meta.civitai.info", "hidden.safetensors"]
    write_json(catalog_dir / "models.json", catalog(*(entry(i + 1, name, "loras") for i, name in enumerate(names))))
    for name in names[:-1]:
        touch(models_dir / "loras" / name, b"x")
    touch(models_dir / "loras" / ".git" / "hidden.safetensors", b"x")
    client = await start()
    statuses = {item["file"]: item["status"] for item in (await get_map(client))["by_version"].values()}
    assert [name for name in names if statuses[name] == "present"] == names[:9]
    touch(models_dir / "loras" / ".git" / "objects" / "late.safetensors", b"x")  # seen by the watcher, still skipped
    touch(models_dir / "loras" / "late.txt", b"x")
    write_json(catalog_dir / "models.json", catalog(*(entry(i + 1, name, "loras") for i, name in enumerate(names)), entry(99, "late.safetensors", "loras")))

    async def reloaded() -> bool:
        return "99" in (await get_map(client))["by_version"]

    await eventually(reloaded, what="the catalog edit")
    assert (await get_map(client))["by_version"]["99"]["status"] == "missing"


async def test_several_yaml_files_in_extra_model_paths(start: StartClient, tmp_path: Path, catalog_dir: Path) -> None:
    """ComfyUI's --extra-model-paths-config takes several files; EXTRA_MODEL_PATHS does too (PATH-style)."""
    for name in ("first", "second"):
        (tmp_path / name / "loras").mkdir(parents=True)
        (tmp_path / f"{name}.yaml").write_text(f"{name}:\n  base_path: {tmp_path / name}\n  loras: loras\n")
        touch(tmp_path / name / "loras" / f"{name}.safetensors")
    settings = Settings.from_env({"CATALOG_DIR": str(catalog_dir), "MODELS_DIR": str(tmp_path), "EXTRA_MODEL_PATHS": f"{tmp_path / 'first.yaml'}:{tmp_path / 'second.yaml'}"})
    assert settings.extra_model_paths == (tmp_path / "first.yaml", tmp_path / "second.yaml")
    write_json(catalog_dir / "models.json", catalog(entry(1, "first.safetensors", "loras"), entry(2, "second.safetensors", "loras")))
    client = await start(extra_model_paths=settings.extra_model_paths)
    assert {v["status"] for v in (await get_map(client))["by_version"].values()} == {"present"}


async def test_a_file_deleted_in_a_folder_root_is_no_full_rescan(
    start: StartClient, tmp_path: Path, catalog_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With `loras: /drive/loras` in extra_model_paths, that folder is a root and its files sit
    right in it: deleting one is an ordinary event, not a folder gone, and rescans nothing."""
    drive = tmp_path / "drive_loras"
    (tmp_path / "extra.yaml").write_text(f"drive:\n  loras: {drive}\n")
    touch(drive / "gone.safetensors")
    touch(drive / "sub" / "kept.safetensors")
    write_json(catalog_dir / "models.json", catalog(entry(41, "gone.safetensors", "loras"), entry(42, "kept.safetensors", "loras")))
    client = await start(extra_model_paths=tmp_path / "extra.yaml", reconcile_interval_s=3600)
    caplog.set_level(logging.INFO, logger="service")
    (drive / "gone.safetensors").unlink()

    async def missing() -> bool:
        return (await get_map(client))["by_version"]["41"]["status"] == "missing"

    await eventually(missing, what="the deleted file missing")
    assert not [r.getMessage() for r in caplog.records if "rescan" in r.getMessage()]
    assert not client.app[LIBRARY].rescan_requested


async def test_an_offline_root_makes_its_versions_unavailable_and_they_come_back_without_a_full_rescan(
    start: StartClient, catalog_dir: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_json(catalog_dir / "models.json", catalog(entry(1, "here.safetensors"), entry(2, "never.safetensors")))
    touch(models_dir / "checkpoints" / "here.safetensors", b"x")
    full_rescans = []
    real_reconcile = Library.reconcile

    async def counting(self: Library) -> bool:
        full_rescans.append(1)
        return await real_reconcile(self)

    monkeypatch.setattr(Library, "reconcile", counting)
    client = await start(reconcile_interval_s=3600)
    rescans_at_start = len(full_rescans)
    aside = models_dir.with_name("models-unmounted")
    models_dir.rename(aside)

    async def statuses() -> dict[str, str]:
        return {v: e["status"] for v, e in (await get_map(client))["by_version"].items()}

    async def offline() -> bool:
        return await statuses() == {"1": "unavailable", "2": "unavailable"}

    await eventually(offline, timeout=10, what="both versions unavailable while the root is gone")
    assert (await (await client.get("/ready")).json())["model_folders"]["offline"] == 1
    aside.rename(models_dir)

    async def back() -> bool:
        return await statuses() == {"1": "present", "2": "missing"}

    await eventually(back, timeout=10, what="the root back, its file present again")
    assert (await (await client.get("/ready")).json())["model_folders"]["offline"] == 0
    assert len(full_rescans) == rescans_at_start, "the root alone was looked at, not every root"


def _mount_tmpfs(path: Path) -> bool:
    return subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(path)], capture_output=True).returncode == 0


async def test_an_unmounted_volume_is_offline_and_its_return_is_seen(start: StartClient, catalog_dir: Path, tmp_path: Path) -> None:
    """A real mount point: unmounted, its empty folder stays, and that is not 'every file deleted'."""
    volume = tmp_path / "volume"
    volume.mkdir()
    if not _mount_tmpfs(volume):
        pytest.skip("mounting a tmpfs needs root (CAP_SYS_ADMIN)")
    try:
        touch(volume / "on_volume.safetensors", b"x")
        (tmp_path / "extra.yaml").write_text(f"pod:\n  loras: {volume}\n")
        write_json(catalog_dir / "models.json", catalog(entry(5, "on_volume.safetensors", "loras")))
        client = await start(extra_model_paths=tmp_path / "extra.yaml", reconcile_interval_s=3600)
        assert (await get_map(client))["by_version"]["5"]["status"] == "present"
        subprocess.run(["umount", str(volume)], check=True)

        async def status(expected: str) -> bool:
            return (await get_map(client))["by_version"]["5"]["status"] == expected

        await eventually(lambda: status("unavailable"), timeout=10, what="the unmounted volume's version unavailable")
        assert _mount_tmpfs(volume)
        touch(volume / "on_volume.safetensors", b"x")
        await eventually(lambda: status("present"), timeout=10, what="the volume mounted again")
    finally:
        subprocess.run(["umount", str(volume)], capture_output=True)
