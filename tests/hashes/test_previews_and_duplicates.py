"""Previews found beside model files and served small, and the same bytes kept twice, through the
real app on real files."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from ..conftest import StartClient, get_map
from ..helpers import AUTH, catalog, entry, eventually, touch, write_json
from .fake_civitai import fake_civitai
from .test_hashing_api import HASHING, hashing_idle

LORA = b"a lora with a picture " * 3000
PREVIEW = "/api/admin/models/preview/"


def png(width: int = 1200, height: int = 800) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 90)).save(out, "PNG")
    return out.getvalue()


async def test_a_preview_beside_a_file_is_in_the_map_and_served_small(start: StartClient, models_dir: Path, catalog_dir: Path) -> None:
    write_json(catalog_dir / "loras.json", catalog(entry(1001, "pic.safetensors", "loras"), category="loras"))
    touch(models_dir / "loras" / "pic.safetensors", LORA)
    picture = png()
    touch(models_dir / "loras" / "pic.preview.png", picture)
    with fake_civitai():
        client = await start(**HASHING)
        await hashing_idle(client, 1)
        shown = (await get_map(client))["by_version"]["1001"]
        assert shown["status"] == "present" and shown["preview"] == f"{PREVIEW}1001"
        thumb = await client.get(shown["preview"], headers=AUTH)
        full = await client.get(shown["preview"] + "?full=true", headers=AUTH)
        assert (await client.get(shown["preview"])).status == 401, "previews need the key like every admin route"
    assert thumb.status == 200 and thumb.content_type == "image/webp"
    body = await thumb.read()
    assert len(body) < 20_000
    assert max(Image.open(io.BytesIO(body)).size) == 320
    assert thumb.headers["X-Content-Type-Options"] == "nosniff" and "sandbox" in thumb.headers["Content-Security-Policy"]
    assert full.status == 200 and full.content_type == "image/png" and await full.read() == picture


async def test_comfyui_s_own_name_comes_first(start: StartClient, models_dir: Path, catalog_dir: Path) -> None:
    write_json(catalog_dir / "loras.json", catalog(entry(1002, "two.safetensors", "loras"), category="loras"))
    touch(models_dir / "loras" / "two.safetensors", LORA)
    touch(models_dir / "loras" / "two.preview.png", png(10, 10))
    jpeg = io.BytesIO()
    Image.new("RGB", (30, 20)).save(jpeg, "JPEG")
    touch(models_dir / "loras" / "two.jpg", jpeg.getvalue())
    with fake_civitai():
        client = await start(**HASHING)
        await hashing_idle(client, 1)
        full = await client.get(f"{PREVIEW}1002?full=true", headers=AUTH)
    assert full.content_type == "image/jpeg"


@pytest.mark.parametrize("content", [b"<html><script>alert(1)</script></html>", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100])
async def test_a_preview_that_is_no_image_is_never_served(start: StartClient, models_dir: Path, catalog_dir: Path, content: bytes) -> None:
    write_json(catalog_dir / "loras.json", catalog(entry(1003, "bad.safetensors", "loras"), category="loras"))
    touch(models_dir / "loras" / "bad.safetensors", LORA)
    touch(models_dir / "loras" / "bad.png", content)
    with fake_civitai():
        client = await start(**HASHING)
        await hashing_idle(client, 1)
        thumb = await client.get(f"{PREVIEW}1003", headers=AUTH)
        full = await client.get(f"{PREVIEW}1003?full=true", headers=AUTH)
    assert thumb.status == 404 and (await thumb.json())["code"] == "no_preview"
    if content.startswith(b"<html"):
        assert full.status == 404, "HTML named .png is not an image"
    else:
        assert full.status == 200 and full.content_type == "image/png"


async def test_no_preview_is_a_404_and_a_bad_id_a_400(start: StartClient, models_dir: Path, catalog_dir: Path) -> None:
    write_json(catalog_dir / "loras.json", catalog(entry(1004, "plain.safetensors", "loras"), category="loras"))
    touch(models_dir / "loras" / "plain.safetensors", LORA)
    with fake_civitai():
        client = await start(**HASHING)
        await hashing_idle(client, 1)
        assert "preview" not in (await get_map(client))["by_version"]["1004"]
        missing = await client.get(f"{PREVIEW}1004", headers=AUTH)
        bad = await client.get(f"{PREVIEW}abc", headers=AUTH)
    assert missing.status == 404 and (await missing.json())["code"] == "no_preview"
    assert bad.status == 400


async def test_the_same_bytes_in_two_places_are_listed_with_the_space_they_waste(start: StartClient, models_dir: Path) -> None:
    touch(models_dir / "loras" / "a.safetensors", LORA)
    touch(models_dir / "loras" / "sub" / "a_copy.safetensors", LORA)
    touch(models_dir / "checkpoints" / "other.safetensors", b"other bytes " * 500)
    os.link(models_dir / "checkpoints" / "other.safetensors", models_dir / "checkpoints" / "other_link.safetensors")
    with fake_civitai() as civitai:
        civitai.knows(LORA, 1005)
        client = await start(**HASHING)
        await hashing_idle(client, 4)

        async def listed() -> bool:
            return bool((await (await client.get("/api/admin/library/duplicates", headers=AUTH)).json())["groups"])

        await eventually(listed, what="the duplicate listed")
        answer = await (await client.get("/api/admin/library/duplicates", headers=AUTH)).json()
    assert answer["wasted_bytes"] == len(LORA)
    [group] = answer["groups"]  # the hard link is one file, not a copy
    assert group["size"] == len(LORA) and group["copies"] == 2 and group["version_id"] == 1005
    assert sorted((f["dest"], f["file"]) for f in group["files"]) == [("loras", "a.safetensors"), ("loras/sub", "a_copy.safetensors")]


async def test_previews_added_or_removed_later_are_seen_by_the_regular_look(
    start: StartClient, models_dir: Path, catalog_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("service.hashes.hasher.RECHECK_S", 0.5)  # the hourly look at every file, twice a second
    write_json(catalog_dir / "loras.json", catalog(entry(1006, "late.safetensors", "loras"), category="loras"))
    touch(models_dir / "loras" / "late.safetensors", LORA)
    with fake_civitai():
        client = await start(**HASHING)
        await hashing_idle(client, 1)
        touch(models_dir / "loras" / "late.png", png(40, 40))

        async def offered(wanted: bool) -> bool:
            return ("preview" in (await get_map(client))["by_version"]["1006"]) is wanted

        await eventually(lambda: offered(True), what="the new preview offered")
        (models_dir / "loras" / "late.png").unlink()
        await eventually(lambda: offered(False), what="the removed preview no longer offered")


async def test_a_preview_that_is_a_link_is_not_served(start: StartClient, models_dir: Path, catalog_dir: Path, tmp_path: Path) -> None:
    write_json(catalog_dir / "loras.json", catalog(entry(1007, "linked.safetensors", "loras"), category="loras"))
    touch(models_dir / "loras" / "linked.safetensors", LORA)
    private = touch(tmp_path / "private" / "photo.png", png(20, 20))
    (models_dir / "loras" / "linked.png").symlink_to(private)
    with fake_civitai():
        client = await start(**HASHING)
        await hashing_idle(client, 1)
        full = await client.get(f"{PREVIEW}1007?full=true", headers=AUTH)
    assert full.status == 404, "a link may point anywhere on the machine"


async def test_a_thumbnail_asked_for_at_once_is_made_and_counted_once(tmp_path: Path) -> None:
    import asyncio

    from service.sidecars.images import Thumbnails

    picture = touch(tmp_path / "p.png", png(400, 300))
    thumbnails = Thumbnails()
    made = await asyncio.gather(*(thumbnails.get(str(picture)) for _ in range(8)))
    assert len({len(m) for m in made}) == 1
    assert thumbnails._bytes == len(made[0]), "the cache counts each thumbnail once"
