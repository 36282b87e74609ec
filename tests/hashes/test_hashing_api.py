"""Knowing every model on disk, through the real app: real files with known SHA256 in temp
folders, CivitAI's by-hash lookups faked. Identification, the map's truth about the disk,
import, restarts and a corrupt store."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from service.hashes.store import STORE_NAME

from ..conftest import StartClient, get_map
from ..helpers import (
    AUTH,
    MAP,
    catalog,
    entry,
    eventually,
    next_event,
    read_json,
    touch,
    write_json,
)
from .fake_civitai import fake_civitai, sha256

HASHING = {"hashing": True, "hash_settle_s": 0.0}
LORA = b"lora bytes " * 1000
OTHER = b"another model " * 777


async def ready_json(client: TestClient) -> dict[str, Any]:
    return await (await client.get("/ready")).json()


async def hashing_idle(client: TestClient, files: int) -> None:
    """Wait until the hasher has hashed `files` files and has nothing left to ask CivitAI."""

    async def idle() -> bool:
        hashing = (await ready_json(client))["hashing"]
        return hashing["state"] == "idle" and hashing["files_hashed"] >= files and hashing["waiting_for_lookup"] == 0

    await eventually(idle, timeout=10, what=f"{files} files hashed and identified")


async def shown(client: TestClient, version_id: int) -> dict[str, Any] | None:
    return (await get_map(client))["by_version"].get(str(version_id))


async def test_a_file_in_no_catalog_is_identified_and_shown_present(start: StartClient, models_dir: Path) -> None:
    touch(models_dir / "loras" / "sdxl" / "my_name.safetensors", LORA)
    with fake_civitai() as civitai:
        civitai.knows(LORA, 700, model_id=70)
        client = await start(**HASHING)
        await hashing_idle(client, 1)
        body = await get_map(client)
    assert body["by_version"]["700"] == {
        "file": "my_name.safetensors",
        "dest": "loras/sdxl",
        "name": "Lora 70 v700 [SDXL 1.0]",
        "base_model": "SDXL 1.0",
        "civitai_model_id": 70,
        "catalog": None,
        "identified_by": "hash",
        "status": "present",
    }
    assert body["by_model"]["70"] == [700]
    assert civitai.batch_calls == [[sha256(LORA).upper()]] and not civitai.single_calls
    hashing = (await ready_json(client))["hashing"]
    assert hashing["identified"] == 1 and hashing["unknown"] == 0 and hashing["civitai_calls"] == 1


async def test_uncatalogued_entries_can_be_turned_off(start: StartClient, models_dir: Path) -> None:
    touch(models_dir / "loras" / "a.safetensors", LORA)
    with fake_civitai() as civitai:
        civitai.knows(LORA, 700)
        client = await start(show_uncatalogued=False, **HASHING)
        await hashing_idle(client, 1)
        assert (await ready_json(client))["hashing"]["identified"] == 1
        assert (await get_map(client))["by_version"] == {}


async def test_an_unknown_hash_is_not_asked_again_at_the_next_start(start: StartClient, models_dir: Path) -> None:
    touch(models_dir / "checkpoints" / "homemade.safetensors", OTHER)
    with fake_civitai() as civitai:
        client = await start(**HASHING)
        await hashing_idle(client, 1)
        assert (await ready_json(client))["hashing"]["unknown"] == 1
        await client.close()
        again = await start(**HASHING)
        await hashing_idle(again, 1)
        hashing = (await ready_json(again))["hashing"]
    assert civitai.calls == 1, "an unknown hash is asked again after a day, not at every start"
    assert hashing["hashed_this_run"] == 0 and hashing["unknown"] == 1
    assert (await get_map(again))["by_version"] == {}


async def test_a_restart_hashes_no_unchanged_file_and_asks_civitai_nothing(start: StartClient, models_dir: Path) -> None:
    for index in range(5):
        touch(models_dir / "loras" / f"l{index}.safetensors", LORA + bytes([index]))
    with fake_civitai() as civitai:
        for index in range(5):
            civitai.knows(LORA + bytes([index]), 800 + index)
        client = await start(**HASHING)
        await hashing_idle(client, 5)
        assert (await ready_json(client))["hashing"]["hashed_this_run"] == 5
        await client.close()
        again = await start(**HASHING)
        await hashing_idle(again, 5)
        hashing = (await ready_json(again))["hashing"]
        assert hashing["hashed_this_run"] == 0 and hashing["identified"] == 5
        assert civitai.calls == 1  # the first start's one batch
        assert {v for v, e in (await get_map(again))["by_version"].items() if e["status"] == "present"} == {str(800 + i) for i in range(5)}


async def test_a_changed_file_is_hashed_again(start: StartClient, models_dir: Path) -> None:
    path = touch(models_dir / "loras" / "l.safetensors", LORA)
    with fake_civitai() as civitai:
        civitai.knows(LORA, 700)
        civitai.knows(OTHER, 701)
        client = await start(**HASHING)
        await hashing_idle(client, 1)
        assert await shown(client, 700) is not None
        path.write_bytes(OTHER)
        os.utime(path, ns=(1, 1))  # an old mtime: settled at once, and not the hashed file's

        async def relinked() -> bool:
            return await shown(client, 700) is None and (await shown(client, 701) or {}).get("status") == "present"

        await eventually(relinked, timeout=10, what="the new bytes identified as the other version")


async def test_a_catalogued_file_renamed_on_disk_is_present_with_where_it_is(start: StartClient, catalog_dir: Path, models_dir: Path) -> None:
    digest = sha256(LORA)
    write_json(catalog_dir / "models.json", catalog(entry(700, "catalog_name.safetensors", "loras", hash=digest.upper()), category="loras"))
    touch(models_dir / "loras" / "style" / "renamed by me.safetensors", LORA)
    with fake_civitai():
        client = await start(**HASHING)
        await hashing_idle(client, 1)
        assert await shown(client, 700) == {
            "file": "catalog_name.safetensors",
            "dest": "loras",
            "name": "Model 700",
            "base_model": "SDXL 1.0",
            "civitai_model_id": 7000,
            "catalog": "models",
            "status": "present",
            "local_file": "loras/style/renamed by me.safetensors",
        }
        (models_dir / "loras" / "style" / "renamed by me.safetensors").unlink()

        async def missing() -> bool:
            return (await shown(client, 700) or {}).get("status") == "missing"

        await eventually(missing, what="the relinked file's deletion seen")


async def test_a_catalogued_version_without_a_hash_is_found_by_what_civitai_says_the_file_is(
    start: StartClient, catalog_dir: Path, models_dir: Path
) -> None:
    write_json(catalog_dir / "models.json", catalog(entry(700, "catalog_name.safetensors", "loras"), category="loras"))
    touch(models_dir / "loras" / "downloaded_by_hand.safetensors", LORA)
    with fake_civitai() as civitai:
        civitai.knows(LORA, 700)
        client = await start(**HASHING)
        await hashing_idle(client, 1)
        found = await shown(client, 700)
    assert found is not None and found["catalog"] == "models"
    assert found["status"] == "present" and found["local_file"] == "loras/downloaded_by_hand.safetensors"


async def test_a_file_whose_bytes_are_not_the_entrys_hash_is_flagged(start: StartClient, catalog_dir: Path, models_dir: Path) -> None:
    write_json(catalog_dir / "models.json", catalog(entry(700, "model.safetensors", hash=sha256(LORA))))
    touch(models_dir / "checkpoints" / "model.safetensors", OTHER)
    with fake_civitai():
        client = await start(**HASHING)
        await hashing_idle(client, 1)
        found = await shown(client, 700)
    assert found is not None and found["status"] == "present" and found["hash_mismatch"] is True


async def test_a_file_with_the_entrys_hash_is_not_flagged(start: StartClient, catalog_dir: Path, models_dir: Path) -> None:
    write_json(catalog_dir / "models.json", catalog(entry(700, "model.safetensors", hash=sha256(LORA).upper())))
    touch(models_dir / "checkpoints" / "model.safetensors", LORA)
    with fake_civitai():
        client = await start(**HASHING)
        await hashing_idle(client, 1)
        found = await shown(client, 700)
    assert found is not None and found["status"] == "present" and "hash_mismatch" not in found


async def test_identification_is_an_sse_change(start: StartClient, models_dir: Path) -> None:
    with fake_civitai() as civitai:
        civitai.knows(LORA, 700)
        client = await start(**HASHING)
        await hashing_idle(client, 0)
        events = await client.get(f"{MAP}/events", headers=AUTH)
        assert (await next_event(events))[0] == "snapshot"
        touch(models_dir / "loras" / "new.safetensors", LORA)
        while True:
            kind, data = await next_event(events, timeout=10)
            if kind == "change" and "700" in data.get("changes", {}):
                break
        assert data["changes"]["700"] == "present"
        events.close()


async def test_a_new_file_is_hashed_once_it_has_settled(start: StartClient, models_dir: Path) -> None:
    with fake_civitai() as civitai:
        civitai.knows(LORA, 700)
        client = await start(hashing=True, hash_settle_s=0.5)
        await hashing_idle(client, 0)
        touch(models_dir / "loras" / "landed.safetensors", LORA)

        async def identified() -> bool:
            return (await shown(client, 700) or {}).get("status") == "present"

        await eventually(identified, timeout=10, what="the landed file identified")


async def test_a_rate_limited_lookup_waits_and_goes_on(start: StartClient, models_dir: Path) -> None:
    touch(models_dir / "loras" / "a.safetensors", LORA)
    with fake_civitai() as civitai:
        civitai.knows(LORA, 700)
        civitai.limited = 1
        client = await start(**HASHING)

        async def identified() -> bool:
            return (await shown(client, 700) or {}).get("status") == "present"

        await eventually(identified, timeout=15, what="identified after the 429's Retry-After")
    assert len(civitai.batch_calls) == 2


async def test_without_the_batch_call_each_hash_is_asked_alone(start: StartClient, models_dir: Path) -> None:
    touch(models_dir / "loras" / "a.safetensors", LORA)
    touch(models_dir / "loras" / "b.safetensors", OTHER)
    with fake_civitai() as civitai:
        civitai.knows(LORA, 700)
        civitai.refuse_batch = 1
        client = await start(**HASHING)
        await hashing_idle(client, 2)
        hashing = (await ready_json(client))["hashing"]
    assert sorted(civitai.single_calls) == sorted(h.upper() for h in (sha256(LORA), sha256(OTHER)))
    assert hashing["identified"] == 1 and hashing["unknown"] == 1
    assert (await shown(client, 700) or {}).get("catalog") is None


async def test_a_corrupt_store_is_set_aside_and_rebuilt(start: StartClient, catalog_dir: Path, models_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    (catalog_dir / STORE_NAME).write_bytes(b"this is not a database" * 100)
    touch(models_dir / "loras" / "a.safetensors", LORA)
    caplog.set_level(logging.WARNING, logger="service")
    with fake_civitai() as civitai:
        civitai.knows(LORA, 700)
        client = await start(**HASHING)
        await hashing_idle(client, 1)
        assert (await shown(client, 700) or {}).get("status") == "present"
    assert [p.name for p in catalog_dir.glob(f"{STORE_NAME}.unusable-*")], "the corrupt file is kept aside"
    assert any("hash store" in record.getMessage() and "unusable" in record.getMessage() for record in caplog.records)


async def test_import_dry_run_then_import(start: StartClient, catalog_dir: Path, models_dir: Path) -> None:
    write_json(catalog_dir / "models.json", catalog(entry(1, "already.safetensors")))
    touch(models_dir / "loras" / "sdxl" / "my lora.safetensors", LORA)
    touch(models_dir / "loras" / "copy of my lora.safetensors", LORA)  # a second copy: imported once
    touch(models_dir / "checkpoints" / "homemade.safetensors", OTHER)  # unknown to CivitAI
    before = (catalog_dir / "models.json").read_bytes()
    with fake_civitai() as civitai:
        civitai.knows(LORA, 700, model_id=70)
        client = await start(**HASHING)
        await hashing_idle(client, 3)
        preview = await client.post("/api/admin/library/import", params={"dry_run": "true"}, headers=AUTH)
        assert preview.status == 200, await preview.text()
        planned = await preview.json()
        assert (catalog_dir / "models.json").read_bytes() == before, "a dry run writes nothing"
        done = await client.post("/api/admin/library/import", headers=AUTH)
        assert done.status == 200, await done.text()
        imported = await done.json()
    assert planned["status"] == "dry_run" and imported["status"] == "imported"
    assert planned["added"] == imported["added"] == [
        {"file": "copy of my lora.safetensors", "dest": "loras", "version_id": 700, "name": "Lora 70 v700 [SDXL 1.0 FP16]", "category": "loras"}
    ]
    assert imported["skipped"] == [
        {"file": "my lora.safetensors", "dest": "loras/sdxl", "version_id": 700, "reason": "another_file_of_this_version"}
    ]
    assert imported["not_identified"]["unknown_to_civitai"] == 1
    saved = [e for category in read_json(catalog_dir / "models.json")["categories"] for e in category["models"]]
    added = next(e for e in saved if e.get("civitai_version_id") == 700)
    assert added["file"] == "copy of my lora.safetensors" and added["dest"] == "loras"
    assert added["hash"] == sha256(LORA).upper() and added["civitai_model_id"] == 70 and added["source"] == "civitai"
    assert (await shown(client, 700) or {}).get("catalog") == "models", "the map shows the import before the answer"
    again = await (await client.post("/api/admin/library/import", headers=AUTH)).json()
    assert again["added"] == [] and {s["reason"] for s in again["skipped"]} == {"version_in_catalog"}


async def test_import_refuses_a_bad_dry_run_flag_and_hashing_off(start: StartClient) -> None:
    client = await start(**HASHING)
    bad = await client.post("/api/admin/library/import", params={"dry_run": "maybe"}, headers=AUTH)
    assert bad.status == 400 and (await bad.json())["code"] == "bad_query"
    unauthorized = await client.post("/api/admin/library/import")
    assert unauthorized.status == 401
    off = await start(hashing=False)
    refused = await off.post("/api/admin/library/import", headers=AUTH)
    assert refused.status == 409 and (await refused.json())["code"] == "hashing_off"
    assert (await ready_json(off))["hashing"] == {"state": "off"}


async def test_an_identified_file_moved_is_shown_where_it_is_now_without_hashing_it_again(start: StartClient, models_dir: Path) -> None:
    path = touch(models_dir / "loras" / "first name.safetensors", LORA)
    with fake_civitai() as civitai:
        civitai.knows(LORA, 700)
        client = await start(**HASHING)
        await hashing_idle(client, 1)
        (models_dir / "loras" / "style").mkdir()
        path.rename(models_dir / "loras" / "style" / "second name.safetensors")

        async def moved() -> bool:
            found = await shown(client, 700) or {}
            return (found.get("file"), found.get("dest")) == ("second name.safetensors", "loras/style")

        await eventually(moved, timeout=10, what="the moved file shown under its new name")
        assert (await ready_json(client))["hashing"]["hashed_this_run"] == 1, "a rename keeps the inode: no second hash"
        (models_dir / "loras" / "style" / "second name.safetensors").unlink()

        async def gone() -> bool:
            return await shown(client, 700) is None

        await eventually(gone, timeout=10, what="the deleted file's version gone from the map")


async def test_a_store_that_cannot_be_opened_is_reported_and_the_service_runs_on(start: StartClient, catalog_dir: Path) -> None:
    (catalog_dir / STORE_NAME).mkdir()  # a folder where the database file should be: left alone
    (catalog_dir / STORE_NAME / "keep").write_text("the user's")
    client = await start(**HASHING)

    async def failed() -> bool:
        return (await ready_json(client))["hashing"]["state"] == "failed"

    await eventually(failed, what="the hasher reporting its store unusable")
    assert "hash store cannot be opened" in (await ready_json(client))["hashing"]["last_error"]
    assert (await client.get("/ready")).status == 200, "hashing is not needed to be ready"
    assert (catalog_dir / STORE_NAME / "keep").read_text() == "the user's"


async def test_empty_files_are_not_hashed(start: StartClient, models_dir: Path) -> None:
    touch(models_dir / "loras" / "placeholder.safetensors", b"")
    touch(models_dir / "loras" / "real.safetensors", LORA)
    with fake_civitai() as civitai:
        client = await start(**HASHING)
        await hashing_idle(client, 1)
        hashing = (await ready_json(client))["hashing"]
    assert hashing["files_hashed"] == 1 and hashing["files_on_disk"] == 2
    assert civitai.batch_calls == [[sha256(LORA).upper()]]


async def test_a_file_name_that_is_not_utf8_breaks_nothing(start: StartClient, catalog_dir: Path, models_dir: Path) -> None:
    """Linux allows any bytes in a name; the map is JSON. Such a file is left out, never a failure."""
    write_json(catalog_dir / "models.json", catalog(entry(700, "catalog_name.safetensors", "loras", hash=sha256(LORA))))
    bad = os.fsencode(models_dir / "loras") + b"/caf\xe9.safetensors"
    with open(bad, "wb") as handle:
        handle.write(LORA)
    with open(os.fsencode(models_dir / "loras") + b"/\xff\xfe.safetensors", "wb") as handle:
        handle.write(OTHER)
    touch(models_dir / "loras" / "fine.safetensors", LORA + b"!")
    with fake_civitai() as civitai:
        civitai.knows(OTHER, 701)
        civitai.knows(LORA + b"!", 702)
        client = await start(**HASHING)
        await hashing_idle(client, 3)
        body = await get_map(client)
        hashing = (await ready_json(client))["hashing"]
        imported = await client.post("/api/admin/library/import", params={"dry_run": "true"}, headers=AUTH)
        assert imported.status == 200, await imported.text()
        skipped = (await imported.json())["skipped"]
    assert {"file": "\\xff\\xfe.safetensors", "dest": "loras", "version_id": 701, "reason": "not_mappable"}.items() <= skipped[0].items()
    assert body["by_version"]["702"]["status"] == "present", "the other files are identified and shown"
    assert body["by_version"]["700"]["status"] in ("present", "missing")
    assert "701" not in body["by_version"]
    assert hashing["last_error"] is None


async def test_an_import_leaves_out_a_file_whose_folder_no_catalog_can_hold(start: StartClient, catalog_dir: Path, models_dir: Path) -> None:
    """A folder name that is not UTF-8, or holds a control or bidi character, is left out of an
    import: written into models.json it would make the file unreadable, or a log line lie."""
    for folder, data in ((b"caf\xe9", LORA), ("esc\x1b[2J".encode(), OTHER), ("rtl\u202eevil".encode(), LORA + b"?")):
        os.makedirs(os.fsencode(models_dir / "loras") + b"/" + folder)
        with open(os.fsencode(models_dir / "loras") + b"/" + folder + b"/a" + folder[:3] + b".safetensors", "wb") as handle:
            handle.write(data)
    touch(models_dir / "loras" / "fine.safetensors", LORA + b"!")
    with fake_civitai() as civitai:
        for version, data in ((711, LORA), (712, OTHER), (713, LORA + b"?"), (714, LORA + b"!")):
            civitai.knows(data, version)
        client = await start(**HASHING)
        await hashing_idle(client, 4)
        imported = await client.post("/api/admin/library/import", headers=AUTH)
        assert imported.status == 200, await imported.text()
        answer = await imported.json()
        assert [item["version_id"] for item in answer["added"]] == [714]
        assert sorted(item["version_id"] for item in answer["skipped"] if item["reason"] == "not_mappable") == [711, 712, 713]
        assert (await client.get("/ready")).status == 200
    assert [e["civitai_version_id"] for c in read_json(catalog_dir / "models.json")["categories"] for e in c["models"]] == [714]


async def test_a_store_held_by_another_process_at_start_is_opened_once_it_is_free(
    start: StartClient, catalog_dir: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("service.hashes.store.BUSY_TIMEOUT_S", 0.05)
    monkeypatch.setattr("service.hashes.hasher.STORE_RETRY_S", (0.1,))
    holder = sqlite3.connect(catalog_dir / STORE_NAME, isolation_level=None)  # another replica, mid-write
    holder.execute("BEGIN EXCLUSIVE")
    touch(models_dir / "loras" / "a.safetensors", LORA)
    with fake_civitai() as civitai:
        civitai.knows(LORA, 700)
        client = await start(**HASHING)

        async def waiting() -> bool:
            hashing = (await ready_json(client))["hashing"]
            return hashing["state"] == "failed" and "trying again" in (hashing["last_error"] or "")

        await eventually(waiting, what="the hasher waiting for its store")
        holder.execute("ROLLBACK")
        holder.close()
        await hashing_idle(client, 1)
        assert (await shown(client, 700) or {}).get("status") == "present"
    assert not list(catalog_dir.glob(f"{STORE_NAME}.unusable-*"))


async def test_an_import_says_what_no_waiting_mends_before_not_ready(start: StartClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the index is built: a bad flag is 400 and hashing off is 409, not 503 (retrying mends neither)."""
    from service.library.library import Library

    held = asyncio.Event()
    real_start = Library.start

    async def held_start(self: Library) -> None:
        await held.wait()
        await real_start(self)

    monkeypatch.setattr(Library, "start", held_start)
    client = await start(wait_ready=False, hashing=False)
    bad = await client.post("/api/admin/library/import", headers=AUTH, params={"dry_run": "maybe"})
    assert (bad.status, (await bad.json())["code"]) == (400, "bad_query")
    off = await client.post("/api/admin/library/import", headers=AUTH)
    assert (off.status, (await off.json())["code"]) == (409, "hashing_off")
    held.set()
