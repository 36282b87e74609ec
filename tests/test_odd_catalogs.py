"""Catalogs as people and other programs really leave them: odd ids, values orjson cannot keep,
duplicate versions, saves in place. Through the real app, on real files."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aioresponses import aioresponses

from .conftest import StartClient, get_map
from .helpers import (
    AUTH,
    CIVITAI,
    catalog,
    entry,
    eventually,
    lora_version,
    read_json,
    replace_json,
    write_json,
)
from .test_main import run_service

BIG = 123456789012345678901234567890


@pytest.fixture
def civitai() -> Iterator[aioresponses]:
    with aioresponses(passthrough=["http://127.0.0.1"]) as mocked:
        mocked.get(re.compile(rf"^{re.escape(CIVITAI)}/api/v1/model-versions/(\d+)$"), callback=_version_body, repeat=True)
        yield mocked


def _version_body(url: Any, **_kwargs: Any) -> Any:
    from aioresponses import CallbackResult

    return CallbackResult(payload=lora_version(int(str(url).rsplit("/", 1)[1])))


def all_entries(path: Path) -> list[dict[str, Any]]:
    return [e for c in read_json(path)["categories"] for e in c["models"]]


async def ready_body(client: Any) -> dict[str, Any]:
    return await (await client.get("/ready")).json()


@pytest.mark.parametrize("odd", ["²", "①", "٣", "-4", 0, 2**70])
async def test_an_entry_with_an_id_that_is_not_an_id_is_left_out_and_counted(
    start: StartClient, civitai: aioresponses, catalog_dir: Path, odd: object
) -> None:
    strange = entry(1, "strange.safetensors", civitai_version_id=odd)
    (catalog_dir / "models.json").write_text(json.dumps(catalog(strange, entry(2, "fine.safetensors"))))
    client = await start()  # used to stay 503 "building" forever
    the_map = await get_map(client)
    assert list(the_map["by_version"]) == ["2"]
    assert (await ready_body(client))["catalogs"]["models"] == {"state": "ok", "entries_with_unusable_ids": 1}
    add = await client.post("/api/admin/civitai/add/3", headers=AUTH)
    assert add.status == 200
    assert strange in all_entries(catalog_dir / "models.json")  # carried untouched


async def test_an_odd_id_introduced_while_running_neither_freezes_the_map_nor_fails_edits(
    start: StartClient, civitai: aioresponses, catalog_dir: Path
) -> None:
    client = await start()
    replace_json(catalog_dir / "models.json", catalog(entry(5, "five.safetensors", civitai_model_id="①"), entry(6, "six.safetensors")))

    async def six_shown() -> bool:
        return "6" in (await get_map(client))["by_version"]

    await eventually(six_shown, what="the outside edit in the map")
    added = await client.post("/api/admin/civitai/add/7", headers=AUTH)
    assert added.status == 200 and (await added.json())["status"] == "added"
    assert "7" in (await get_map(client))["by_version"]
    removed = await client.delete("/api/admin/models/six.safetensors/catalog", headers=AUTH)
    assert removed.status == 200
    assert "6" not in (await get_map(client))["by_version"]
    assert (await ready_body(client))["catalogs"]["models"]["entries_with_unusable_ids"] == 1


async def test_promote_moves_every_entry_of_the_version(start: StartClient, catalog_dir: Path) -> None:
    first = entry(7, "style_v7.safetensors", "loras", base_model="Illustrious")
    second = entry(7, "style_v7_alt.safetensors", "loras", base_model="Illustrious")
    write_json(catalog_dir / "models.json", catalog(first, second, category="loras"))
    client = await start()
    response = await client.post("/api/admin/civitai/promote-to-lora/7", headers=AUTH)
    assert (await response.json())["status"] == "promoted"
    assert all_entries(catalog_dir / "models.json") == []
    assert all_entries(catalog_dir / "loras.json") == [first, second]  # used to hold only the first


async def test_finishing_a_cut_short_promote_keeps_a_second_file_of_the_version(start: StartClient, catalog_dir: Path) -> None:
    moved = entry(8, "moved.safetensors", "loras")
    left = entry(8, "left.safetensors", "loras")
    write_json(catalog_dir / "models.json", catalog(moved, left, category="loras"))
    write_json(catalog_dir / "loras.json", catalog(moved, category="sdxl_loras"))
    client = await start()
    response = await client.post("/api/admin/civitai/promote-to-lora/8", headers=AUTH)
    assert (await response.json())["status"] == "already_exists"
    assert all_entries(catalog_dir / "models.json") == []
    assert all_entries(catalog_dir / "loras.json") == [moved, left]


async def test_values_orjson_cannot_keep_survive_an_edit(start: StartClient, civitai: aioresponses, catalog_dir: Path) -> None:
    deep: Any = "bottom"
    for _ in range(300):  # orjson reads 1,024 levels but writes 254
        deep = [deep]
    doc = catalog(entry(1, "a.safetensors", big_number=BIG, deep=deep))
    doc["meta"] = {"big": BIG, "deep": deep}  # around the entries too, where the cut keeps the structure
    doc["categories"][0]["note"] = BIG
    (catalog_dir / "models.json").write_text(json.dumps(doc, indent=2))
    client = await start()
    assert (await client.get("/ready")).status == 200
    for version in (9, 10):  # the second plans on the cut the first save derived
        response = await client.post(f"/api/admin/civitai/add/{version}", headers=AUTH)
        assert response.status == 200, await response.text()
    saved = json.loads((catalog_dir / "models.json").read_text())  # the standard library keeps big integers
    first = saved["categories"][0]["models"][0]
    assert first["big_number"] == BIG and isinstance(first["big_number"], int)
    assert json.dumps(first["deep"]) == json.dumps(deep)
    assert saved["meta"]["big"] == BIG and json.dumps(saved["meta"]["deep"]) == json.dumps(deep)
    assert saved["categories"][0]["note"] == BIG
    assert {"9", "10"} <= (await get_map(client))["by_version"].keys()


IN_PLACE_SAVER = """
import json, sys, time
path, stop = sys.argv[1], sys.argv[2]
saves = 0
while True:
    try:
        open(stop).close()
        break
    except FileNotFoundError:
        pass
    doc = json.loads(open(path, "rb").read())
    doc["other_program"] = doc.get("other_program", 0) + 1
    with open(path, "w") as handle:  # truncate, then write in pieces, as json.dump does
        json.dump(doc, handle, indent=2)
    saves += 1
    time.sleep(0.001)
print(saves)
"""


async def test_a_program_saving_in_place_does_not_make_adds_fail(
    start: StartClient, civitai: aioresponses, catalog_dir: Path, tmp_path: Path
) -> None:
    """Another program rewrites models.json with open('w') + json.dump about a thousand times a
    second while we add: every add succeeds, and /ready never calls the catalog unparsable."""
    client = await start()
    path, stop = catalog_dir / "models.json", tmp_path / "stop"
    saver = await asyncio.create_subprocess_exec(sys.executable, "-c", IN_PLACE_SAVER, str(path), str(stop), stdout=asyncio.subprocess.PIPE)
    answers, readiness = [], set()
    try:
        for version_id in range(100, 130):
            response = await client.post(f"/api/admin/civitai/add/{version_id}", headers=AUTH)
            answers.append((response.status, (await response.json()).get("code")))
            readiness.add((await client.get("/ready")).status)
    finally:
        stop.touch()
        out, _ = await saver.communicate()
    assert int(out) > 20  # the other program really was saving all along
    assert [a for a in answers if a[0] != 200] == []
    assert readiness == {200}


def test_a_symlinked_catalog_stops_the_start_with_one_line(tmp_path: Path) -> None:
    """Saving replaces the file, so a link would be split from its target, and edits to the target go unseen."""
    catalogs, target = tmp_path / "catalogs", tmp_path / "elsewhere" / "models.json"
    catalogs.mkdir()
    (tmp_path / "models").mkdir()
    target.parent.mkdir()
    write_json(target, catalog(entry(1, "a.safetensors")))
    (catalogs / "models.json").symlink_to(target)
    proc = run_service({"CATALOG_DIR": str(catalogs), "MODELS_DIR": str(tmp_path / "models"), "API_KEY": "k" * 20})
    _stdout, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 2
    [line] = stderr.strip().splitlines()
    assert "CATALOG_DIR" in line and "models.json is a symbolic link" in line
    assert (catalogs / "models.json").is_symlink()


async def test_huge_catalogs_are_changed_in_a_worker_process(
    start: StartClient, civitai: aioresponses, catalog_dir: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parsing and rewriting a huge catalog holds the GIL for seconds: it happens in another process,
    with the same answers, errors and write-through as in a thread."""
    import service.workers

    write_json(catalog_dir / "models.json", catalog(entry(1, "l1.safetensors", "loras"), entry(2, "on_disk.safetensors", "loras"), category="loras"))
    (models_dir / "loras" / "on_disk.safetensors").write_bytes(b"x")
    monkeypatch.setattr(service.workers, "PROCESS_BYTES", 0)  # every catalog counts as huge
    client = await start()
    added = await client.post("/api/admin/civitai/add/3", headers=AUTH)
    assert (await added.json())["status"] == "added"
    assert "3" in (await get_map(client))["by_version"]  # written through before the answer
    promoted = await client.post("/api/admin/civitai/promote-to-lora/1", headers=AUTH)
    assert (await promoted.json())["status"] == "promoted"
    assert (await get_map(client))["by_version"]["1"]["catalog"] == "loras"
    refused = await client.delete("/api/admin/models/on_disk.safetensors/catalog", headers=AUTH)
    assert refused.status == 409 and (await refused.json())["code"] == "file_on_disk"
    unknown = await client.post("/api/admin/civitai/promote-to-lora/99", headers=AUTH)
    assert unknown.status == 404 and (await unknown.json())["code"] == "not_in_catalog"


async def test_a_promote_retried_after_a_foreign_edit_still_answers_promoted(
    start: StartClient, catalog_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_json(catalog_dir / "models.json", catalog(entry(7, "l7.safetensors", "loras"), category="loras"))
    client = await start()
    from service.catalog.store import CatalogStore

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
