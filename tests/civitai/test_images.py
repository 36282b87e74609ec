"""The image panel: an image's resources from CivitAI, resolved by version id or hash, with their
catalog status; LoRAs named only in the prompt; the workflow family. CivitAI faked."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aioresponses import aioresponses

from ..conftest import StartClient
from ..helpers import AUTH, CIVITAI, catalog, entry, touch, write_json

IMAGE_ID = 4242


@pytest.fixture
def civitai() -> Iterator[aioresponses]:
    with aioresponses(passthrough=["http://127.0.0.1"]) as mocked:
        yield mocked


def version(version_id: int, model_type: str, model_name: str, base_model: str) -> dict[str, Any]:
    return {"id": version_id, "modelId": version_id * 10, "name": f"v{version_id}", "baseModel": base_model, "model": {"name": model_name, "type": model_type}, "files": []}


def serve_image(civitai: aioresponses, meta: dict[str, Any]) -> None:
    civitai.get(
        re.compile(rf"^{re.escape(CIVITAI)}/api/v1/images\?.*imageId={IMAGE_ID}.*$"),
        payload={"items": [{"id": IMAGE_ID, "url": "https://image.civitai.com/x.jpeg", "baseModel": "Illustrious", "meta": meta}], "metadata": {}},
    )


async def test_resources_are_resolved_and_matched_against_the_catalog(
    start: StartClient, civitai: aioresponses, catalog_dir: Path, models_dir: Path
) -> None:
    write_json(catalog_dir / "models.json", catalog(entry(100, "wai.safetensors", "checkpoints"), entry(200, "detail.safetensors", "loras")))
    touch(models_dir / "checkpoints" / "wai.safetensors")
    serve_image(
        civitai,
        {
            "prompt": "1girl, <lora:detail:0.6>, <lora:mystery_style:1.2> masterpiece",
            "civitaiResources": [{"type": "checkpoint", "modelVersionId": 100}, {"type": "lora", "modelVersionId": 200, "weight": 0.6}],
            "resources": [{"name": "mystery_style", "type": "lora", "weight": 1.2, "hash": "deadbeef12"}],
        },
    )
    civitai.get(f"{CIVITAI}/api/v1/model-versions/100", payload=version(100, "Checkpoint", "WAI", "Illustrious"))
    civitai.get(f"{CIVITAI}/api/v1/model-versions/200", payload=version(200, "LORA", "detail", "Illustrious"))
    civitai.get(f"{CIVITAI}/api/v1/model-versions/by-hash/deadbeef12", payload=version(300, "LORA", "Mystery Style", "Illustrious"))
    client = await start()
    response = await client.get(f"/api/admin/civitai/image/{IMAGE_ID}", headers=AUTH)
    assert response.status == 200, await response.text()
    body = await response.json()
    by_version = {r["versionId"]: r for r in body["resources"]}
    assert by_version[100] == {
        "modelType": "Checkpoint", "modelName": "WAI", "versionName": "v100", "versionId": 100, "baseModel": "Illustrious",
        "strength": None, "hash": None, "catalog_status": "present", "catalog_file": "wai.safetensors",
    }
    assert (by_version[200]["catalog_status"], by_version[200]["strength"], by_version[200]["catalog_file"]) == ("missing", 0.6, "detail.safetensors")
    assert (by_version[300]["catalog_status"], by_version[300]["modelName"], by_version[300]["catalog_file"]) == ("not_found", "Mystery Style", None)
    deps = {d["name"]: d for d in body["detected_deps"]}
    assert deps["detail"]["versionId"] == 200 and deps["detail"]["strength"] == 0.6 and deps["detail"]["catalog_status"] == "missing"
    assert deps["mystery_style"]["versionId"] is None and deps["mystery_style"]["strength"] == 1.2
    assert body["detected_type"] == "illustrious"


async def test_an_unknown_resource_does_not_spoil_the_rest(start: StartClient, civitai: aioresponses) -> None:
    serve_image(civitai, {"hashes": {"model": "0123456789", "lora:gone": "abcdefabcd"}})
    civitai.get(f"{CIVITAI}/api/v1/model-versions/by-hash/0123456789", payload=version(5, "Checkpoint", "Flux Dev", "Flux.1 D"))
    civitai.get(f"{CIVITAI}/api/v1/model-versions/by-hash/abcdefabcd", status=404)
    client = await start()
    body = await (await client.get(f"/api/admin/civitai/image/{IMAGE_ID}", headers=AUTH)).json()
    assert [(r["modelName"], r["catalog_status"]) for r in body["resources"]] == [("Flux Dev", "not_found"), ("gone", "not_found")]
    assert body["detected_type"] == "flux"


async def test_an_image_civitai_does_not_know_is_404_and_a_bad_id_is_400(start: StartClient, civitai: aioresponses) -> None:
    civitai.get(re.compile(rf"^{re.escape(CIVITAI)}/api/v1/images\?.*$"), payload={"items": [], "metadata": {}})
    client = await start()
    missing = await client.get(f"/api/admin/civitai/image/{IMAGE_ID}", headers=AUTH)
    assert missing.status == 404 and (await missing.json())["code"] == "civitai_not_found"
    bad = await client.get("/api/admin/civitai/image/abc", headers=AUTH)
    assert bad.status == 400 and (await bad.json())["code"] == "invalid_image_id"
