"""The civitai-map through the real app: shape, statuses, ETag/304, gzip, point answers."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from service.map.body import MapSnapshot
from service.map.entry import MAX_ID
from service.map.index import CivitaiIndex

from .conftest import StartClient, get_map
from .helpers import AUTH, MAP, catalog, entry, read_json, touch, write_json


@pytest.fixture
def library_on_disk(catalog_dir: Path, models_dir: Path) -> None:
    models = catalog(
        entry(2514310, "wai.safetensors", "checkpoints", model_id=827184, name="WAI v16", base_model="Illustrious"),
        entry(2514311, "wai_v15.safetensors", "checkpoints", model_id=827184),
        entry(300, "deep.safetensors", "checkpoints"),
        entry(400, "downloading.safetensors", "checkpoints"),
        entry(500, "aria.safetensors", "checkpoints"),
        entry(600, "flux.safetensors", "unet"),
        {"name": "HF model", "file": "hf.safetensors", "dest": "vae", "source": "huggingface", "custom": {"kept": True}},
    )
    loras = catalog(entry(700, "style.safetensors", "loras", base_model="Pony"), category="sdxl_loras")
    write_json(catalog_dir / "models.json", models)
    write_json(catalog_dir / "loras.json", loras)
    touch(models_dir / "checkpoints" / "wai.safetensors")
    touch(models_dir / "checkpoints" / "sub" / "deeper" / "deep.safetensors")
    touch(models_dir / "checkpoints" / "downloading.safetensors.part")
    touch(models_dir / "checkpoints" / "aria.safetensors")
    touch(models_dir / "checkpoints" / "aria.safetensors.aria2")
    touch(models_dir / "diffusion_models" / "flux.safetensors")
    touch(models_dir / "loras" / "styles" / "style.safetensors")


@pytest.mark.usefixtures("library_on_disk")
async def test_map_shape_and_statuses_cover_both_catalogs(start: StartClient) -> None:
    client = await start()
    body = await get_map(client)
    assert body["by_version"]["2514310"] == {
        "file": "wai.safetensors",
        "dest": "checkpoints",
        "name": "WAI v16",
        "base_model": "Illustrious",
        "civitai_model_id": 827184,
        "catalog": "models",
        "status": "present",
    }
    statuses = {vid: item["status"] for vid, item in body["by_version"].items()}
    assert statuses == {
        "2514310": "present",
        "2514311": "missing",
        "300": "present",  # in a subfolder of dest
        "400": "downloading",  # only a .part exists: another program is downloading it
        "500": "downloading",  # aria2 control file still beside it
        "600": "present",  # unet is diffusion_models to ComfyUI
        "700": "present",
    }
    assert body["by_version"]["700"]["catalog"] == "loras"
    assert body["by_model"]["827184"] == [2514310, 2514311]


@pytest.mark.usefixtures("library_on_disk")
async def test_unknown_fields_and_entries_without_ids_are_left_alone(start: StartClient, catalog_dir: Path) -> None:
    before = (catalog_dir / "models.json").read_bytes()
    await start()
    assert (catalog_dir / "models.json").read_bytes() == before
    assert read_json(catalog_dir / "models.json")["categories"][0]["models"][6]["custom"] == {"kept": True}


async def test_missing_catalogs_are_created_empty(start: StartClient, catalog_dir: Path) -> None:
    client = await start()
    assert await get_map(client) == {"by_version": {}, "by_model": {}}
    for name in ("models.json", "loras.json"):
        assert read_json(catalog_dir / name)["categories"] == []


@pytest.mark.usefixtures("library_on_disk")
async def test_etag_and_304(start: StartClient, models_dir: Path) -> None:
    client = await start()
    first = await client.get(MAP, headers=AUTH)
    etag = first.headers["ETag"]
    again = await client.get(MAP, headers={**AUTH, "If-None-Match": etag})
    assert again.status == 304
    assert await again.read() == b""
    assert again.headers["ETag"] == etag
    assert (await client.get(MAP, headers={**AUTH, "If-None-Match": '"other"'})).status == 200
    touch(models_dir / "checkpoints" / "wai_v15.safetensors")

    async def tag_moved() -> bool:
        response = await client.get(MAP, headers={**AUTH, "If-None-Match": etag})
        return response.status == 200 and response.headers["ETag"] != etag

    from .helpers import eventually

    await eventually(tag_moved, what="a new ETag after a file landed")


@pytest.mark.usefixtures("library_on_disk")
async def test_gzip_variant_is_compressed_once_and_tagged_apart(start: StartClient) -> None:
    client = await start()
    plain = await client.get(MAP, headers={**AUTH, "Accept-Encoding": "identity"})
    zipped = await client.get(MAP, headers={**AUTH, "Accept-Encoding": "gzip, deflate"}, auto_decompress=False)
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in zipped.headers["Vary"]
    assert zipped.headers["ETag"] != plain.headers["ETag"]
    assert gzip.decompress(await zipped.read()) == await plain.read()
    not_modified = await client.get(MAP, headers={**AUTH, "Accept-Encoding": "gzip", "If-None-Match": zipped.headers["ETag"]})
    assert not_modified.status == 304
    refused = await client.get(MAP, headers={**AUTH, "Accept-Encoding": "gzip;q=0"})
    assert "Content-Encoding" not in refused.headers


@pytest.mark.usefixtures("library_on_disk")
async def test_point_answers_by_version_and_model(start: StartClient) -> None:
    client = await start()
    some = await get_map(client, versions="2514310,400,999999")
    assert set(some["by_version"]) == {"2514310", "400"}
    assert some["by_version"]["400"]["status"] == "downloading"  # a .part of it is on disk
    assert some["by_model"] == {"827184": [2514310], "4000": [400]}
    by_model = await get_map(client, models="827184")
    assert set(by_model["by_version"]) == {"2514310", "2514311"}
    assert (await get_map(client, versions="424242")) == {"by_version": {}, "by_model": {}}


async def test_every_id_the_map_shows_can_be_asked_for(start: StartClient, catalog_dir: Path) -> None:
    big_version, big_model = MAX_ID, 9876543210987
    write_json(catalog_dir / "models.json", catalog(entry(big_version, "big.safetensors", model_id=big_model)))
    client = await start()
    assert str(big_version) in (await get_map(client))["by_version"]
    assert set((await get_map(client, versions=f"{big_version},,1"))["by_version"]) == {str(big_version)}
    assert (await get_map(client, models=str(big_model)))["by_model"] == {str(big_model): [big_version]}
    too_big = await client.get(f"{MAP}?versions={MAX_ID + 1}", headers=AUTH)
    assert too_big.status == 400 and (await too_big.json())["code"] == "invalid_ids"


@pytest.mark.parametrize("query", ["versions=abc", "versions=1,-2", "models=1.5", "versions=" + ",".join(["1"] * 501)])
async def test_malformed_point_queries_are_400(start: StartClient, query: str) -> None:
    client = await start()
    response = await client.get(f"{MAP}?{query}", headers=AUTH)
    assert response.status == 400
    assert set(await response.json()) == {"detail", "code"}


@pytest.mark.usefixtures("library_on_disk")
async def test_serving_does_not_serialize_per_request(start: StartClient, monkeypatch: pytest.MonkeyPatch) -> None:
    client = await start()
    expected = await (await client.get(MAP, headers=AUTH)).read()

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the map was serialized on the request path")

    monkeypatch.setattr("service.map.index.orjson.dumps", refuse)
    monkeypatch.setattr("service.http.views.orjson.dumps", refuse)
    monkeypatch.setattr(CivitaiIndex, "_publish", refuse)
    for _ in range(3):
        assert await (await client.get(MAP, headers=AUTH)).read() == expected


async def test_a_map_too_large_to_keep_joined_is_sent_in_slices(start: StartClient, catalog_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("service.map.body.KEEP_JOINED_BYTES", 256 * 1024)
    monkeypatch.setattr("service.map.chunks.CHUNK_PARTS", 3 * 80)
    monkeypatch.setattr("service.map.body.JOIN_IN_THREAD_PARTS", 1000)
    entries = [entry(v, f"file_{v}.safetensors", "loras") for v in range(1, 2001)]
    write_json(catalog_dir / "models.json", catalog(*entries, category="loras"))
    client = await start()

    def refuse(*_args: object) -> None:
        raise AssertionError("the large map was joined whole")

    monkeypatch.setattr(MapSnapshot, "_keep", refuse)
    response = await client.get(MAP, headers={**AUTH, "Accept-Encoding": "identity"})
    body = await response.read()
    assert len(body) > 256 * 1024 and int(response.headers["Content-Length"]) == len(body)
    found = orjson.loads(body)
    assert len(found["by_version"]) == 2000 and found["by_model"]["20000"] == [2000]
    head = await client.head(MAP, headers={**AUTH, "Accept-Encoding": "identity"})
    assert head.status == 200 and int(head.headers["Content-Length"]) == len(body)
    zipped = await client.get(MAP, headers={**AUTH, "Accept-Encoding": "gzip"}, auto_decompress=False)
    assert zipped.headers["Content-Encoding"] == "gzip" and gzip.decompress(await zipped.read()) == body
    again = await client.get(MAP, headers={**AUTH, "Accept-Encoding": "identity", "If-None-Match": response.headers["ETag"]})
    assert again.status == 304


async def test_a_large_map_is_streamed_whole(start: StartClient, catalog_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from service.http import views

    monkeypatch.setattr(views, "STREAM_THRESHOLD", 512 * 1024)
    monkeypatch.setattr(views, "STREAM_CHUNK", 100_000)  # pieces that do not divide the body
    STREAM_THRESHOLD = views.STREAM_THRESHOLD
    entries = [entry(v, f"file_{v}.safetensors", "loras", name="n" * 200) for v in range(1, 6001)]
    write_json(catalog_dir / "models.json", catalog(*entries, category="loras"))
    client = await start()
    response = await client.get(MAP, headers={**AUTH, "Accept-Encoding": "identity"})
    body = await response.read()
    assert len(body) > STREAM_THRESHOLD and int(response.headers["Content-Length"]) == len(body)
    assert len(orjson.loads(body)["by_version"]) == 6000
    head = await client.head(MAP, headers={**AUTH, "Accept-Encoding": "identity"})
    assert head.status == 200 and int(head.headers["Content-Length"]) == len(body)


async def test_the_map_carries_size_and_trigger_words_when_the_catalog_has_them(start: StartClient, catalog_dir: Path) -> None:
    write_json(
        catalog_dir / "loras.json",
        catalog(
            entry(9301, "inked.safetensors", "loras", size_gb=0.145, trigger_words=["ink wash", "", 7, None, "lines"]),
            entry(9302, "plain.safetensors", "loras", size_gb=True, trigger_words="not a list"),
            category="loras",
        ),
    )
    client = await start()
    shown = (await get_map(client))["by_version"]
    assert shown["9301"]["size_gb"] == 0.145 and shown["9301"]["trigger_words"] == ["ink wash", "lines"]
    assert "size_gb" not in shown["9302"] and "trigger_words" not in shown["9302"]
