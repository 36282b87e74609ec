"""The image panel: an image's resources from CivitAI, resolved by version id or hash, with their
catalog status in the extension's words and the map's; LoRAs and embeddings named only in the
prompt; the generation's settings and type. CivitAI faked."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aioresponses import aioresponses

from service.civitai.image_facts import (
    MAX_NAME_CHARS,
    MAX_PROMPT_LORAS,
    PROMPT_SCAN_CHARS,
    prompt_embeddings,
    prompt_loras,
)

from ..conftest import StartClient
from ..hashes.test_hashing_api import HASHING, LORA, hashing_idle
from ..helpers import AUTH, CIVITAI, catalog, entry, lora_version, touch, write_json
from ..test_openapi import assert_conforms

IMAGE_ID = 4242
IMAGE_ROUTE = "/api/admin/civitai/image/{image_id}"


@pytest.fixture
def civitai() -> Iterator[aioresponses]:
    with aioresponses(passthrough=["http://127.0.0.1"]) as mocked:
        yield mocked


def version(version_id: int, model_type: str, model_name: str, base_model: str) -> dict[str, Any]:
    return {"id": version_id, "modelId": version_id * 10, "name": f"v{version_id}", "baseModel": base_model, "model": {"name": model_name, "type": model_type}, "files": []}


DEP_KEYS = {
    "name", "weight", "type", "source", "civitai_version_id", "civitai_model_name", "civitai_version_name",
    "civitai_base_model", "hash", "catalog_status", "status", "catalog_file",
}  # fmt: skip


def real_item(meta: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """An item of `GET /api/v1/images` as CivitAI answers it, around the given generation data."""
    return {
        "id": IMAGE_ID,
        "url": "https://image.civitai.com/xG1nkqKTMzGDvpLrqFT7WA/0b7e0c6e-9f3a/width=832/0b7e0c6e-9f3a.jpeg",
        "hash": "UHF~gg%M~q9F4nRjt7xu9F-;Rjxu",
        "width": 832,
        "height": 1216,
        "nsfwLevel": "None",
        "nsfw": False,
        "browsingLevel": 1,
        "createdAt": "2026-11-30T18:04:11.512Z",
        "postId": 9876543,
        "stats": {"cryCount": 0, "laughCount": 1, "likeCount": 40, "dislikeCount": 0, "heartCount": 12, "commentCount": 0},
        "meta": meta,
        "username": "someone",
        "baseModel": "Illustrious",
        "type": "image",
        **fields,
    }


def serve_image(civitai: aioresponses, meta: dict[str, Any], **fields: Any) -> None:
    civitai.get(
        re.compile(rf"^{re.escape(CIVITAI)}/api/v1/images\?.*imageId={IMAGE_ID}.*$"),
        payload={"items": [real_item(meta, **fields)], "metadata": {"nextCursor": None}},
    )


GENERATED_ON_CIVITAI = {
    "Size": "832x1216",
    "seed": 1234567890,
    "Model": "waiNSFWIllustrious_v100",
    "steps": 28,
    "hashes": {"model": "a1b2c3d4e5"},
    "prompt": "1girl, <lora:detail:0.6>, <lora:mystery_style:1.2>, <lora:Local_Style:0.9> masterpiece, embedding:GoodHands",
    "Version": "ComfyUI",
    "sampler": "Euler a",
    "cfgScale": 5,
    "clipSkip": 2,
    "resources": [{"name": "mystery_style", "type": "lora", "weight": 1.2, "hash": "deadbeef12"}],
    "Model hash": "a1b2c3d4e5",
    "negativePrompt": "lowres, embedding:EasyNegative",
    "civitaiResources": [
        {"type": "checkpoint", "modelVersionId": 100, "modelVersionName": "v10.0"},
        {"type": "lora", "weight": 0.6, "modelVersionId": 200, "modelVersionName": "v1"},
    ],
}


async def test_resources_and_prompt_names_speak_the_extensions_words(
    start: StartClient, civitai: aioresponses, catalog_dir: Path, models_dir: Path
) -> None:
    write_json(catalog_dir / "models.json", catalog(entry(100, "wai.safetensors", "checkpoints")))
    write_json(
        catalog_dir / "loras.json",
        catalog(entry(200, "detail.safetensors", "loras"), entry(400, "local_style.safetensors", "loras"), entry(500, "GoodHands.pt", "embeddings"), category="loras"),
    )
    touch(models_dir / "checkpoints" / "wai.safetensors")
    touch(models_dir / "loras" / "local_style.safetensors")
    serve_image(civitai, GENERATED_ON_CIVITAI)
    civitai.get(f"{CIVITAI}/api/v1/model-versions/100", payload=version(100, "Checkpoint", "WAI", "Illustrious"))
    civitai.get(f"{CIVITAI}/api/v1/model-versions/200", payload=version(200, "LORA", "detail", "Illustrious"))
    civitai.get(f"{CIVITAI}/api/v1/model-versions/by-hash/deadbeef12", payload=version(300, "LORA", "Mystery Style", "Illustrious"))
    civitai.get(f"{CIVITAI}/api/v1/model-versions/by-hash/a1b2c3d4e5", payload=version(100, "Checkpoint", "WAI", "Illustrious"))
    client = await start()
    response = await client.get(f"/api/admin/civitai/image/{IMAGE_ID}", headers=AUTH)
    assert response.status == 200, await response.text()
    body = await assert_conforms(response, "GET", IMAGE_ROUTE)
    by_version = {r["versionId"]: r for r in body["resources"]}
    assert by_version[100] == {
        "modelType": "Checkpoint", "modelName": "WAI", "versionName": "v100", "versionId": 100, "baseModel": "Illustrious",
        "strength": None, "hash": "a1b2c3d4e5", "catalog_status": "present", "status": "present", "catalog_file": "wai.safetensors",
    }  # fmt: skip
    assert (by_version[200]["catalog_status"], by_version[200]["status"], by_version[200]["strength"]) == ("missing", "missing", 0.6)
    assert (by_version[300]["catalog_status"], by_version[300]["status"], by_version[300]["modelName"]) == ("not_found", None, "Mystery Style")
    assert len(body["resources"]) == 3  # the model hash is the checkpoint named by id: one resource, not two

    deps = {d["name"]: d for d in body["detected_deps"]}
    assert all(set(dep) == DEP_KEYS for dep in deps.values())
    assert (
        deps["detail"]["civitai_version_id"], deps["detail"]["weight"], deps["detail"]["catalog_status"], deps["detail"]["civitai_model_name"]
    ) == (200, 0.6, "missing", "detail")  # by the image's resource, by CivitAI's model name
    assert (deps["mystery_style"]["civitai_version_id"], deps["mystery_style"]["catalog_status"], deps["mystery_style"]["hash"]) == (300, "not_found", "deadbeef12")
    local = deps["Local_Style"]  # by the catalogued file's stem, whatever its case
    assert (local["civitai_version_id"], local["catalog_status"], local["status"], local["catalog_file"], local["weight"]) == (
        400, "present", "present", "local_style.safetensors", 0.9
    )
    assert (deps["GoodHands"]["type"], deps["GoodHands"]["source"], deps["GoodHands"]["civitai_version_id"]) == ("embedding", "prompt", 500)
    assert (deps["GoodHands"]["catalog_status"], deps["GoodHands"]["weight"]) == ("missing", None)
    easy = deps["EasyNegative"]  # named, but nothing the service or the image knows
    assert (easy["source"], easy["catalog_status"], easy["civitai_version_id"], easy["status"]) == ("negative_prompt", "unknown", None, None)

    assert body["meta"] == {
        "prompt": GENERATED_ON_CIVITAI["prompt"], "negativePrompt": "lowres, embedding:EasyNegative",
        "steps": 28, "sampler": "Euler a", "cfgScale": 5, "seed": 1234567890, "size": "832x1216",
    }  # fmt: skip
    assert (body["detected_type"], body["base_model_family"]) == ("t2i", "illustrious")


async def test_a_catalogued_lora_still_downloading_is_missing_with_its_progress(
    start: StartClient, civitai: aioresponses, catalog_dir: Path, models_dir: Path
) -> None:
    write_json(catalog_dir / "loras.json", catalog(entry(200, "detail.safetensors", "loras", size_gb=0.000001), category="loras"))
    touch(models_dir / "loras" / "detail.safetensors.part", b"x" * 400)
    serve_image(civitai, {"prompt": "<lora:detail:1>", "civitaiResources": [{"type": "lora", "modelVersionId": 200}]})
    civitai.get(f"{CIVITAI}/api/v1/model-versions/200", payload=version(200, "LORA", "detail", "Illustrious"))
    client = await start()
    body = await assert_conforms(await client.get(f"/api/admin/civitai/image/{IMAGE_ID}", headers=AUTH), "GET", IMAGE_ROUTE)
    [resource] = body["resources"]
    assert (resource["catalog_status"], resource["status"], resource["dl_bytes"]) == ("missing", "downloading", 400)
    [dep] = body["detected_deps"]
    assert (dep["catalog_status"], dep["status"], dep["civitai_version_id"]) == ("missing", "downloading", 200)


async def test_a_prompt_name_is_found_among_files_identified_on_disk(
    start: StartClient, civitai: aioresponses, models_dir: Path
) -> None:
    touch(models_dir / "loras" / "sdxl" / "Found_On_Disk.safetensors", LORA)
    known = lora_version(700, model_id=70)
    known["files"][0]["hashes"] = {"SHA256": hashlib.sha256(LORA).hexdigest().upper()}
    civitai.post(f"{CIVITAI}/api/v1/model-versions/by-hash", payload=[known], repeat=True)
    serve_image(civitai, {"prompt": "<lora:found_on_disk:0.7>"})
    client = await start(**HASHING)
    await hashing_idle(client, 1)
    body = await (await client.get(f"/api/admin/civitai/image/{IMAGE_ID}", headers=AUTH)).json()
    [dep] = body["detected_deps"]
    assert (dep["civitai_version_id"], dep["catalog_status"], dep["catalog_file"], dep["civitai_base_model"]) == (
        700, "present", "Found_On_Disk.safetensors", "SDXL 1.0"
    )


async def test_a_prompt_name_with_its_extension_or_folder_is_found(start: StartClient, civitai: aioresponses, models_dir: Path) -> None:
    touch(models_dir / "loras" / "sdxl" / "Found_On_Disk.safetensors", LORA)
    known = lora_version(700, model_id=70)
    known["files"][0]["hashes"] = {"SHA256": hashlib.sha256(LORA).hexdigest().upper()}
    civitai.post(f"{CIVITAI}/api/v1/model-versions/by-hash", payload=[known], repeat=True)
    serve_image(civitai, {"prompt": "<lora:sdxl/found_on_disk:0.7>", "negativePrompt": "embedding:Found_On_Disk.safetensors"})
    client = await start(**HASHING)
    await hashing_idle(client, 1)
    body = await (await client.get(f"/api/admin/civitai/image/{IMAGE_ID}", headers=AUTH)).json()
    assert {(dep["name"], dep["civitai_version_id"], dep["catalog_status"]) for dep in body["detected_deps"]} == {
        ("sdxl/found_on_disk", 700, "present"),
        ("Found_On_Disk.safetensors", 700, "present"),
    }


DETECTED_TYPES = {
    # (the image's type, base model and generation data, what the panel is told)
    "text-to-image": ("image", "SDXL 1.0", {"prompt": "a cat", "steps": 20}, "t2i"),
    "img2img": ("image", "SDXL 1.0", {"prompt": "a cat", "Denoising strength": 0.4}, "i2i"),
    "hires-fix-is-not-img2img": ("image", "SDXL 1.0", {"prompt": "a cat", "Denoising strength": 0.4, "Hires upscale": 2}, "t2i"),
    "comfy-load-image": ("image", "SDXL 1.0", {"prompt": "a cat", "comfy": '{"1":{"class_type":"LoadImage"}}'}, "i2i"),
    "video": ("video", "Wan Video 14B t2v", {"prompt": "a cat walks"}, "t2v"),
    "video-family-named-image": ("image", "Wan Video 14B t2v", {"prompt": "a cat walks"}, "t2v"),
    "image-to-video": ("video", "Wan Video 14B i2v 480p", {"prompt": "a cat walks"}, "i2v"),
    "no-generation-data": ("image", "SDXL 1.0", None, "unknown"),
}


@pytest.mark.parametrize(("kind", "base_model", "meta", "expected"), DETECTED_TYPES.values(), ids=DETECTED_TYPES.keys())
async def test_the_generation_type_is_told(start: StartClient, civitai: aioresponses, kind: str, base_model: str, meta: Any, expected: str) -> None:
    serve_image(civitai, meta, type=kind, baseModel=base_model)
    client = await start()
    body = await assert_conforms(await client.get(f"/api/admin/civitai/image/{IMAGE_ID}", headers=AUTH), "GET", IMAGE_ROUTE)
    assert body["detected_type"] == expected


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


def test_prompt_embeddings_are_read_once_each() -> None:
    prompt = "embedding:GoodHands, (embedding:EasyNegative:1.2), embedding:goodhands embedding:a.b. embedding: <embedding:x>"
    assert prompt_embeddings(prompt) == ["GoodHands", "EasyNegative", "a.b", "x"]


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
