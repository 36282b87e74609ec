"""Regressions found in review: each test failed before its fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from service.typedefs import FEED, LIBRARY, WATCHER

from .conftest import StartClient, get_map
from .helpers import AUTH, catalog, entry, eventually, next_event, read_json, replace_json, touch, write_json


def status_of(client, version_id: int):  # type: ignore[no-untyped-def]
    async def current() -> str | None:
        return ((await get_map(client))["by_version"].get(str(version_id)) or {}).get("status")

    return current


async def until(client, version_id: int, status: str, what: str, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    current = status_of(client, version_id)

    async def reached() -> bool:
        return await current() == status

    await eventually(reached, timeout=timeout, what=what)


async def test_an_sse_client_that_leaves_frees_its_slot(start: StartClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("service.events.HEARTBEAT_S", 0.05)
    client = await start(server_kwargs={"handler_cancellation": False})  # as under run_app
    feed = client.app[FEED]
    for _ in range(3):
        response = await client.get("/api/admin/models/civitai-map/events", headers=AUTH)
        await next_event(response)
        response.close()

    async def freed() -> bool:
        return not feed.subscriptions

    await eventually(freed, what="slots of departed clients freed")


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
        return client.app[WATCHER].live.is_set() and not client.app[LIBRARY].rewatch_wanted.is_set() and client.app[LIBRARY].links > 0

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


@pytest.mark.parametrize(
    ("dest", "where"),
    [("loras", "loras/sdxl/deep"), ("diffusion_models", "unet"), ("loras", "extra_loras")],
    ids=["subfolder", "alias", "extra-root"],
)
async def test_remove_finds_a_file_just_written_anywhere_the_map_would(
    start: StartClient, models_dir: Path, catalog_dir: Path, tmp_path: Path, dest: str, where: str
) -> None:
    (tmp_path / "extra.yaml").write_text(f"mine:\n  base_path: {tmp_path}\n  loras: extra_loras\n")
    (tmp_path / "extra_loras").mkdir()
    write_json(catalog_dir / "models.json", catalog(entry(4, "fresh.safetensors", dest)))
    client = await start(extra_model_paths=tmp_path / "extra.yaml", watch_force_polling=True, watch_poll_interval_ms=60_000)
    base = tmp_path if where.startswith("extra") else models_dir
    touch(base / where / "fresh.safetensors")  # the poller will not notice for a minute
    response = await client.delete("/api/admin/models/fresh.safetensors/catalog", headers=AUTH)
    assert response.status == 409, await response.text()


async def test_a_promote_retried_after_a_foreign_edit_still_answers_promoted(
    start: StartClient, catalog_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_json(catalog_dir / "models.json", catalog(entry(7, "l7.safetensors", "loras"), category="loras"))
    client = await start()
    from service.store import CatalogStore

    original = CatalogStore.write
    edited = False

    def write_then_edit_models(self: CatalogStore, reading):  # type: ignore[no-untyped-def]
        nonlocal edited
        if self.name == "models" and not edited:  # a program that takes no lock saves models.json now
            edited = True
            doc = read_json(self.path)
            doc["note"] = "edited by hand"
            replace_json(self.path, doc)
        return original(self, reading)

    monkeypatch.setattr(CatalogStore, "write", write_then_edit_models)
    answer = await (await client.post("/api/admin/civitai/promote-to-lora/7", headers=AUTH)).json()
    assert answer["status"] == "promoted"
    models = read_json(catalog_dir / "models.json")
    assert models["note"] == "edited by hand" and all(not c["models"] for c in models["categories"])


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
