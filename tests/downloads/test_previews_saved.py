"""A version's first image saved beside its file after a download (PREVIEWS=on), against the
loopback CivitAI: only from CivitAI's hosts, only an image by its bytes, rated as asked."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image

from service.http.appkeys import PREVIEWS

from ..helpers import AUTH, eventually
from .fake_civitai import FakeCivitai
from .jobs import blob, download, lora, map_entry, until_job


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (600, 400), (10, 120, 200)).save(out, "PNG")
    return out.getvalue()


def version_with_images(fake: FakeCivitai, version_id: int, *images: dict[str, Any]) -> None:
    fake.versions[version_id] = {"id": version_id, "modelId": version_id, "name": "v1", "images": list(images), "files": []}


def image_url(fake: FakeCivitai, name: str) -> str:
    return str(fake.civitai.make_url(f"/images/{name}"))  # type: ignore[attr-defined]


async def downloaded(service: Any, fake: FakeCivitai, version_id: int, **settings: Any) -> Any:
    fake.blobs[version_id] = blob(version_id, size=64 * 1024)
    client = await service(lora(version_id, fake.blobs[version_id]), previews=True, **settings)
    job = (await download(client, f"lora_{version_id}.safetensors"))["job"]
    await until_job(client, job, "done")
    return client


async def test_the_first_safe_image_is_saved_beside_the_file_and_shown(service: Any, fake: FakeCivitai, models_dir: Path) -> None:
    picture = png()
    fake.images["safe.png"] = picture
    fake.images["racy.png"] = png()
    version_with_images(
        fake, 31,
        {"url": image_url(fake, "clip.mp4"), "type": "video", "nsfwLevel": 1},
        {"url": image_url(fake, "racy.png"), "type": "image", "nsfwLevel": 8},
        {"url": image_url(fake, "safe.png"), "type": "image", "nsfwLevel": 1},
    )
    client = await downloaded(service, fake, 31)

    async def shown() -> bool:
        return "preview" in await map_entry(client, 31)

    await eventually(shown, what="the saved preview in the map")
    assert (models_dir / "loras" / "lora_31.preview.png").read_bytes() == picture
    thumb = await client.get((await map_entry(client, 31))["preview"], headers=AUTH)
    assert thumb.status == 200 and thumb.content_type == "image/webp"
    asked = [path for server, path, _headers in fake.requests if path.startswith("/images/")]
    assert asked == ["/images/safe.png"], "neither the video nor the image rated X was fetched"


async def test_with_nsfw_allowed_the_first_image_is_taken(service: Any, fake: FakeCivitai, models_dir: Path) -> None:
    fake.images["racy.png"] = png()
    version_with_images(fake, 32, {"url": image_url(fake, "racy.png"), "type": "image", "nsfw": "X"})
    client = await downloaded(service, fake, 32, previews_nsfw=True)

    async def saved() -> bool:
        return (models_dir / "loras" / "lora_32.preview.png").exists()

    await eventually(saved, what="the preview saved")
    assert (await client.get("/ready")).status == 200


async def test_images_from_other_hosts_or_not_images_are_never_written(service: Any, fake: FakeCivitai, models_dir: Path) -> None:
    fake.images["page.png"] = b"<html><script>alert(1)</script></html>"
    version_with_images(
        fake, 33,
        {"url": "https://evil.example/x.png", "type": "image", "nsfwLevel": 1},
    )
    version_with_images(fake, 34, {"url": image_url(fake, "page.png"), "type": "image", "nsfwLevel": 1})
    fake.blobs[33] = blob(33, size=64 * 1024)
    fake.blobs[34] = blob(34, size=64 * 1024)
    client = await service(lora(33, fake.blobs[33]), lora(34, fake.blobs[34]), previews=True)
    for version_id in (33, 34):
        job = (await download(client, f"lora_{version_id}.safetensors"))["job"]
        await until_job(client, job, "done")

    saver = client.server.app[PREVIEWS]

    async def both_handled() -> bool:
        return saver.handled == 2

    await eventually(both_handled, what="both previews looked at")
    assert any(path == "/images/page.png" for _server, path, _headers in fake.requests)
    assert saver.saved == 0
    assert sorted(p.name for p in (models_dir / "loras").iterdir()) == ["lora_33.safetensors", "lora_34.safetensors"]


async def test_a_preview_already_there_is_kept(service: Any, fake: FakeCivitai, models_dir: Path) -> None:
    mine = png()
    (models_dir / "loras" / "lora_35.png").write_bytes(mine)
    fake.images["theirs.png"] = png()
    version_with_images(fake, 35, {"url": image_url(fake, "theirs.png"), "type": "image", "nsfwLevel": 1})
    client = await downloaded(service, fake, 35)
    saver = client.server.app[PREVIEWS]

    async def handled() -> bool:
        return saver.handled == 1

    await eventually(handled, what="the preview looked at")
    assert not (models_dir / "loras" / "lora_35.preview.png").exists()
    assert not any(path.startswith("/images/") for _server, path, _headers in fake.requests)


async def test_a_redirect_that_is_no_url_costs_that_preview_only(service: Any, fake: FakeCivitai, models_dir: Path) -> None:
    fake.image_redirects["broken.png"] = "http://[::1"
    fake.images["fine.png"] = png()
    version_with_images(fake, 36, {"url": image_url(fake, "broken.png"), "type": "image", "nsfwLevel": 1})
    version_with_images(fake, 37, {"url": image_url(fake, "fine.png"), "type": "image", "nsfwLevel": 1})
    for version_id in (36, 37):
        fake.blobs[version_id] = blob(version_id, size=64 * 1024)
    client = await service(lora(36, fake.blobs[36]), lora(37, fake.blobs[37]), previews=True)
    for version_id in (36, 37):
        await until_job(client, (await download(client, f"lora_{version_id}.safetensors"))["job"], "done")
    saver = client.server.app[PREVIEWS]

    async def both_handled() -> bool:
        return saver.handled == 2

    await eventually(both_handled, what="both previews looked at")
    assert not (models_dir / "loras" / "lora_36.preview.png").exists()
    assert (models_dir / "loras" / "lora_37.preview.png").exists()
