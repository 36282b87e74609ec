"""The image panel: an image's resources from CivitAI, resolved by version id or hash, with their
catalog status; LoRAs named only in the prompt; the workflow family. CivitAI faked."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aioresponses import aioresponses

from service.civitai.images import (
    MAX_NAME_CHARS,
    MAX_PROMPT_LORAS,
    PROMPT_SCAN_CHARS,
    prompt_loras,
)

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


# A prompt any CivitAI uploader writes: a tag that never closes its number, the shape that made
# the old pattern cubic (3,000 digits held the event loop for 5 s), up to the body cap.
ADVERSARIAL_PROMPTS = {
    "4k-digits": "<lora:a:" + "1" * 4000,
    "100k-digits": "<lora:a:" + "1" * 100_000,
    "near-the-body-cap": "<lora:a:" + "1" * (7 * 1024 * 1024),
    "many-closed-tags": "<lora:x:1>" * 500_000,
}


async def loopback_civitai(aiohttp_server: Any, meta: dict[str, Any]) -> str:
    """A loopback CivitAI serving one image listing of any size (aioresponses cannot feed megabytes),
    and 404 for every model version."""
    listing = json.dumps({"items": [{"id": IMAGE_ID, "baseModel": "Illustrious", "meta": meta}], "metadata": {}}).encode()  # any depth

    async def images(_request: web.Request) -> web.Response:
        return web.Response(body=listing, content_type="application/json")

    async def unknown(_request: web.Request) -> web.Response:
        return web.json_response({"error": "not found"}, status=404)

    app = web.Application()
    app.router.add_get("/api/v1/images", images)
    app.router.add_get("/api/v1/model-versions/{tail:.*}", unknown)
    return str((await aiohttp_server(app)).make_url("")).rstrip("/")


@pytest.mark.parametrize("prompt", ADVERSARIAL_PROMPTS.values(), ids=ADVERSARIAL_PROMPTS.keys())
async def test_a_hostile_prompt_is_answered_and_health_stays_fast_meanwhile(start: StartClient, aiohttp_server: Any, prompt: str) -> None:
    client = await start(civitai_base_url=await loopback_civitai(aiohttp_server, {"prompt": prompt}))
    panel = asyncio.ensure_future(client.get(f"/api/admin/civitai/image/{IMAGE_ID}", headers=AUTH))
    for _ in range(10):  # each within a deadline, while the panel's answer is worked out
        async with asyncio.timeout(1.0):
            assert (await client.get("/health")).status == 200
    async with asyncio.timeout(30.0):
        response = await panel
    assert response.status == 200, await response.text()
    body = await response.json()
    assert len(body["detected_deps"]) <= MAX_PROMPT_LORAS
    assert all(len(dep["name"]) <= MAX_NAME_CHARS for dep in body["detected_deps"])


def test_prompt_tags_are_read_as_before() -> None:
    prompt = "1girl, <lora:detail:0.6>, <LORA:mystery_style:1.2> <lora:a<lora:b> <lora::1> <lyco:x:.5:2> <lora:y:abc> <lora:open"
    assert prompt_loras(prompt) == [("detail", 0.6), ("mystery_style", 1.2), ("a<lora", None), ("x", 0.5), ("y", None)]


def test_prompt_scanning_is_bounded() -> None:
    assert len(prompt_loras("<lora:x:1>" * (MAX_PROMPT_LORAS + 10))) == MAX_PROMPT_LORAS
    assert prompt_loras("<lora:" + "n" * 5000 + ":1>") == [("n" * MAX_NAME_CHARS, 1.0)]
    assert prompt_loras(" " * PROMPT_SCAN_CHARS + "<lora:late:1>") == []  # beyond what is scanned


def _stack(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = [value]
    return value


HOSTILE_META: dict[str, tuple[Any, int]] = {
    # (what CivitAI's listing holds, the status the panel answers)
    "items-a-number": ({"items": 5}, 502),
    "items-a-string": ({"items": "x"}, 502),
    "meta-a-number": ({"items": [{"id": IMAGE_ID, "meta": 5}]}, 502),
    "hashes-a-list": ({"items": [{"id": IMAGE_ID, "meta": {"hashes": ["abcdef0123"]}}]}, 502),
    "hashes-a-string": ({"items": [{"id": IMAGE_ID, "meta": {"hashes": "abcdef0123"}}]}, 502),
    "civitai-resources-a-number": ({"items": [{"id": IMAGE_ID, "meta": {"civitaiResources": 7}}]}, 502),
    "resources-a-number": ({"items": [{"id": IMAGE_ID, "meta": {"resources": 7}}]}, 502),
    "prompt-a-number": ({"items": [{"id": IMAGE_ID, "meta": {"prompt": 7}}]}, 502),
    "version-id-true": ({"items": [{"id": IMAGE_ID, "meta": {"civitaiResources": [{"modelVersionId": True}]}}]}, 502),
    "version-id-huge": ({"items": [{"id": IMAGE_ID, "meta": {"civitaiResources": [{"modelVersionId": 2**70}]}}]}, 502),
    "image-id-as-string": ({"items": [{"id": str(IMAGE_ID), "meta": {}}]}, 404),
    "nothing-but-a-prompt": ({"items": [{"id": IMAGE_ID, "meta": {"prompt": "a cat"}}]}, 200),
    "one-good-beside-bad": (
        {"items": [{"id": IMAGE_ID, "meta": {"civitaiResources": [5, {"modelVersionId": True}, {"modelVersionId": 77, "weight": "x"}], "hashes": 3}}]},
        200,
    ),
}


@pytest.mark.parametrize(("listing", "status"), HOSTILE_META.values(), ids=HOSTILE_META.keys())
async def test_hostile_image_metadata_is_never_a_500(start: StartClient, civitai: aioresponses, listing: Any, status: int) -> None:
    civitai.get(re.compile(rf"^{re.escape(CIVITAI)}/api/v1/images\?.*$"), payload=listing)
    civitai.get(re.compile(rf"^{re.escape(CIVITAI)}/api/v1/model-versions/.*$"), status=404, repeat=True)
    client = await start()
    response = await client.get(f"/api/admin/civitai/image/{IMAGE_ID}", headers=AUTH)
    assert response.status == status, await response.text()
    if status == 502:
        assert (await response.json())["code"] == "upstream_bad_body"
    if status == 200:
        body = await response.json()
        assert all(type(r["versionId"]) is int or r["versionId"] is None for r in body["resources"])


@pytest.mark.parametrize("field", ["name", "type"])
async def test_names_nested_deep_or_huge_are_not_echoed(start: StartClient, aiohttp_server: Any, field: str) -> None:
    nested = _stack(300)
    resources = [{"hash": "abcdef0123", "name": "ok", "type": "lora", field: nested}, {"hash": "abcdef4567", "name": "n" * 1_000_000, "type": "t" * 10_000}]
    meta = {"resources": resources, "civitaiResources": [{"modelVersionId": 9, "type": nested}], "prompt": "<lora:x:1>" * 200_000}
    client = await start(civitai_base_url=await loopback_civitai(aiohttp_server, meta))
    response = await client.get(f"/api/admin/civitai/image/{IMAGE_ID}", headers=AUTH)
    assert response.status == 200, await response.text()
    assert len(await response.read()) < 50_000  # 100 prompt LoRAs and three resources, whatever their sizes
    body = await response.json()
    for resource in body["resources"]:
        for key in ("modelName", "modelType"):
            assert resource[key] is None or (isinstance(resource[key], str) and len(resource[key]) <= MAX_NAME_CHARS)
