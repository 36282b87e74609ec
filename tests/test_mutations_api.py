"""Add, promote and remove through the real app, with CivitAI faked by aioresponses."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aioresponses import aioresponses
from yarl import URL

from service.catalog import transaction

from .conftest import StartClient, get_map
from .helpers import (
    AUTH,
    CIVITAI,
    catalog,
    civitai_version,
    entry,
    lora_version,
    read_json,
    touch,
    write_json,
)

VERSION_URL = re.compile(rf"^{re.escape(CIVITAI)}/api/v1/model-versions/(\d+)$")


@pytest.fixture
def civitai() -> Iterator[aioresponses]:
    with aioresponses(passthrough=["http://127.0.0.1"]) as mocked:
        yield mocked


def serve(civitai: aioresponses, body: dict[str, Any], **kwargs: Any) -> None:
    civitai.get(f"{CIVITAI}/api/v1/model-versions/{body['id']}", payload=body, repeat=True, **kwargs)


def models_entries(catalog_dir: Path) -> list[dict[str, Any]]:
    return [e for c in read_json(catalog_dir / "models.json")["categories"] for e in c["models"]]


async def test_add_writes_the_entry_and_the_map_shows_it_at_once(start: StartClient, civitai: aioresponses, catalog_dir: Path) -> None:
    client = await start()
    serve(civitai, civitai_version("checkpoint_illustrious"))
    response = await client.post("/api/admin/civitai/add/2514310", headers=AUTH)
    assert response.status == 200
    assert await response.json() == {
        "status": "added",
        "file": "waiIllustriousSDXL_v160.safetensors",
        "name": "WAI-illustrious-SDXL v16.0 [Illustrious FP16]",
        "category": "checkpoints",
        "dest": "checkpoints",
    }
    doc = read_json(catalog_dir / "models.json")
    assert doc["version"] == 1 and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", doc["date"])
    [added] = models_entries(catalog_dir)
    assert added["civitai_version_id"] == 2514310 and added["civitai_model_id"] == 827184
    assert added["source"] == "civitai" and added["hash"]
    assert (await get_map(client))["by_version"]["2514310"]["status"] == "missing"  # no waiting for the watcher


async def test_add_sends_the_civitai_key_as_bearer(start: StartClient, civitai: aioresponses) -> None:
    client = await start(civitai_api_key="civitai-secret-token")
    serve(civitai, lora_version(11))
    assert (await client.post("/api/admin/civitai/add/11", headers=AUTH)).status == 200
    [call] = next(iter(civitai.requests.values()))
    assert call.kwargs["headers"]["Authorization"] == "Bearer civitai-secret-token"


async def test_flux_checkpoint_goes_to_diffusion_models(start: StartClient, civitai: aioresponses) -> None:
    client = await start()
    serve(civitai, civitai_version("checkpoint_flux_dev"))
    answer = await (await client.post("/api/admin/civitai/add/1161420", headers=AUTH)).json()
    assert (answer["category"], answer["dest"]) == ("diffusion_models", "diffusion_models")


async def test_already_exists_by_version_or_by_file_in_either_catalog(start: StartClient, civitai: aioresponses, catalog_dir: Path) -> None:
    write_json(catalog_dir / "models.json", catalog(entry(2514310, "other_name.safetensors")))
    write_json(catalog_dir / "loras.json", catalog(entry(99, "lora_12.safetensors", "loras"), category="sdxl_loras"))
    client = await start()
    by_version = await client.post("/api/admin/civitai/add/2514310", headers=AUTH)
    assert await by_version.json() == {"status": "already_exists", "file": "other_name.safetensors"}
    assert not civitai.requests  # answered from the index, CivitAI not asked
    serve(civitai, lora_version(12))
    by_file = await client.post("/api/admin/civitai/add/12", headers=AUTH)
    assert await by_file.json() == {"status": "already_exists", "file": "lora_12.safetensors"}


async def test_restricted_versions_add_nothing(start: StartClient, civitai: aioresponses, catalog_dir: Path) -> None:
    client = await start()
    serve(civitai, civitai_version("generation_only"))
    answer = await (await client.post("/api/admin/civitai/add/1790032", headers=AUTH)).json()
    assert answer["status"] == "restricted" and "Generation" in answer["reason"]
    assert models_entries(catalog_dir) == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({**lora_version(21), "model": {"name": "x", "type": "Poses"}}, 422, "unsupported_type"),
        (civitai_version("training_data_only"), 422, "no_model_file"),
        (lora_version(21, file="../../etc/passwd"), 502, "unsafe_file_name"),
        (lora_version(21, file="evil\x00.safetensors"), 502, "unsafe_file_name"),
        (lora_version(21, file="C:\\evil.safetensors"), 502, "unsafe_file_name"),
        ({**lora_version(21), "id": 22}, 502, "upstream_bad_body"),
        ({**lora_version(21), "modelId": 0}, 502, "upstream_bad_body"),
        ({**lora_version(21), "modelId": -5}, 502, "upstream_bad_body"),
        ({**lora_version(21), "files": [{**lora_version(21)["files"][0], "id": 0}]}, 502, "upstream_bad_body"),
    ],
    ids=["unsupported-type", "no-model-file", "traversal", "nul", "windows-path", "wrong-id", "model-id-0", "model-id-negative", "file-id-0"],
)
async def test_unusable_versions_are_refused_and_nothing_is_written(
    start: StartClient, civitai: aioresponses, catalog_dir: Path, body: dict[str, Any], status: int, code: str
) -> None:
    client = await start()
    before = (catalog_dir / "models.json").read_bytes()
    civitai.get(f"{CIVITAI}/api/v1/model-versions/21", payload=body)
    response = await client.post("/api/admin/civitai/add/21", headers=AUTH)
    assert response.status == status
    assert (await response.json())["code"] == code
    assert (catalog_dir / "models.json").read_bytes() == before


@pytest.mark.parametrize(
    ("upstream", "status", "code"),
    [
        ({"status": 404}, 404, "civitai_not_found"),
        ({"status": 401}, 502, "civitai_key_required"),
        ({"status": 403}, 502, "civitai_key_required"),
        ({"status": 429, "headers": {"Retry-After": "17"}}, 503, "civitai_rate_limited"),
        ({"status": 500}, 502, "civitai_error"),
        ({"status": 503}, 502, "civitai_error"),
        ({"status": 200, "body": "<html>maintenance</html>"}, 502, "upstream_bad_body"),
        ({"status": 200, "body": "[1, 2]"}, 502, "upstream_bad_body"),
        ({"exception": TimeoutError()}, 504, "upstream_timeout"),
        ({"exception": __import__("aiohttp").ClientConnectionError("refused")}, 502, "upstream_unreachable"),
    ],
)
async def test_upstream_faults_map_to_clear_errors(
    start: StartClient, civitai: aioresponses, upstream: dict[str, Any], status: int, code: str
) -> None:
    client = await start(civitai_api_key="civitai-secret-token")
    civitai.get(f"{CIVITAI}/api/v1/model-versions/31", **upstream)
    response = await client.post("/api/admin/civitai/add/31", headers=AUTH)
    assert response.status == status
    body = await response.json()
    assert body["code"] == code and body["detail"]
    assert "civitai-secret-token" not in await response.text()
    if status == 503:
        assert response.headers["Retry-After"] == "17"


@pytest.mark.parametrize("raw", ["abc", "0", "-5", "1.5", str(2**53), str(2**63), "9" * 20, "１２"])
async def test_bad_version_ids_are_400(start: StartClient, raw: str) -> None:
    client = await start()
    for route in ("add", "promote-to-lora"):
        response = await client.post(f"/api/admin/civitai/{route}/{raw}", headers=AUTH)
        assert response.status == 400, (route, raw)
        assert (await response.json())["code"] == "invalid_version_id"


async def test_promote_moves_the_entry_and_picks_the_category(start: StartClient, catalog_dir: Path) -> None:
    kept = {"name": "HF", "file": "hf.safetensors", "dest": "vae", "x-custom": [1, 2]}
    write_json(
        catalog_dir / "models.json",
        catalog(entry(41, "wan.safetensors", "loras", base_model="Wan Video 14B t2v", odd_field="kept"), kept, category="loras"),
    )
    client = await start()
    response = await client.post("/api/admin/civitai/promote-to-lora/41", headers=AUTH)
    assert await response.json() == {"status": "promoted", "file": "wan.safetensors", "category": "wan_loras"}
    loras = read_json(catalog_dir / "loras.json")
    [category] = loras["categories"]
    assert category["id"] == "wan_loras" and category["models"][0]["odd_field"] == "kept"
    assert models_entries(catalog_dir) == [kept]
    assert (await get_map(client))["by_version"]["41"]["catalog"] == "loras"
    again = await client.post("/api/admin/civitai/promote-to-lora/41", headers=AUTH)
    assert await again.json() == {"status": "already_exists", "file": "wan.safetensors"}


async def test_a_promote_never_drops_the_entry_when_loras_json_is_saved_over_between_its_two_saves(
    start: StartClient, catalog_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A program that takes no lock saves loras.json from a reading made before the promote's
    # save of it, after that save and before the promote writes models.json without the entry.
    write_json(catalog_dir / "models.json", catalog(entry(43, "moved.safetensors", "loras"), category="loras"))
    write_json(catalog_dir / "loras.json", catalog(entry(44, "other.safetensors", "loras"), category="sdxl_loras"))
    stale_loras = (catalog_dir / "loras.json").read_bytes()
    real_saved, clobbered = transaction._saved, []

    def saved_then_an_outside_save(reading: Any, written: Any, name: str) -> Any:
        done = real_saved(reading, written, name)  # the promote's save of loras.json, taken into the map
        if name == "loras" and not clobbered:
            clobbered.append(True)
            (catalog_dir / "loras.json").write_bytes(stale_loras)  # in place, as some editors save
        return done

    monkeypatch.setattr(transaction, "_saved", saved_then_an_outside_save)
    client = await start()
    response = await client.post("/api/admin/civitai/promote-to-lora/43", headers=AUTH)
    assert (await response.json())["status"] == "promoted" and clobbered
    in_loras = {e["civitai_version_id"] for c in read_json(catalog_dir / "loras.json")["categories"] for e in c["models"]}
    assert in_loras == {43, 44}
    assert models_entries(catalog_dir) == []


@pytest.mark.parametrize(
    ("base_model", "category"),
    [("Flux.1 D", "flux_loras"), ("Pony", "sdxl_loras"), ("Illustrious", "sdxl_loras"), ("NoobAI", "sdxl_loras"), ("SD 1.5", "sd15_loras"), ("SD 3.5", "other_loras")],
)
async def test_promote_categories(start: StartClient, catalog_dir: Path, base_model: str, category: str) -> None:
    write_json(catalog_dir / "models.json", catalog(entry(42, "l.safetensors", "loras", base_model=base_model), category="loras"))
    client = await start()
    answer = await (await client.post("/api/admin/civitai/promote-to-lora/42", headers=AUTH)).json()
    assert answer["category"] == category


async def test_promote_errors(start: StartClient, catalog_dir: Path) -> None:
    write_json(catalog_dir / "models.json", catalog(entry(51, "ckpt.safetensors", "checkpoints")))
    client = await start()
    not_lora = await client.post("/api/admin/civitai/promote-to-lora/51", headers=AUTH)
    assert not_lora.status == 400 and (await not_lora.json())["code"] == "not_a_lora"
    unknown = await client.post("/api/admin/civitai/promote-to-lora/52", headers=AUTH)
    assert unknown.status == 404 and (await unknown.json())["code"] == "not_in_catalog"


async def test_promote_finishes_a_move_a_crash_cut_short(start: StartClient, catalog_dir: Path) -> None:
    lora = entry(61, "half.safetensors", "loras")
    write_json(catalog_dir / "models.json", catalog(lora, category="loras"))
    write_json(catalog_dir / "loras.json", catalog(lora, category="sdxl_loras"))
    client = await start()
    assert (await get_map(client))["by_version"]["61"]["catalog"] == "loras"  # loras.json wins at load
    answer = await (await client.post("/api/admin/civitai/promote-to-lora/61", headers=AUTH)).json()
    assert answer["status"] == "already_exists"
    assert models_entries(catalog_dir) == []


async def test_remove(start: StartClient, catalog_dir: Path, models_dir: Path) -> None:
    write_json(catalog_dir / "models.json", catalog(entry(71, "gone.safetensors"), entry(72, "here.safetensors"), entry(73, "deep.safetensors")))
    touch(models_dir / "checkpoints" / "here.safetensors")
    touch(models_dir / "checkpoints" / "a" / "b" / "deep.safetensors")
    client = await start()
    removed = await client.delete("/api/admin/models/gone.safetensors/catalog", headers=AUTH)
    assert await removed.json() == {"status": "removed", "file": "gone.safetensors", "catalog": "models", "catalogs": ["models"]}
    assert "71" not in (await get_map(client))["by_version"]
    for on_disk in ("here.safetensors", "deep.safetensors"):
        conflict = await client.delete(f"/api/admin/models/{on_disk}/catalog", headers=AUTH)
        assert conflict.status == 409 and (await conflict.json())["code"] == "file_on_disk"
    missing = await client.delete("/api/admin/models/never.safetensors/catalog", headers=AUTH)
    assert missing.status == 404
    assert {e["file"] for e in models_entries(catalog_dir)} == {"here.safetensors", "deep.safetensors"}


async def test_remove_never_looks_outside_the_models_folder(start: StartClient, catalog_dir: Path, models_dir: Path) -> None:
    # A hand-written dest that climbs out: the map can never call its file present, so it is not
    # "on disk" for a remove either, and nothing above the models folder is walked to find out.
    write_json(catalog_dir / "models.json", catalog(entry(74, "above.safetensors", ".."), entry(75, "sibling.safetensors", "../outside/a")))
    touch(models_dir.parent / "outside" / "a" / "b" / "above.safetensors")
    touch(models_dir.parent / "outside" / "a" / "sibling.safetensors")
    client = await start()
    by_version = (await get_map(client))["by_version"]
    assert by_version["74"]["status"] == by_version["75"]["status"] == "missing"
    for file in ("above.safetensors", "sibling.safetensors"):
        removed = await client.delete(f"/api/admin/models/{file}/catalog", headers=AUTH)
        assert removed.status == 200 and (await removed.json())["status"] == "removed"
    assert models_entries(catalog_dir) == []


async def test_remove_finds_the_file_in_whichever_catalog_holds_it(start: StartClient, catalog_dir: Path, models_dir: Path) -> None:
    write_json(catalog_dir / "models.json", catalog(entry(81, "ckpt.safetensors"), entry(83, "both.safetensors", "loras")))
    write_json(catalog_dir / "loras.json", catalog(entry(82, "style.safetensors", "loras"), entry(83, "both.safetensors", "loras"), category="sdxl_loras"))
    client = await start()
    style = await client.delete("/api/admin/models/style.safetensors/catalog", headers=AUTH)
    assert await style.json() == {"status": "removed", "file": "style.safetensors", "catalog": "loras", "catalogs": ["loras"]}
    both = await client.delete("/api/admin/models/both.safetensors/catalog", headers=AUTH)  # a promote cut short
    assert await both.json() == {"status": "removed", "file": "both.safetensors", "catalog": "models", "catalogs": ["models", "loras"]}
    assert [m for c in read_json(catalog_dir / "loras.json")["categories"] for m in c["models"]] == []
    assert [e["file"] for e in models_entries(catalog_dir)] == ["ckpt.safetensors"]
    assert set((await get_map(client))["by_version"]) == {"81"}
    neither = await client.delete("/api/admin/models/style.safetensors/catalog", headers=AUTH)
    assert neither.status == 404 and "neither catalog" in (await neither.json())["detail"]


async def test_remove_sees_a_file_the_watcher_has_not_reported_yet(start: StartClient, catalog_dir: Path, models_dir: Path) -> None:
    write_json(catalog_dir / "models.json", catalog(entry(74, "fresh.safetensors")))
    client = await start()
    touch(models_dir / "checkpoints" / "fresh.safetensors")
    response = await client.delete("/api/admin/models/fresh.safetensors/catalog", headers=AUTH)
    assert response.status == 409


@pytest.mark.parametrize("path", ["..%2F..%2Fetc%2Fpasswd", "a%5Cb.safetensors", "%2E%2E", "x%00y"])
async def test_hostile_path_parameters_are_refused(start: StartClient, catalog_dir: Path, path: str) -> None:
    client = await start()
    before = (catalog_dir / "models.json").read_bytes()
    response = await client.delete(f"/api/admin/models/{path}/catalog", headers=AUTH)
    assert 400 <= response.status < 500
    assert set(await response.json()) == {"detail", "code"}
    assert (catalog_dir / "models.json").read_bytes() == before


async def test_mutations_refuse_a_catalog_that_does_not_parse(start: StartClient, civitai: aioresponses, catalog_dir: Path) -> None:
    client = await start()
    broken = b'{"categories": [ oops'
    (catalog_dir / "models.json").write_bytes(broken)
    serve(civitai, lora_version(81))
    for method, path in [("POST", "/api/admin/civitai/add/81"), ("POST", "/api/admin/civitai/promote-to-lora/81"), ("DELETE", "/api/admin/models/x.safetensors/catalog")]:
        response = await client.request(method, path, headers=AUTH)
        assert response.status == 503, path
        assert (await response.json())["code"] == "catalog_unparsable"
    assert (catalog_dir / "models.json").read_bytes() == broken


async def test_own_writes_do_not_trigger_a_reload(start: StartClient, civitai: aioresponses, catalog_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    client = await start()
    serve(civitai, lora_version(91))
    caplog.set_level(logging.INFO, logger="service")
    caplog.clear()
    assert (await client.post("/api/admin/civitai/add/91", headers=AUTH)).status == 200
    serve(civitai, lora_version(92))
    assert (await client.post("/api/admin/civitai/add/92", headers=AUTH)).status == 200
    write_json(catalog_dir / "loras.json", catalog(entry(93, "marker.safetensors", "loras")))  # a later, foreign change

    async def marker_seen() -> bool:
        return "93" in (await get_map(client))["by_version"]

    from .helpers import eventually

    await eventually(marker_seen)  # batches arrive in order: our own writes' events have been handled by now
    reloads = [r.getMessage() for r in caplog.records if "loaded" in r.getMessage()]
    assert reloads == ["loras.json loaded: 1 version, 1 changed"]


@pytest.mark.parametrize(
    "name",
    [
        ".hidden.safetensors", " lead.safetensors", "trail.safetensors ", "C:drive.safetensors", "what?.safetensors",
        "CON.safetensors", "end.", "...", "100%.safetensors", "zero\u200bwidth.safetensors", "bell\x07.safetensors",
    ],
)
async def test_any_catalogued_name_can_be_removed(start: StartClient, catalog_dir: Path, name: str) -> None:
    """Names this service would never add from CivitAI can still be in a hand-written catalog: they must be removable."""
    write_json(catalog_dir / "models.json", catalog(entry(75, name), entry(76, "kept.safetensors")))
    client = await start()
    response = await client.delete(f"/api/admin/models/{quote(name, safe='')}/catalog", headers=AUTH)
    assert response.status == 200, await response.text()
    assert await response.json() == {"status": "removed", "file": name, "catalog": "models", "catalogs": ["models"]}
    assert [e["file"] for e in models_entries(catalog_dir)] == ["kept.safetensors"]


@pytest.mark.parametrize("name", [".", ".."])
async def test_a_dot_name_sent_as_written_is_removed(start: StartClient, catalog_dir: Path, name: str) -> None:
    """Browsers and yarl resolve %2E%2E as '..' before sending; a client that sends the path as written can remove it."""
    write_json(catalog_dir / "models.json", catalog(entry(75, name), entry(76, "kept.safetensors")))
    client = await start()
    raw = "".join(f"%{ord(char):02X}" for char in name)
    response = await client.session.delete(URL(f"{client.make_url('/')}api/admin/models/{raw}/catalog", encoded=True), headers=AUTH)
    assert response.status == 200, await response.text()
    assert [e["file"] for e in models_entries(catalog_dir)] == ["kept.safetensors"]


@pytest.mark.parametrize("path", ["a%2Fb.safetensors", "a%5Cb.safetensors", "x%00y"])
async def test_a_name_with_a_separator_or_nul_is_a_400_about_the_file_name(start: StartClient, path: str) -> None:
    client = await start()
    response = await client.delete(f"/api/admin/models/{path}/catalog", headers=AUTH)
    assert response.status == 400
    body = await response.json()
    assert body["code"] == "unsafe_file_name" and "file name" in body["detail"] and "folder" not in body["detail"]


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


async def test_an_added_entry_says_when_it_was_added(start: StartClient, catalog_dir: Path, civitai: aioresponses) -> None:
    civitai.get(f"{CIVITAI}/api/v1/model-versions/4242", payload=lora_version(4242))
    client = await start()
    response = await client.post("/api/admin/civitai/add/4242", headers=AUTH)
    assert response.status == 200, await response.text()
    [added] = [e for c in read_json(catalog_dir / "models.json")["categories"] for e in c["models"] if e["civitai_version_id"] == 4242]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", added["added_at"])
    assert (await get_map(client))["by_version"]["4242"]["added_at"] == added["added_at"]
