"""The page for people, driven in headless Chromium against the real service and a loopback
CivitAI: paste the key, add a version, download it, watch the bar move and the status turn present."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from service.http.appkeys import FEED

from .browser import browser_page
from .conftest import StartClient
from .downloads.fake_civitai import Blob, FakeCivitai, started
from .helpers import API_KEY, catalog, entry, lora_version, write_json

MB = 1024 * 1024


@pytest.fixture
async def fake(aiohttp_server: Any) -> FakeCivitai:
    return await started(aiohttp_server)


def row(version: int, what: str) -> str:
    return f"document.querySelector('[data-version-id=\"{version}\"]')?.{what}"


async def test_a_new_user_adds_and_downloads_a_version_and_watches_it_land(
    start: StartClient, fake: FakeCivitai, catalog_dir: Path, models_dir: Path, tmp_path: Path
) -> None:
    data = (bytes(range(256)) * (24 * MB // 256))[: 24 * MB]
    fake.blobs[501] = Blob(data, hold_at=20 * MB)  # 16 MB are written by then (8 MB blocks)
    body = lora_version(501, file="painterly_v2.safetensors")
    body["files"][0].update(hashes={"SHA256": fake.blobs[501].sha256.upper()}, sizeKB=len(data) / 1000)
    fake.versions[501] = body
    write_json(catalog_dir / "models.json", catalog())
    client = await start(civitai_base_url=str(fake.civitai.make_url("")).rstrip("/"))  # type: ignore[attr-defined]
    async with browser_page() as page:
        await page.goto(str(client.make_url("/")))
        await page.evaluate("document.getElementById('key').value = 'not-the-key-0123456789'; document.getElementById('key-form').requestSubmit()")
        await page.wait_for("document.getElementById('message').textContent.includes('not right')")
        await page.evaluate(f"document.getElementById('key').value = '{API_KEY}'; document.getElementById('key-form').requestSubmit()")
        await page.wait_for("!document.getElementById('app').classList.contains('hidden')")
        await page.evaluate("document.querySelector('input[name=add]').value = 'https://civitai.com/models/5000?modelVersionId=501'; document.getElementById('add-form').requestSubmit()")
        await page.wait_for(row(501, "querySelector('.status')?.dataset.status === 'missing'"))
        assert await page.evaluate("document.getElementById('message').textContent") == "added: painterly_v2.safetensors"
        await page.evaluate(row(501, "querySelector('[data-action=download]').click()"))
        await page.wait_for(row(501, "querySelector('progress')?.value >= 50"))
        shown = await page.evaluate(row(501, "querySelector('.status').textContent"))
        # the percentage, then the rate and the time left once the page has seen the bytes grow
        assert re.fullmatch(r"downloading \d+ %( [\d.]+ MB/s(, ([1-9]\d* s|\d+ min|[\d.]+ h) left)?)?", shown.strip()), shown
        await page.screenshot(tmp_path / "downloading.png")
        fake.blobs[501].release.set()
        await page.wait_for(row(501, "querySelector('.status')?.dataset.status === 'present'"), timeout=20)
        assert await page.evaluate("sessionStorage.getItem('comfy-catalog-key')") == API_KEY
        assert client.app[FEED].subscriptions  # live updates come over the events stream (a key in its URL is refused) ...
        urls = await page.evaluate("[location.href, ...performance.getEntriesByType('resource').map((e) => e.name)].join(' ')")
        assert API_KEY not in urls and "key=" not in urls  # ... and no URL the page asked for carries the key
    assert (models_dir / "loras" / "painterly_v2.safetensors").read_bytes() == data


async def test_the_page_loads_without_the_key_and_forbids_outside_scripts(start: StartClient) -> None:
    client = await start()
    response = await client.get("/")
    assert response.status == 200 and response.content_type == "text/html"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    script = await client.get("/app.js")
    assert script.status == 200 and "sessionStorage" in await script.text()
    assert API_KEY not in await response.text() + await script.text()


async def test_a_stopped_download_and_a_lora_removal_read_plainly(start: StartClient, catalog_dir: Path, models_dir: Path) -> None:
    write_json(
        catalog_dir / "loras.json",
        catalog(entry(601, "halfway.safetensors", "loras"), entry(602, "unwanted.safetensors", "loras"), category="sdxl_loras"),
    )
    part = models_dir / "loras" / "halfway.safetensors.part"
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(b"x" * 2_500_000)
    os.utime(part, (time.time() - 3600, time.time() - 3600))  # nobody has written it for an hour
    client = await start()
    async with browser_page() as page:
        await page.goto(str(client.make_url("/")))
        await page.evaluate(f"document.getElementById('key').value = '{API_KEY}'; document.getElementById('key-form').requestSubmit()")
        await page.wait_for(row(601, "querySelector('.status')?.dataset.status === 'missing'"))
        assert await page.evaluate(row(601, "querySelector('.status').innerText")) == "missing\nstopped at 2.5 MB; Resume continues it"
        assert await page.evaluate(row(601, "querySelector('[data-action=download]').textContent")) == "Resume"
        await page.evaluate(row(602, "querySelector('[data-action=remove]').click()"))
        await page.wait_for("document.getElementById('message').textContent.startsWith('removed')")
        assert await page.evaluate("document.getElementById('message').textContent") == "removed from loras.json: unwanted.safetensors"


async def test_the_page_serves_its_own_scripts_and_nothing_else_of_its_folder(start: StartClient) -> None:
    client = await start()
    for name in ("live.js", "tools.js"):
        response = await client.get(f"/page/{name}")
        assert response.status == 200 and response.content_type == "text/javascript"
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    for name in ("index.html", "app.css", "..%2Fviews.py", "%2e%2e%2fviews.py", "nope.js"):
        assert (await client.get(f"/page/{name}")).status == 404
