"""What a workflow needs, through the real app: workflows in ComfyUI's UI and API formats, PNG and
WebP images saved as ComfyUI saves them, hostile bodies, and one request that fetches the rest."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aioresponses import aioresponses
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from service.workflows.containers import json_kind

from .conftest import StartClient
from .downloads.fake_civitai import FakeCivitai, started
from .downloads.jobs import blob, lora, until_job
from .helpers import AUTH, CIVITAI, catalog, entry, lora_version, touch, write_json
from .test_openapi import assert_conforms

ROUTE = "/api/admin/workflow/requirements"


def ui_workflow(extra_nodes: list[dict[str, Any]] | None = None, models: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A workflow as ComfyUI's frontend saves it (format 0.4: nodes with widgets_values, links)."""
    nodes = [
        {"id": 4, "type": "CheckpointLoaderSimple", "pos": [26, 474], "size": [315, 98], "flags": {}, "order": 0, "mode": 0,
         "outputs": [{"name": "MODEL", "type": "MODEL", "links": [1]}], "properties": {"Node name for S&R": "CheckpointLoaderSimple"},
         "widgets_values": ["sdxl/juggernaut_xl.safetensors"]},
        {"id": 10, "type": "LoraLoader", "pos": [400, 300], "size": [315, 126], "flags": {}, "order": 1, "mode": 0,
         "inputs": [{"name": "model", "type": "MODEL", "link": 1}], "widgets_values": ["ink_lines.safetensors", 0.8, 1.0]},
        {"id": 11, "type": "VAELoader", "pos": [0, 0], "size": [315, 58], "flags": {}, "order": 2, "mode": 0, "widgets_values": ["sdxl_vae.safetensors"]},
        {"id": 6, "type": "CLIPTextEncode", "pos": [415, 186], "size": [422, 164], "flags": {}, "order": 3, "mode": 0,
         "widgets_values": ["a cat, embedding:EasyNegative, (ink:1.2)"]},
        {"id": 12, "type": "SomeCustomLoader", "pos": [0, 0], "size": [1, 1], "flags": {}, "order": 4, "mode": 0,
         "widgets_values": {"model": "flux/flux1-dev-Q4_K_S.gguf", "strength": 1}},
        *(extra_nodes or []),
    ]
    doc: dict[str, Any] = {"last_node_id": 12, "last_link_id": 1, "nodes": nodes, "links": [[1, 4, 0, 10, 0, "MODEL"]], "groups": [],
                           "config": {}, "extra": {}, "version": 0.4}
    if models is not None:
        doc["models"] = models
    return doc


def api_prompt() -> dict[str, Any]:
    """The same graph in ComfyUI's API format."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl/juggernaut_xl.safetensors"}},
        "10": {"class_type": "LoraLoader", "inputs": {"model": ["4", 0], "clip": ["4", 1], "lora_name": "ink_lines.safetensors", "strength_model": 0.8, "strength_clip": 1}},
        "11": {"class_type": "VAELoader", "inputs": {"vae_name": "sdxl_vae.safetensors"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat, embedding:EasyNegative", "clip": ["10", 1]}},
        "12": {"class_type": "SomeCustomLoader", "inputs": {"model": "flux/flux1-dev-Q4_K_S.gguf"}},
    }


def saved_png(prompt: dict[str, Any] | None, workflow: dict[str, Any] | None, *, compressed: bool = False) -> bytes:
    """A PNG as ComfyUI's SaveImage writes it: text chunks `prompt` and `workflow`."""
    info = PngInfo()
    for key, graph in (("prompt", prompt), ("workflow", workflow)):
        if graph is not None:
            if compressed:
                info.add_itxt(key, json.dumps(graph), zip=True)
            else:
                info.add_text(key, json.dumps(graph))
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 20, 20)).save(out, "PNG", pnginfo=info)
    return out.getvalue()


def saved_webp(prompt: dict[str, Any], workflow: dict[str, Any]) -> bytes:
    """A WebP as ComfyUI's SaveAnimatedWEBP writes it: EXIF 0x0110 "prompt:..." and 0x010F "workflow:..."."""
    image = Image.new("RGB", (64, 64))
    exif = image.getexif()
    exif[0x0110] = "prompt:" + json.dumps(prompt)
    exif[0x010F] = "workflow:" + json.dumps(workflow)
    out = io.BytesIO()
    image.save(out, "WEBP", exif=exif)
    return out.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@pytest.fixture
def library(catalog_dir: Path, models_dir: Path) -> None:
    touch(models_dir / "checkpoints" / "sdxl" / "juggernaut_xl.safetensors", b"checkpoint")
    touch(models_dir / "embeddings" / "EasyNegative.safetensors", b"embedding")
    touch(models_dir / "diffusion_models" / "flux" / "flux1-dev-Q4_K_S.gguf", b"gguf")
    write_json(catalog_dir / "loras.json", catalog(entry(1201, "ink_lines.safetensors", "loras", size_gb=0.145), category="loras"))


async def ask(client: TestClient, body: bytes, content_type: str, query: str = "") -> tuple[int, dict[str, Any]]:
    """POST a body; the answer, checked against the OpenAPI document."""
    response = await client.post(f"{ROUTE}{query}", data=io.BytesIO(body), headers={**AUTH, "Content-Type": content_type})
    return response.status, await assert_conforms(response, "POST", ROUTE)


def states(answer: dict[str, Any]) -> dict[str, str]:
    return {model["name"]: model["state"] for model in answer["models"]}


EXPECTED = {
    "sdxl/juggernaut_xl.safetensors": "present",
    "ink_lines.safetensors": "in_catalog",
    "sdxl_vae.safetensors": "unknown",
    "EasyNegative.safetensors": "present",
    "flux/flux1-dev-Q4_K_S.gguf": "present",
}


@pytest.mark.parametrize("shape", ["ui", "api", "png", "png-compressed", "webp", "both-in-json"])
async def test_each_format_tells_what_is_present_catalogued_and_unknown(start: StartClient, library: None, shape: str) -> None:
    bodies = {
        "ui": (json.dumps(ui_workflow()).encode(), "application/json"),
        "api": (json.dumps(api_prompt()).encode(), "application/json"),
        "png": (saved_png(api_prompt(), ui_workflow()), "image/png"),
        "png-compressed": (saved_png(None, ui_workflow(), compressed=True), "image/png"),
        "webp": (saved_webp(api_prompt(), ui_workflow()), "image/webp"),
        "both-in-json": (json.dumps({"workflow": ui_workflow(), "prompt": api_prompt()}).encode(), "application/json"),
    }
    client = await start()
    status, answer = await ask(client, *bodies[shape])
    assert status == 200, answer
    assert states(answer) == EXPECTED
    by_name = {model["name"]: model for model in answer["models"]}
    assert by_name["sdxl/juggernaut_xl.safetensors"]["where"] == "checkpoints/sdxl/juggernaut_xl.safetensors"
    assert by_name["ink_lines.safetensors"]["version_id"] == 1201 and by_name["ink_lines.safetensors"]["status"] == "missing"
    assert by_name["sdxl_vae.safetensors"]["folder"] == "vae"
    assert answer["counts"] == {"present": 3, "in_catalog": 1, "identified": 0, "unknown": 1}
    assert answer["download_bytes"] == 145_000_000


async def test_a_file_elsewhere_in_its_folder_is_present_and_says_where(start: StartClient, models_dir: Path) -> None:
    touch(models_dir / "loras" / "old" / "ink_lines.safetensors", b"lora")
    touch(models_dir / "checkpoints" / "sdxl" / "juggernaut_xl.safetensors", b"checkpoint")
    client = await start()
    _status, answer = await ask(client, json.dumps(ui_workflow()).encode(), "application/json")
    by_name = {m["name"]: m for m in answer["models"]}
    assert by_name["sdxl/juggernaut_xl.safetensors"]["where"] == "checkpoints/sdxl/juggernaut_xl.safetensors"
    assert "elsewhere" not in by_name["sdxl/juggernaut_xl.safetensors"]
    lora_model = by_name["ink_lines.safetensors"]
    assert lora_model["state"] == "present" and lora_model["where"] == "loras/old/ink_lines.safetensors"
    assert lora_model["elsewhere"] is True, "ComfyUI lists it as old/ink_lines.safetensors: the node must be pointed at it"


async def test_embedded_models_are_identified_by_hash_and_url(start: StartClient, library: None) -> None:
    data = b"a vae on civitai"
    sha = hashlib.sha256(data).hexdigest()
    models = [
        {"name": "sdxl_vae.safetensors", "url": "https://example.test/x", "directory": "vae", "hash": sha, "hash_type": "SHA256"},
        {"name": "t5xxl_fp16.safetensors", "url": "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/t5xxl_fp16.safetensors", "directory": "text_encoders"},
        {"name": "detail.safetensors", "url": "https://civitai.com/models/58390?modelVersionId=62833", "directory": "loras"},
    ]
    known = lora_version(777, model_id=77, file="sdxl_vae.safetensors")
    known["files"][0]["hashes"] = {"SHA256": sha.upper()}
    with aioresponses(passthrough=["http://127.0.0.1"]) as mocked:
        mocked.post(f"{CIVITAI}/api/v1/model-versions/by-hash", payload=[known])
        client = await start()
        status, answer = await ask(client, json.dumps(ui_workflow(models=models)).encode(), "application/json")
    assert status == 200, answer
    by_name = {model["name"]: model for model in answer["models"]}
    assert (by_name["sdxl_vae.safetensors"]["state"], by_name["sdxl_vae.safetensors"]["version_id"]) == ("identified", 777)
    assert by_name["t5xxl_fp16.safetensors"]["state"] == "identified" and by_name["t5xxl_fp16.safetensors"]["source"] == "huggingface"
    assert (by_name["detail.safetensors"]["state"], by_name["detail.safetensors"]["version_id"]) == ("identified", 62833)
    assert by_name["t5xxl_fp16.safetensors"]["folder"] == "text_encoders"


async def test_one_request_queues_every_missing_file_it_can_fetch(start: StartClient, aiohttp_server: Any, catalog_dir: Path, models_dir: Path) -> None:
    fake: FakeCivitai = await started(aiohttp_server)
    fake.blobs[1201] = blob(1201, size=64 * 1024)
    fake.blobs[1301] = blob(1301, size=64 * 1024)
    body = lora_version(1301, model_id=130, file="detail.safetensors")
    body["files"][0]["hashes"] = {"SHA256": fake.blobs[1301].sha256.upper()}
    fake.versions[1301] = body
    write_json(catalog_dir / "loras.json", catalog(lora(1201, fake.blobs[1201]), category="loras"))
    workflow = {"nodes": [
        {"id": 1, "type": "LoraLoader", "widgets_values": ["lora_1201.safetensors", 1, 1]},
        {"id": 2, "type": "LoraLoader", "widgets_values": ["detail.safetensors", 1, 1]},
    ], "models": [{"name": "detail.safetensors", "url": "https://civitai.com/models/130?modelVersionId=1301", "directory": "loras"}]}
    client = await start(civitai_base_url=str(fake.civitai.make_url("")).rstrip("/"))  # type: ignore[attr-defined]
    status, answer = await ask(client, json.dumps(workflow).encode(), "application/json", "?download=true")
    assert status == 200, answer
    queued = {item["name"]: item for item in answer["downloads"]}
    assert queued["lora_1201.safetensors"]["status"] == "queued"
    assert queued["detail.safetensors"]["added"] == "added" and queued["detail.safetensors"]["status"] == "queued"
    for item in queued.values():
        await until_job(client, item["job"], "done")
    assert (models_dir / "loras" / "lora_1201.safetensors").read_bytes() == fake.blobs[1201].data
    assert '"civitai_version_id": 1301' in (catalog_dir / "models.json").read_text()
    _status, again = await ask(client, json.dumps(workflow).encode(), "application/json")
    assert set(states(again).values()) == {"present"}


HOSTILE = {
    "not json, said to be": (b"hello there", "application/json", 400, "invalid_workflow"),
    "not json, said to be nothing": (b"hello there", "application/octet-stream", 415, "unsupported_media_type"),
    "json cut short": (b'{"nodes": [', "application/json", 400, "invalid_workflow"),
    "json cut short, said to be nothing": (b'{"nodes": [{"type": "Lo', "", 400, "invalid_workflow"),
    "a number too large for json": (b"1e999999", "application/json", 400, "invalid_workflow"),
    "a lone surrogate": (b'"\\ud800"', "application/json", 400, "invalid_workflow"),
    "a list": (b"[1, 2, 3]", "application/json", 400, "invalid_workflow"),
    "null": (b"null", "application/json", 400, "invalid_workflow"),
    "deep": (b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "invalid_workflow"),
    "wrong types": (json.dumps({"nodes": [5, "x", {"type": 3}, {"type": "LoraLoader", "widgets_values": [None, {"a": [1]}]}]}).encode(), "application/json", 200, None),
    "a png without a workflow": (saved_png(None, None), "image/png", 400, "no_workflow"),
    "a cut png": (saved_png(api_prompt(), None)[:60], "image/png", 400, "invalid_workflow"),
    "a png whose prompt is not json": (b"\x89PNG\r\n\x1a\n" + png_chunk(b"tEXt", b"prompt\x00{nope") + png_chunk(b"IEND", b""), "image/png", 400, "invalid_workflow"),
    "a text bomb": (b"\x89PNG\r\n\x1a\n" + png_chunk(b"zTXt", b"prompt\x00\x00" + zlib.compress(b" " * (64 * 1024 * 1024), 9)) + png_chunk(b"IEND", b""), "image/png", 413, "too_large"),
    "huge": (b'{"nodes": [], "pad": "' + b"x" * (17 * 1024 * 1024) + b'"}', "application/json", 413, "too_large"),
    "a form post": (b"a=1", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    "a riff that is no webp": (b"RIFF\x10\x00\x00\x00WAVEfmt ", "image/webp", 415, "unsupported_media_type"),
}


def test_a_workflow_that_is_no_object_is_named_as_json_names_it() -> None:
    assert [json_kind(value) for value in (None, True, 1.5, 2, "x", [], {})] == [
        "null", "true or false", "a number", "a number", "a string", "an array", "an object"]


@pytest.mark.parametrize("case", HOSTILE)
async def test_hostile_bodies_get_a_clear_answer(start: StartClient, case: str) -> None:
    body, content_type, expected, code = HOSTILE[case]
    client = await start()
    status, answer = await ask(client, body, content_type)
    assert status == expected, answer
    if code is not None:
        assert answer["code"] == code, answer


async def test_a_large_png_is_read_through_without_keeping_its_pixels(start: StartClient) -> None:
    pixels = png_chunk(b"IDAT", b"\x00" * (24 * 1024 * 1024))
    body = b"\x89PNG\r\n\x1a\n" + png_chunk(b"tEXt", b"prompt\x00" + json.dumps(api_prompt()).encode()) + pixels + png_chunk(b"IEND", b"")
    client = await start()
    status, answer = await ask(client, body, "image/png")
    assert status == 200 and states(answer)["sdxl/juggernaut_xl.safetensors"] == "unknown"


async def test_the_route_needs_the_key_and_takes_no_other_parameter(start: StartClient) -> None:
    client = await start()
    assert (await client.post(ROUTE, data=b"{}", headers={"Content-Type": "application/json"})).status == 401
    status, answer = await ask(client, b"{}", "application/json", "?downloads=true")
    assert status == 400 and answer["code"] == "unknown_parameter"


def fake_huggingface(files: dict[str, bytes], published: dict[str, str | None]) -> web.Application:
    """Hugging Face as a workflow's files see it: HEAD on …/resolve/… publishes the SHA256 of LFS
    files (X-Linked-Etag) and redirects to storage, which serves the bytes with Range."""

    async def resolve_file(request: web.Request) -> web.StreamResponse:
        name = request.match_info["path"]
        if name not in files:
            return web.Response(status=404)
        headers = {"Location": f"/storage/{name}"}
        if published.get(name):
            headers["X-Linked-Etag"] = f'"{published[name]}"'
            headers["X-Linked-Size"] = "²" if name == "t5xxl_fp16.safetensors" else str(len(files[name]))  # a broken size is ignored
        return web.Response(status=302, headers=headers)

    async def storage(request: web.Request) -> web.StreamResponse:
        data = files[request.match_info["path"]]
        start = int(request.headers.get("Range", "bytes=0-")[6:].split("-")[0] or 0)
        status = 206 if start else 200
        headers = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"} if start else {}
        return web.Response(body=data[start:], status=status, headers=headers, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_route("*", "/{owner}/{repo}/resolve/main/{path}", resolve_file)
    app.router.add_get("/storage/{path}", storage)
    return app


async def test_files_on_hugging_face_are_fetched_and_proven_by_their_published_hash(
    start: StartClient, aiohttp_server: Any, models_dir: Path
) -> None:
    good, lied = b"t5 weights " * 9000, b"clip weights " * 5000
    files = {"t5xxl_fp16.safetensors": good, "clip_l.safetensors": lied, "small.safetensors": b"tiny model"}
    published = {"t5xxl_fp16.safetensors": hashlib.sha256(good).hexdigest(), "clip_l.safetensors": "ab" * 32, "small.safetensors": None}
    hub = await aiohttp_server(fake_huggingface(files, published))
    base = str(hub.make_url("")).rstrip("/")
    models = [{"name": name, "url": f"{base}/comfyanonymous/flux_text_encoders/resolve/main/{name}", "directory": "text_encoders"} for name in files]
    workflow = {"nodes": [{"id": 1, "type": "DualCLIPLoader", "widgets_values": ["t5xxl_fp16.safetensors", "clip_l.safetensors", "flux"]},
                          {"id": 2, "type": "CLIPLoader", "widgets_values": ["small.safetensors", "stable_diffusion"]}], "models": models}
    client = await start(huggingface_base_url=base)
    status, answer = await ask(client, json.dumps(workflow).encode(), "application/json", "?download=true")
    assert status == 200, answer
    assert {m["name"]: (m["state"], m.get("source")) for m in answer["models"]} == {name: ("identified", "huggingface") for name in files}
    jobs = {item["name"]: item["job"] for item in answer["downloads"]}
    assert (await until_job(client, jobs["t5xxl_fp16.safetensors"], "done"))["version_id"] is None
    assert (models_dir / "text_encoders" / "t5xxl_fp16.safetensors").read_bytes() == good
    assert (await until_job(client, jobs["clip_l.safetensors"], "failed"))["error_code"] == "hash_mismatch"
    assert (await until_job(client, jobs["small.safetensors"], "failed"))["error_code"] == "no_published_hash"
    assert sorted(p.name for p in (models_dir / "text_encoders").iterdir()) == ["t5xxl_fp16.safetensors"]


async def test_a_url_off_hugging_face_is_never_fetched(start: StartClient, catalog_dir: Path) -> None:
    workflow = {"nodes": [{"id": 1, "type": "VAELoader", "widgets_values": ["ae.safetensors"]}],
                "models": [{"name": "ae.safetensors", "url": "https://evil.example/owner/repo/resolve/main/ae.safetensors", "directory": "vae"}]}
    client = await start()
    status, answer = await ask(client, json.dumps(workflow).encode(), "application/json", "?download=true")
    assert status == 200 and answer["models"][0]["state"] == "unknown" and answer["downloads"] == []


async def test_odd_shapes_inside_a_workflow_are_read_around(start: StartClient, models_dir: Path) -> None:
    touch(models_dir / "embeddings" / "EasyNegative.pt", b"an embedding saved as .pt")
    client = await start()
    for doc in ({"workflow": {"nodes": 5}}, {"nodes": True, "models": "x"}, {"workflow": {"nodes": [], "models": [{"name": 5}]}}):
        status, _answer = await ask(client, json.dumps(doc).encode(), "application/json")
        assert status == 200
    status, answer = await ask(client, saved_png(None, {"nodes": 7}), "image/png")
    assert status == 200 and answer["models"] == []
    prompt = {"6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat, embedding:EasyNegative"}}}
    _status, answer = await ask(client, json.dumps(prompt).encode(), "application/json")
    assert [(m["name"], m["state"], m.get("where")) for m in answer["models"]] == [("EasyNegative.pt", "present", "embeddings/EasyNegative.pt")]


async def test_a_workflow_chunk_over_the_cap_is_413_not_ignored(start: StartClient) -> None:
    body = b"\x89PNG\r\n\x1a\n" + png_chunk(b"tEXt", b"workflow\x00" + b" " * (17 * 1024 * 1024)) + png_chunk(b"IEND", b"")
    client = await start()
    status, answer = await ask(client, body, "image/png")
    assert status == 413 and answer["code"] == "too_large"


def test_embedded_entries_and_exif_values_are_bounded() -> None:
    from service.workflows.containers import _exif_texts
    from service.workflows.models import MAX_EMBEDDED, needs_of

    many = {"nodes": [], "models": [{"name": f"m{n}.safetensors", "directory": "loras"} for n in range(MAX_EMBEDDED * 3)]}
    assert len(needs_of(many, None)) == MAX_EMBEDDED
    value = b"workflow:" + b"{}" * 1000 + b"\x00"
    entries = b"".join(struct.pack("<HHII", 0x010F, 2, len(value), 8 + 2 + 1000 * 12 + 4) for _ in range(1000))
    exif = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1000) + entries + b"\x00\x00\x00\x00" + value
    assert len(_exif_texts(exif)) == 1, "one value, however many entries point at it"


async def test_a_catalogued_file_is_fetched_for_the_folder_the_node_loads_from(
    start: StartClient, aiohttp_server: Any, catalog_dir: Path, models_dir: Path
) -> None:
    fake: FakeCivitai = await started(aiohttp_server)
    fake.blobs[1302] = blob(1302, size=64 * 1024)
    write_json(catalog_dir / "loras.json", catalog(entry(1201, "x.safetensors", "loras"), category="loras"))
    checkpoint = entry(1302, "x.safetensors", "checkpoints", hash=fake.blobs[1302].sha256.upper(), size_gb=0.0)
    write_json(catalog_dir / "models.json", catalog(checkpoint))
    touch(models_dir / "loras" / "x.safetensors", b"the lora is here")
    workflow = {"nodes": [{"id": 1, "type": "CheckpointLoaderSimple", "widgets_values": ["x.safetensors"]}]}
    client = await start(civitai_base_url=str(fake.civitai.make_url("")).rstrip("/"))  # type: ignore[attr-defined]
    status, answer = await ask(client, json.dumps(workflow).encode(), "application/json", "?download=true")
    assert status == 200 and answer["models"][0]["version_id"] == 1302
    [queued] = answer["downloads"]
    assert queued["status"] == "queued", "not the lora of the same name, which is here"
    await until_job(client, queued["job"], "done")
    assert (models_dir / "checkpoints" / "x.safetensors").read_bytes() == fake.blobs[1302].data


async def test_two_hugging_face_files_of_one_name_in_two_folders_are_both_fetched(start: StartClient, aiohttp_server: Any, models_dir: Path) -> None:
    first, second = b"style a " * 3000, b"style b " * 3000
    files = {"a.safetensors": first, "b.safetensors": second}
    hub_app = fake_huggingface(files, {name: hashlib.sha256(data).hexdigest() for name, data in files.items()})
    hub = await aiohttp_server(hub_app)
    base = str(hub.make_url("")).rstrip("/")
    models = [
        {"name": "styleA/model.safetensors", "url": f"{base}/o/r/resolve/main/a.safetensors", "directory": "loras"},
        {"name": "styleB/model.safetensors", "url": f"{base}/o/r/resolve/main/b.safetensors", "directory": "loras"},
    ]
    client = await start(huggingface_base_url=base)
    status, answer = await ask(client, json.dumps({"nodes": [], "models": models}).encode(), "application/json", "?download=true")
    assert status == 200
    jobs = {item["name"]: item["job"] for item in answer["downloads"]}
    assert len(set(jobs.values())) == 2
    for job in jobs.values():
        await until_job(client, job, "done")
    assert (models_dir / "loras" / "styleA" / "model.safetensors").read_bytes() == first
    assert (models_dir / "loras" / "styleB" / "model.safetensors").read_bytes() == second


def test_a_name_is_cleaned_of_a_leading_dot_slash_only() -> None:
    from service.workflows.models import needs_of

    prompt = {str(i): {"class_type": "LoraLoader", "inputs": {"lora_name": name}} for i, name in enumerate(
        ["..hidden.safetensors", "./sub/a.safetensors", "/b.safetensors", ".\\c.safetensors"])}
    assert sorted(need.name for need in needs_of(None, prompt)) == ["..hidden.safetensors", "b.safetensors", "c.safetensors", "sub/a.safetensors"]
