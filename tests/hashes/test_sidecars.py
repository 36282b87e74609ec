"""Other tools' sidecars, through the real app on real files: each format identifies its file at
once without CivitAI, the hasher confirms it, and stale, lying and hostile ones are not trusted."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from service.hashes import hasher as hasher_module
from service.hashes.digest import Cancelled
from service.sidecars.formats import MAX_SIDECAR_BYTES
from service.sidecars.formats import SIDECARS as SIDECAR_FORMATS

from ..conftest import StartClient, get_map
from ..helpers import AUTH, eventually, touch
from .fake_civitai import fake_civitai, sha256
from .test_hashing_api import HASHING, hashing_idle, ready_json


@pytest.fixture
def held_hashing(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """The hashing of the files whose paths the test puts in this set waits until the test ends,
    as a huge file's would, without reading gigabytes (a stop still cancels it)."""
    held: set[str] = set()
    release = threading.Event()
    real = hasher_module.sha256_of

    def held_back(key: Any, progress: list[int] | None = None, cancel: threading.Event | None = None) -> str:
        while str(key.path) in held and not release.wait(0.01):
            if cancel is not None and cancel.is_set():
                raise Cancelled(key.path)
        return real(key, progress, cancel)

    monkeypatch.setattr(hasher_module, "sha256_of", held_back)
    yield held
    release.set()

LORA = b"a lora from another manager " * 2000


def lora_manager(data: bytes, version_id: int, model_id: int, name: str) -> dict[str, Any]:
    """LoRA Manager's `<name>.metadata.json`, as its LoraMetadata dataclass writes it."""
    return {
        "file_name": Path(name).stem,
        "model_name": "Fancy Lora",
        "file_path": f"/comfy/models/loras/{name}",
        "size": len(data),
        "modified": 1764000000.0,
        "sha256": sha256(data),
        "base_model": "SDXL 1.0",
        "preview_url": "",
        "notes": "",
        "from_civitai": True,
        "civitai": {
            "id": version_id,
            "modelId": model_id,
            "name": "v2.0",
            "baseModel": "SDXL 1.0",
            "trainedWords": ["fancy"],
            "model": {"name": "Fancy Lora", "type": "LORA", "tags": []},
            "files": [{"id": 7001, "name": name, "sizeKB": len(data) / 1024, "type": "Model", "hashes": {"SHA256": sha256(data).upper()}, "primary": True}],
        },
    }


def stability_matrix(data: bytes, version_id: int, model_id: int) -> dict[str, Any]:
    """Stability Matrix's `<name>.cm-info.json` (ConnectedModelInfo, default .NET casing)."""
    return {
        "ModelId": model_id,
        "ModelName": "Fancy Lora",
        "ModelDescription": "<p>html</p>",
        "Nsfw": False,
        "Tags": ["style"],
        "ModelType": "LORA",
        "VersionId": version_id,
        "VersionName": "v2.0",
        "VersionDescription": None,
        "BaseModel": "SDXL 1.0",
        "FileMetadata": {"Fp": "fp16", "Size": "pruned", "Format": "SafeTensor"},
        "ImportedAt": "2026-11-01T10:00:00+00:00",
        "Hashes": {"SHA256": sha256(data).upper(), "BLAKE3": "00"},
        "TrainedWords": ["fancy"],
    }


def civitai_info(data: bytes, version_id: int, model_id: int, name: str) -> dict[str, Any]:
    """Civitai Helper's `<name>.civitai.info`: CivitAI's by-hash answer as it came."""
    return {
        "id": version_id,
        "modelId": model_id,
        "name": "v2.0",
        "baseModel": "SDXL 1.0",
        "trainedWords": ["fancy"],
        "model": {"name": "Fancy Lora", "type": "LORA", "nsfw": False},
        "files": [
            {"name": "other.pt", "sizeKB": 12.0, "type": "Training Data", "hashes": {"SHA256": "AB" * 32}, "primary": False},
            {"id": 7002, "name": name, "sizeKB": len(data) / 1024, "type": "Model", "hashes": {"SHA256": sha256(data).upper()}, "primary": True},
        ],
        "images": [{"url": "https://image.civitai.test/1.jpeg", "nsfw": "None"}],
    }


SIDECARS = {
    "metadata.json": lambda data, name: orjson.dumps(lora_manager(data, 901, 90, name)),
    "cm-info.json": lambda data, name: orjson.dumps(stability_matrix(data, 901, 90)),
    "civitai.info": lambda data, name: orjson.dumps(civitai_info(data, 901, 90, name)),
}


def write_sidecar(model: Path, suffix: str, body: bytes, *, older: bool = False) -> Path:
    path = model.with_name(f"{model.stem}.{suffix}")
    path.write_bytes(body)
    if older:
        stat = model.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - 10**9))
    return path


async def entry_of(client: TestClient, version_id: int) -> dict[str, Any] | None:
    return (await get_map(client))["by_version"].get(str(version_id))


@pytest.mark.parametrize("suffix", sorted(SIDECARS))
async def test_each_format_identifies_its_file_with_no_civitai_call(start: StartClient, models_dir: Path, suffix: str) -> None:
    model = touch(models_dir / "loras" / "fancy.safetensors", LORA)
    write_sidecar(model, suffix, SIDECARS[suffix](LORA, "fancy.safetensors"))
    with fake_civitai() as civitai:
        client = await start(**HASHING)
        await hashing_idle(client, 1)
        shown = await entry_of(client, 901)
    assert civitai.calls == 0, "a sidecar with ids spares the lookup"
    assert shown is not None and shown["civitai_model_id"] == 90 and shown["status"] == "present"
    assert shown["name"].startswith("Fancy Lora") and shown["base_model"] == "SDXL 1.0"
    assert shown["identified_by"] == "hash", "confirmed by the background hasher"
    hashing = (await ready_json(client))["hashing"]
    assert hashing["identified"] == 1 and hashing["identified_by_sidecar"] == 0 and hashing["sidecars_caught"] == 0


async def test_a_sidecar_with_only_a_hash_is_looked_up_by_that_hash(start: StartClient, models_dir: Path) -> None:
    model = touch(models_dir / "loras" / "bare.safetensors", LORA)
    write_sidecar(model, "sha256", f"{sha256(LORA)}  bare.safetensors\n".encode())
    with fake_civitai() as civitai:
        civitai.knows(LORA, 902, model_id=91)
        client = await start(**HASHING)
        await hashing_idle(client, 1)
        shown = await entry_of(client, 902)
    assert shown is not None and shown["identified_by"] == "hash"
    assert civitai.calls == 1


async def test_files_named_by_sidecars_are_shown_before_any_is_hashed(start: StartClient, models_dir: Path, held_hashing: set[str]) -> None:
    big = touch(models_dir / "checkpoints" / "big.safetensors", b"a big checkpoint")
    held_hashing.add(str(big))  # hashing it takes a while, and files with a sidecar are hashed after it
    model = touch(models_dir / "loras" / "fancy.safetensors", LORA)
    write_sidecar(model, "cm-info.json", SIDECARS["cm-info.json"](LORA, model.name))
    with fake_civitai() as civitai:
        civitai.knows(b"never asked", 1)
        client = await start(**HASHING)

        async def shown() -> bool:
            return await entry_of(client, 901) is not None

        await eventually(shown, timeout=10, what="the sidecar's version in the map")
        first = await entry_of(client, 901)
        hashing = (await ready_json(client))["hashing"]
    assert first is not None and first["identified_by"] == "sidecar" and first["status"] == "present"
    assert hashing["hashed_this_run"] == 0 and hashing["identified_by_sidecar"] == 1


async def test_a_lying_sidecar_is_caught_by_the_hash_and_logged_once(start: StartClient, models_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = touch(models_dir / "loras" / "liar.safetensors", LORA)
    lie = stability_matrix(b"other bytes", 903, 92)
    write_sidecar(model, "cm-info.json", orjson.dumps(lie))
    caplog.set_level(logging.WARNING)
    with fake_civitai() as civitai:
        civitai.knows(LORA, 904, model_id=93)
        client = await start(**HASHING)
        await hashing_idle(client, 1)

        async def truth_shown() -> bool:
            return await entry_of(client, 904) is not None

        await eventually(truth_shown, what="the version of the real bytes")
        body = await get_map(client)
    assert "903" not in body["by_version"], "the lie is dropped"
    assert body["by_version"]["904"]["identified_by"] == "hash"
    assert (await ready_json(client))["hashing"]["sidecars_caught"] == 1
    caught = [record for record in caplog.records if "the sidecar is not trusted" in record.getMessage()]
    assert len(caught) == 1 and "liar.cm-info.json" in caught[0].getMessage()


@pytest.mark.parametrize(
    "case",
    ["older than the model", "another size", "not json", "not utf-8", "deep", "wrong types", "names not text", "too big", "a folder", "a list"],
)
async def test_untrustworthy_sidecars_cost_a_warning_and_nothing_else(
    start: StartClient, models_dir: Path, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    model = touch(models_dir / "loras" / "odd.safetensors", LORA)
    good = lora_manager(LORA, 905, 94, model.name)
    bodies = {
        "older than the model": orjson.dumps(good),
        "another size": orjson.dumps({**good, "size": len(LORA) + 1}),
        "not json": b"{'sha256': 1",
        "not utf-8": b'{"sha256": "\xff\xfe"}',
        "deep": b"[" * 100_000 + b"]" * 100_000,
        "wrong types": orjson.dumps({**good, "sha256": True, "civitai": {"id": True, "modelId": "94"}}),
        "names not text": orjson.dumps({**good, "civitai": {**good["civitai"], "baseModel": {"x": 1}, "model": {"name": "m", "type": 7}}}),
        "too big": b" " * (MAX_SIDECAR_BYTES + 10) + orjson.dumps(good),
        "a list": orjson.dumps([good]),
    }
    if case == "a folder":
        model.with_name("odd.metadata.json").mkdir()
    else:
        write_sidecar(model, "metadata.json", bodies[case], older=case == "older than the model")
    caplog.set_level(logging.WARNING)
    with fake_civitai() as civitai:
        civitai.knows(LORA, 906, model_id=95)
        client = await start(**HASHING)
        await hashing_idle(client, 1)
        body = await get_map(client)
    assert "905" not in body["by_version"]
    assert body["by_version"]["906"]["identified_by"] == "hash", "identified by its bytes, as if the sidecar were not there"
    assert any("sidecar not trusted" in record.getMessage() for record in caplog.records)
    assert (await client.get("/api/admin/library/duplicates", headers=AUTH)).status == 200


async def test_ids_from_sidecars_import_without_civitai(start: StartClient, models_dir: Path) -> None:
    model = touch(models_dir / "loras" / "fancy.safetensors", LORA)
    write_sidecar(model, "civitai.info", SIDECARS["civitai.info"](LORA, model.name))
    touch(models_dir / "loras" / "mystery.safetensors", b"nobody knows " * 100)
    with fake_civitai() as civitai:
        client = await start(**HASHING)
        await hashing_idle(client, 2)
        response = await client.post("/api/admin/library/import?dry_run=true", headers=AUTH)
        answer = await response.json()
    assert response.status == 200, answer
    assert [item["version_id"] for item in answer["added"]] == [901], answer["skipped"]
    assert answer["not_identified_files"] == [{"file": "mystery.safetensors", "dest": "loras", "why": "unknown_to_civitai"}]
    assert answer["not_identified_count"] == 1
    assert civitai.calls == 1, "only the file with no sidecar was asked about"


async def test_a_stability_matrix_file_is_imported_with_civitai_s_file_id(start: StartClient, models_dir: Path) -> None:
    model = touch(models_dir / "loras" / "fancy.safetensors", LORA)
    write_sidecar(model, "cm-info.json", SIDECARS["cm-info.json"](LORA, model.name))
    with fake_civitai() as civitai:
        civitai.knows(LORA, 901, model_id=90, file="fancy.safetensors")
        client = await start(**HASHING)
        await hashing_idle(client, 1)
        assert civitai.calls == 0, "the sidecar's ids identify the file"
        response = await client.post("/api/admin/library/import", headers=AUTH)
        answer = await response.json()
    assert response.status == 200 and [item["version_id"] for item in answer["added"]] == [901], answer
    assert civitai.calls == 1, "its sidecar names no CivitAI file: the import asks for the version by hash, once"


def test_the_readme_lists_each_format_with_the_fields_read() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for sidecar in SIDECAR_FORMATS:
        fields = ", ".join(field if field.startswith("the ") else f"`{field}`" for field in sidecar.fields)
        assert f"| `<name>{sidecar.suffix}` | {sidecar.tool} | {fields} |" in readme, sidecar.suffix


async def test_a_sidecar_speaks_for_its_own_file_only(start: StartClient, models_dir: Path) -> None:
    mystery = b"bytes nobody named " * 100
    touch(models_dir / "loras" / "mystery.safetensors", mystery)
    liar = touch(models_dir / "loras" / "liar.safetensors", LORA)
    write_sidecar(liar, "cm-info.json", orjson.dumps(stability_matrix(mystery, 903, 92)))  # claims the other file's bytes
    with fake_civitai() as civitai:
        client = await start(**HASHING)
        await hashing_idle(client, 2)
        body = await get_map(client)
        hashing = (await ready_json(client))["hashing"]
        asked = {h for batch in civitai.batch_calls for h in batch} | set(civitai.single_calls)
    assert hashing["sidecars_caught"] == 1
    assert "903" not in body["by_version"], "the caught lie names no other file"
    assert sha256(mystery).upper() in asked, "the other file is asked about by its own bytes"


async def test_a_sidecar_s_hash_never_reads_as_other_bytes_in_the_catalog(start: StartClient, models_dir: Path, catalog_dir: Path, held_hashing: set[str]) -> None:
    from ..helpers import catalog, entry, write_json

    write_json(catalog_dir / "loras.json", catalog(entry(1001, "pic.safetensors", "loras", hash=sha256(LORA).upper()), category="loras"))
    big = touch(models_dir / "checkpoints" / "big.safetensors", b"a big checkpoint")
    held_hashing.add(str(big))  # hashed first, and long: the sidecar's word stands meanwhile
    model = touch(models_dir / "loras" / "pic.safetensors", LORA)
    write_sidecar(model, "sha256", b"ab" * 32 + b"\n")  # stale: another hash than the catalog's
    with fake_civitai():
        client = await start(**HASHING)

        async def hinted() -> bool:
            return (await ready_json(client))["hashing"]["identified_by_sidecar"] == 1

        await eventually(hinted, timeout=10, what="the hint taken")
        shown = (await get_map(client))["by_version"]["1001"]
    assert shown["status"] == "present" and "hash_mismatch" not in shown, "only bytes read can disagree with the catalog"
