"""The page as a library, in headless Chromium against the real service: finding (search, filters,
a bookmarkable view), live rows (one change, one row), failures on the row, the offline banner,
the phone layout, import and duplicates, bulk actions, thumbnails, and accessibility."""

from __future__ import annotations

import asyncio
import io
import json
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from PIL import Image

from service.http.appkeys import DOWNLOADS

from .browser import Page, browser_page
from .conftest import StartClient, get_map
from .downloads.fake_civitai import FakeCivitai, started
from .downloads.jobs import blob, lora
from .helpers import API_KEY, catalog, entry, eventually, touch, write_json

AXE = Path(__file__).resolve().parent.parent / ".venv" / "axe-core" / "axe.min.js"


@pytest.fixture
async def fake(aiohttp_server: Any) -> FakeCivitai:
    return await started(aiohttp_server)


def row(version: int, what: str) -> str:
    return f"document.querySelector('[data-version-id=\"{version}\"]')?.{what}"


async def login(page: Page, url: str) -> None:
    await page.goto(url)
    await page.evaluate(f"document.getElementById('key').value = '{API_KEY}'; document.getElementById('key-form').requestSubmit()")
    await page.wait_for("document.querySelectorAll('[data-version-id]').length > 0")


def shown_ids() -> str:
    return "[...document.querySelectorAll('[data-version-id]')].map((e) => Number(e.dataset.versionId)).sort((a, b) => a - b)"


def library(catalog_dir: Path) -> None:
    write_json(
        catalog_dir / "models.json",
        catalog(
            entry(701, "inkwash_v1.safetensors", "checkpoints", name="Inkwash XL", base_model="SDXL 1.0"),
            entry(702, "photon_v2.safetensors", "checkpoints", name="Photon", base_model="SD 1.5"),
        ),
    )
    write_json(catalog_dir / "loras.json", catalog(entry(703, "ink_lines.safetensors", "loras", name="Ink lines", base_model="SDXL 1.0"), category="loras"))


async def test_search_and_filters_find_rows_and_the_view_is_kept_in_the_fragment(start: StartClient, catalog_dir: Path, models_dir: Path) -> None:
    library(catalog_dir)
    touch(models_dir / "checkpoints" / "photon_v2.safetensors", b"x")
    client = await start()
    async with browser_page() as page:
        await login(page, str(client.make_url("/")))
        assert await page.evaluate(shown_ids()) == [701, 702, 703]
        await page.evaluate("{ const s = document.getElementById('search'); s.value = 'INK'; s.dispatchEvent(new Event('input')) }")
        await page.wait_for(f"JSON.stringify({shown_ids()}) === '[701,703]'")
        await page.evaluate("{ const f = document.getElementById('f-catalog'); f.value = 'loras'; f.dispatchEvent(new Event('change')) }")
        await page.wait_for(f"JSON.stringify({shown_ids()}) === '[703]'")
        assert await page.evaluate("document.getElementById('count').textContent") == "1 of 3 versions"
        fragment = await page.evaluate("location.hash")
        assert "q=INK" in fragment and "catalog=loras" in fragment and API_KEY not in fragment
        await page.evaluate("location.reload()")  # a bookmark: the same view comes back (the key stays in this tab)
        await page.wait_for("document.readyState === 'complete' && document.querySelectorAll('[data-version-id]').length > 0")
        await page.wait_for(f"JSON.stringify({shown_ids()}) === '[703]'")
        await page.evaluate("{ location.hash = ''; const s = document.getElementById('search'); s.value = ''; s.dispatchEvent(new Event('input')) }")
        await page.evaluate("{ const f = document.getElementById('f-catalog'); f.value = ''; f.dispatchEvent(new Event('change')) }")
        await page.evaluate("{ const f = document.getElementById('f-status'); f.value = 'present'; f.dispatchEvent(new Event('change')) }")
        await page.wait_for(f"JSON.stringify({shown_ids()}) === '[702]'")


async def test_a_change_updates_its_row_without_reading_the_whole_map_again(start: StartClient, catalog_dir: Path, models_dir: Path) -> None:
    library(catalog_dir)
    client = await start()
    full_reads = "performance.getEntriesByType('resource').filter((e) => e.name.endsWith('/civitai-map')).length"
    async with browser_page() as page:
        await login(page, str(client.make_url("/")))
        await page.wait_for(row(702, "querySelector('.status')?.dataset.status === 'missing'"))
        assert await page.evaluate(full_reads) == 1
        touch(models_dir / "checkpoints" / "photon_v2.safetensors", b"landed")
        await page.wait_for(row(702, "querySelector('.status')?.dataset.status === 'present'"))
        write_json(
            catalog_dir / "models.json",
            catalog(
                entry(701, "inkwash_v1.safetensors", "checkpoints", name="Inkwash XL", base_model="SDXL 1.0"),
                entry(702, "photon_v2.safetensors", "checkpoints", name="Photon", base_model="SD 1.5"),
                entry(704, "new_one.safetensors", "checkpoints", name="Brand new", base_model="Flux.1 D"),
            ),
        )
        await page.wait_for(row(704, "querySelector('.name')?.textContent === 'Brand new'"))
        assert await page.evaluate(full_reads) == 1, "changes are read by the versions they name, never as the whole map"


async def test_a_failed_download_says_why_on_its_row(start: StartClient, fake: FakeCivitai, catalog_dir: Path) -> None:
    fake.blobs[801] = blob(801, size=64 * 1024)
    fake.refuse[801] = [(403, {})] * 10
    write_json(catalog_dir / "models.json", catalog(lora(801, fake.blobs[801]), category="loras"))
    client = await start(civitai_base_url=str(fake.civitai.make_url("")).rstrip("/"))  # type: ignore[attr-defined]
    async with browser_page() as page:
        await login(page, str(client.make_url("/")))
        await page.evaluate(row(801, "querySelector('[data-action=download]').click()"))
        await page.wait_for(row(801, "querySelector('.why')?.textContent.startsWith('download failed: ')"), timeout=15)
        reason = await page.evaluate(row(801, "querySelector('.why').textContent"))
        assert "API key" in reason, "the reason is on the row itself, not in a tooltip"
        assert await page.evaluate(row(801, "querySelector('[data-action=download]').textContent")) == "Download"


async def test_the_page_says_when_the_service_is_gone_and_recovers_by_itself(start: StartClient, catalog_dir: Path) -> None:
    library(catalog_dir)
    client = await start()
    port = client.port
    async with browser_page() as page:
        await login(page, str(client.make_url("/")))
        await client.close()
        await page.wait_for("!document.getElementById('offline').classList.contains('hidden')", timeout=15)
        await page.evaluate("document.querySelector('[data-action=remove]').click()")
        await page.wait_for("document.getElementById('message').textContent.includes('cannot be reached')")
        write_json(catalog_dir / "loras.json", catalog(entry(706, "while_away.safetensors", "loras", name="Added while away"), category="loras"))
        again = await start(server_kwargs={"port": port})
        await page.wait_for("document.getElementById('offline').classList.contains('hidden')", timeout=20)
        await page.wait_for("document.getElementById('message').textContent === ''")
        await page.wait_for(f"JSON.stringify({shown_ids()}) === '[701,702,706]'", timeout=10)  # what changed meanwhile is read again
        await again.close()


async def test_on_a_phone_nothing_scrolls_sideways_and_every_action_is_in_reach(start: StartClient, catalog_dir: Path) -> None:
    library(catalog_dir)
    client = await start()
    async with browser_page() as page:
        await page.send("Emulation.setDeviceMetricsOverride", width=390, height=844, deviceScaleFactor=2, mobile=True)
        await login(page, str(client.make_url("/")))
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        rightmost = await page.evaluate(
            "Math.max(...[...document.querySelectorAll('button, input, select')].filter((e) => e.offsetParent).map((e) => e.getBoundingClientRect().right))"
        )
        assert rightmost <= 390
        sizes = await page.evaluate("[...document.querySelectorAll('.row button')].map((b) => b.getBoundingClientRect().height)")
        assert sizes and min(sizes) >= 32, "buttons big enough for a finger"
        bottom = await page.evaluate("document.getElementById('list').getBoundingClientRect().bottom")
        assert bottom <= 844, "the list ends inside the screen: the page itself does not scroll"
        await page.evaluate(row(702, "querySelector('[data-action=remove]').click()"))
        await page.wait_for("document.getElementById('message').textContent.startsWith('removed')")


async def test_import_and_duplicates_are_shown_before_anything_is_changed(start: StartClient, catalog_dir: Path, models_dir: Path) -> None:
    write_json(catalog_dir / "models.json", catalog())
    data = b"an identified lora " * 500
    model = touch(models_dir / "loras" / "found.safetensors", data)
    touch(models_dir / "loras" / "copy" / "found_copy.safetensors", data)
    touch(models_dir / "loras" / "mystery.safetensors", b"nobody knows this " * 100)
    import hashlib

    sha = hashlib.sha256(data).hexdigest().upper()
    version = {"id": 901, "modelId": 90, "name": "v1", "baseModel": "SDXL 1.0", "model": {"name": "Found", "type": "LORA"},
               "files": [{"id": 9001, "name": "found.safetensors", "type": "Model", "sizeKB": len(data) / 1024, "hashes": {"SHA256": sha}}]}
    model.with_name("found.civitai.info").write_bytes(orjson.dumps(version))
    client = await start(hashing=True, hash_settle_s=0.0, civitai_base_url="http://127.0.0.1:9")
    async with browser_page() as page:
        await login(page, str(client.make_url("/")))
        await page.evaluate("document.getElementById('open-duplicates').click()")
        await page.wait_for("document.getElementById('duplicates-body').textContent.includes('found_copy.safetensors')", timeout=15)
        assert "1 files kept more than once" in await page.evaluate("document.getElementById('duplicates-body').textContent")
        await page.evaluate("document.querySelector('#duplicates-dialog [data-close]').click()")
        await page.evaluate("document.getElementById('open-import').click()")
        await page.wait_for("document.getElementById('import-body').textContent.includes('Would add 1')", timeout=15)
        listed = await page.evaluate("document.getElementById('import-body').textContent")
        assert "found.safetensors" in listed and "mystery.safetensors" in listed
        assert json.loads((catalog_dir / "models.json").read_text())["categories"] == [] or "901" not in (catalog_dir / "models.json").read_text()
        await page.evaluate("document.getElementById('import-confirm').click()")
        await page.wait_for("document.getElementById('message').textContent.startsWith('imported 1')")
    assert '"civitai_version_id": 901' in (catalog_dir / "models.json").read_text()


async def test_a_selection_is_downloaded_in_one_click(start: StartClient, fake: FakeCivitai, catalog_dir: Path, models_dir: Path) -> None:
    for version_id in (811, 812):
        fake.blobs[version_id] = blob(version_id, size=128 * 1024)
    write_json(catalog_dir / "models.json", catalog(lora(811, fake.blobs[811]), lora(812, fake.blobs[812]), category="loras"))
    client = await start(civitai_base_url=str(fake.civitai.make_url("")).rstrip("/"))  # type: ignore[attr-defined]
    async with browser_page() as page:
        await login(page, str(client.make_url("/")))
        for version_id in (811, 812):
            await page.evaluate(row(version_id, "querySelector('input[type=checkbox]').click()"))
        assert await page.evaluate("document.getElementById('bulk-count').textContent") == "2 selected"
        await page.evaluate("document.getElementById('bulk-download').click()")
        for version_id in (811, 812):
            await page.wait_for(row(version_id, "querySelector('.status')?.dataset.status === 'present'"), timeout=20)
    assert (models_dir / "loras" / "lora_812.safetensors").read_bytes() == fake.blobs[812].data


async def test_a_row_shows_its_thumbnail(start: StartClient, catalog_dir: Path, models_dir: Path) -> None:
    library(catalog_dir)
    touch(models_dir / "checkpoints" / "photon_v2.safetensors", b"some bytes")
    picture = io.BytesIO()
    Image.new("RGB", (800, 600), (30, 160, 90)).save(picture, "PNG")
    touch(models_dir / "checkpoints" / "photon_v2.preview.png", picture.getvalue())
    client = await start(hashing=True, hash_settle_s=0.0, civitai_base_url="http://127.0.0.1:9")

    async def offered() -> bool:
        return "preview" in (await get_map(client))["by_version"]["702"]

    await eventually(offered, what="the preview in the map before the page opens")  # drawn at login, not by an event
    async with browser_page() as page:
        await login(page, str(client.make_url("/")))
        loaded = row(702, "querySelector('img.thumb')?.src.startsWith('blob:')") + " && " + row(702, "querySelector('img.thumb').complete")
        await page.wait_for(loaded, timeout=15)  # decoded: a src just set has no size yet
        assert await page.evaluate(row(702, "querySelector('img.thumb').naturalWidth")) == 320


def axe_script() -> str:
    """axe-core's script (the npm package, fetched by `make test` into .venv); the test is
    skipped without it, except in CI."""
    if not AXE.is_file():
        if os.environ.get("CI"):
            pytest.fail("axe-core is not installed; make test fetches it with npm")
        pytest.skip("axe-core is not installed (make test fetches it with npm)")
    return AXE.read_text()


async def test_no_serious_accessibility_violation(start: StartClient, catalog_dir: Path) -> None:
    script = axe_script()
    library(catalog_dir)
    client = await start()
    async with browser_page() as page:
        await page.goto(str(client.make_url("/")))
        await page.evaluate(script)
        before = await page.evaluate("axe.run({resultTypes: ['violations']}).then((r) => r.violations.map((v) => [v.id, v.impact]))")
        await login(page, str(client.make_url("/")))
        await page.evaluate(script)
        after = await page.evaluate("axe.run({resultTypes: ['violations']}).then((r) => r.violations.map((v) => [v.id, v.impact, v.nodes.length]))")
    serious = [v for v in before + after if v[1] in ("serious", "critical")]
    assert serious == [], serious


def on(fake: FakeCivitai) -> str:
    return str(fake.civitai.make_url("")).rstrip("/")  # type: ignore[attr-defined]


async def test_a_download_is_cancelled_and_a_stopped_part_resumed(start: StartClient, fake: FakeCivitai, catalog_dir: Path, models_dir: Path) -> None:
    fake.blobs[821] = blob(821, size=4 * 1024 * 1024, hold_at=1024 * 1024)
    fake.blobs[822] = blob(822, size=2 * 1024 * 1024)
    write_json(catalog_dir / "models.json", catalog(lora(821, fake.blobs[821]), lora(822, fake.blobs[822]), category="loras"))
    part = touch(models_dir / "loras" / "lora_822.safetensors.part", fake.blobs[822].data[: 1024 * 1024])
    os.utime(part, (0, 0))  # left long ago: a stopped part
    client = await start(civitai_base_url=on(fake))
    async with browser_page() as page:
        await login(page, str(client.make_url("/")))
        await page.evaluate(row(821, "querySelector('[data-action=download]').click()"))
        await page.wait_for(row(821, "querySelector('[data-action=cancel]')"), timeout=15)
        await page.evaluate(row(821, "querySelector('[data-action=cancel]').click()"))
        await page.wait_for(row(821, "querySelector('.status')?.dataset.status === 'missing'"), timeout=15)
        fake.blobs[821].release.set()
        assert await page.evaluate(row(822, "querySelector('[data-action=download]').textContent")) == "Resume"
        await page.evaluate(row(822, "querySelector('[data-action=download]').click()"))
        await page.wait_for(row(822, "querySelector('.status')?.dataset.status === 'present'"), timeout=20)
    ranges = [headers.get("Range") for server, path, headers in fake.requests if server == "storage" and path.startswith("/files/822")]
    assert ranges == [f"bytes={1024 * 1024}-"], "the stopped part was resumed, not fetched again"


async def test_promote_copy_words_and_add_the_newer_version(start: StartClient, fake: FakeCivitai, catalog_dir: Path) -> None:
    write_json(
        catalog_dir / "models.json",
        catalog(entry(831, "style.safetensors", "loras", model_id=83, trigger_words=["ink wash", "bold lines"]), category="loras"),
    )
    newer = lora_version_body(832, 83)
    fake.versions[832] = newer
    fake.models[83] = {"id": 83, "name": "Style", "modelVersions": [
        {"id": 832, "name": "v2", "baseModel": "SDXL 1.0", "publishedAt": "2026-12-01T00:00:00Z", "availability": "Public"},
        {"id": 831, "name": "v1", "baseModel": "SDXL 1.0", "publishedAt": "2026-01-01T00:00:00Z", "availability": "Public"},
    ]}
    client = await start(civitai_base_url=on(fake))
    async with browser_page() as page:
        origin = str(client.make_url("")).rstrip("/")
        await page.send("Browser.grantPermissions", origin=origin, permissions=["clipboardReadWrite", "clipboardSanitizedWrite"], browserContextId=page.context)
        await page.send("Emulation.setFocusEmulationEnabled", enabled=True)  # a headless tab is never focused otherwise
        await login(page, str(client.make_url("/")))
        await page.evaluate(row(831, "querySelector('[data-action=copy-words]').click()"))
        await page.wait_for("document.getElementById('message').textContent !== ''")
        assert await page.evaluate("document.getElementById('message').textContent") == "copied: ink wash, bold lines"
        assert await page.evaluate("navigator.clipboard.readText()") == "ink wash, bold lines"
        await page.evaluate("document.getElementById('check-updates').click()")
        await page.wait_for(row(831, "querySelector('[data-action=add-newer]')"), timeout=15)
        assert (await page.evaluate(row(831, "querySelector('.update').textContent"))).startswith("update: v2")
        await page.evaluate(row(831, "querySelector('[data-action=add-newer]').click()"))
        await page.wait_for(row(832, "querySelector('.status')?.dataset.status === 'missing'"), timeout=15)
        await page.evaluate(row(831, "querySelector('[data-action=promote]').click()"))
        await page.wait_for("document.getElementById('message').textContent.startsWith('promoted')", timeout=15)
    assert "831" in (catalog_dir / "loras.json").read_text()


def lora_version_body(version_id: int, model_id: int) -> dict[str, Any]:
    from .helpers import lora_version

    return lora_version(version_id, model_id=model_id, file=f"style_v{version_id}.safetensors")


async def test_a_version_added_while_searching_is_found_by_the_longer_search(start: StartClient, catalog_dir: Path) -> None:
    library(catalog_dir)
    client = await start()
    async with browser_page() as page:
        await login(page, str(client.make_url("/")))
        await page.evaluate("{ const s = document.getElementById('search'); s.value = 'ink'; s.dispatchEvent(new Event('input')) }")
        await page.wait_for(f"JSON.stringify({shown_ids()}) === '[701,703]'")
        write_json(catalog_dir / "loras.json", catalog(
            entry(703, "ink_lines.safetensors", "loras", name="Ink lines", base_model="SDXL 1.0"),
            entry(705, "ink_fresh.safetensors", "loras", name="Ink fresh", base_model="SDXL 1.0"),
            category="loras",
        ))
        await page.wait_for(f"JSON.stringify({shown_ids()}) === '[701,703,705]'")
        await page.evaluate("{ const s = document.getElementById('search'); s.value = 'ink f'; s.dispatchEvent(new Event('input')) }")
        await page.wait_for(f"JSON.stringify({shown_ids()}) === '[705]'")


async def test_a_dropped_workflow_shows_what_it_needs_and_one_click_gets_the_rest(
    start: StartClient, fake: FakeCivitai, catalog_dir: Path, models_dir: Path, tmp_path: Path
) -> None:
    from .test_workflow_requirements import saved_png

    fake.blobs[841] = blob(841, size=64 * 1024)
    write_json(catalog_dir / "loras.json", catalog(lora(841, fake.blobs[841]), category="loras"))
    touch(models_dir / "checkpoints" / "base.safetensors", b"checkpoint")
    prompt = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "base.safetensors"}},
              "2": {"class_type": "LoraLoader", "inputs": {"lora_name": "lora_841.safetensors", "model": ["1", 0]}},
              "3": {"class_type": "VAELoader", "inputs": {"vae_name": "nowhere.safetensors"}}}
    image = tmp_path / "shared.png"
    image.write_bytes(saved_png(prompt, None))
    client = await start(civitai_base_url=on(fake))
    async with browser_page() as page:
        await login(page, str(client.make_url("/")))
        await page.evaluate("document.getElementById('open-workflow').click()")
        document = await page.send("DOM.getDocument")
        node = await page.send("DOM.querySelector", nodeId=document["root"]["nodeId"], selector="#workflow-file")
        await page.send("DOM.setFileInputFiles", files=[str(image)], nodeId=node["nodeId"])
        await page.wait_for("document.getElementById('workflow-body').textContent.includes('1 on disk, 1 to fetch')", timeout=15)
        shown = await page.evaluate("document.getElementById('workflow-body').innerText")
        assert "lora_841.safetensors" in shown and "nowhere.safetensors" in shown and "not found" in shown
        await page.evaluate("document.getElementById('workflow-fetch').click()")
        await page.wait_for("document.getElementById('workflow-body').textContent.includes('queued 1 downloads')", timeout=15)
        await page.evaluate("document.querySelector('#workflow-dialog [data-close]').click()")
        await page.wait_for(row(841, "querySelector('.status')?.dataset.status === 'present'"), timeout=20)


async def test_rows_deep_in_a_long_list_stay_in_place_when_they_change(start: StartClient, catalog_dir: Path, models_dir: Path) -> None:
    write_json(catalog_dir / "models.json", catalog(*(entry(20_000 + n, f"deep_{n:05d}.safetensors", "checkpoints", name=f"Deep {n:05d}") for n in range(20_000))))
    client = await start()
    async with browser_page() as page:
        await login(page, str(client.make_url("/")))
        await page.evaluate("{ const list = document.getElementById('list'); list.scrollTop = list.scrollHeight; }")
        await page.wait_for(row(39_990, "querySelector('.status')"))
        touch(models_dir / "checkpoints" / "deep_19990.safetensors", b"landed")
        await page.wait_for(row(39_990, "querySelector('.status')?.dataset.status === 'present'"))
        tops = await page.evaluate("[...document.querySelectorAll('[data-version-id]')].map((e) => [Number(e.dataset.index), e.offsetTop])")
    height = tops[1][1] - tops[0][1] if tops[1][0] == tops[0][0] + 1 else None
    assert all(top == index * 64 for index, top in tops), "each row exactly at its place (no rounding of a long offset)"
    assert height in (None, 64)


async def test_the_view_follows_changes_and_keeps_focus(start: StartClient, catalog_dir: Path, models_dir: Path) -> None:
    library(catalog_dir)
    client = await start()
    async with browser_page() as page:
        await login(page, str(client.make_url("/")))
        await page.evaluate(row(703, "querySelector('input[type=checkbox]').click()"))
        await page.evaluate("{ const f = document.getElementById('f-catalog'); f.value = 'models'; f.dispatchEvent(new Event('change')) }")
        await page.wait_for(f"JSON.stringify({shown_ids()}) === '[701,702]'")
        await page.evaluate(row(701, "querySelector('[data-action=remove]').focus()"))
        touch(models_dir / "checkpoints" / "photon_v2.safetensors", b"landed")  # another row changes
        await page.wait_for(row(702, "querySelector('.status')?.dataset.status === 'present'"))
        assert await page.evaluate("document.activeElement.dataset.action + ':' + document.activeElement.closest('[data-version-id]').dataset.versionId") == "remove:701"
        write_json(catalog_dir / "models.json", catalog(entry(702, "photon_v2.safetensors", "checkpoints", name="Photon")))  # 701 leaves
        write_json(catalog_dir / "loras.json", catalog(entry(701, "inkwash_v1.safetensors", "loras", name="Inkwash XL"), category="loras"))  # moved to loras
        await page.wait_for(f"JSON.stringify({shown_ids()}) === '[702]'")  # no longer in the catalog the view shows
        assert await page.evaluate("document.getElementById('bulk').classList.contains('hidden')"), "the selected row left: nothing is selected"
        await page.evaluate("location.hash = '#q=photon'")
        await page.wait_for("document.getElementById('f-catalog').value === ''")  # a filter the fragment no longer names is cleared
        assert await page.evaluate("document.getElementById('count').getAttribute('aria-live')") is None


async def test_a_name_cannot_pose_as_another_file(start: StartClient, catalog_dir: Path) -> None:
    write_json(catalog_dir / "models.json", catalog(entry(707, "evil\u202egnp.safetensors", "checkpoints", name="evil\u202egnp.safetensors")))
    client = await start()
    async with browser_page() as page:
        await login(page, str(client.make_url("/")))
        shown = await page.evaluate(row(707, "querySelector('.name').textContent"))
    assert shown == "evil⟨U+202E⟩gnp.safetensors"


async def test_names_and_files_sort_with_their_numbers_as_numbers(start: StartClient, catalog_dir: Path) -> None:
    write_json(catalog_dir / "models.json", catalog(
        entry(721, "style_v10.safetensors", "loras", name="Style v10"),
        entry(722, "style_v2.safetensors", "loras", name="style v2"),
        entry(723, "style_v1.5.safetensors", "loras", name="Style v1.5"),
        entry(724, "style_v1.safetensors", "loras", name="Style v1"),
        entry(725, "style_v20240101000000.safetensors", "loras", name="Style v20240101000000"),
        entry(726, "style_v999999999999.safetensors", "loras", name="Style v999999999999"),
    ))
    client = await start()
    in_order = "[...document.querySelectorAll('[data-version-id]')].sort((a, b) => a.offsetTop - b.offsetTop).map((e) => Number(e.dataset.versionId))"
    async with browser_page() as page:
        await login(page, str(client.make_url("/")))
        assert await page.evaluate(in_order) == [724, 723, 722, 721, 726, 725]  # v1, v1.5, v2, v10, then the long numbers; case aside
        await page.evaluate("{ const f = document.getElementById('sort'); f.value = 'file'; f.dispatchEvent(new Event('change')) }")
        await page.wait_for(f"JSON.stringify({in_order}) === '[724,723,722,721,726,725]'")


async def test_the_list_sorts_by_date_added_and_by_size(start: StartClient, catalog_dir: Path) -> None:
    write_json(catalog_dir / "models.json", catalog(
        entry(711, "old.safetensors", "checkpoints", name="A old", added_at="2026-01-02T03:04:05Z", size_gb=2.0),
        entry(712, "new.safetensors", "checkpoints", name="B new", added_at="2026-12-01T00:00:00Z", size_gb=6.5),
        entry(713, "by_hand.safetensors", "checkpoints", name="C by hand", size_gb=0.1),
    ))
    client = await start()
    in_order = "[...document.querySelectorAll('[data-version-id]')].sort((a, b) => a.offsetTop - b.offsetTop).map((e) => Number(e.dataset.versionId))"
    async with browser_page() as page:
        await login(page, str(client.make_url("/")))
        assert await page.evaluate(in_order) == [711, 712, 713]  # by name
        await page.evaluate("{ const f = document.getElementById('sort'); f.value = 'added'; f.dispatchEvent(new Event('change')) }")
        await page.wait_for(f"JSON.stringify({in_order}) === '[712,711,713]'")
        await page.evaluate("{ const f = document.getElementById('sort'); f.value = 'size'; f.dispatchEvent(new Event('change')) }")
        await page.wait_for(f"JSON.stringify({in_order}) === '[712,711,713]'")
        assert "sort=size" in await page.evaluate("location.hash")


async def test_rows_in_view_show_the_map_as_read_again(start: StartClient, catalog_dir: Path, models_dir: Path) -> None:
    # The map is read again after a reconnect or a resync: rows drawn before must not keep old statuses.
    library(catalog_dir)
    client = await start()
    async with browser_page() as page:
        await login(page, str(client.make_url("/")))
        assert await page.evaluate(row(702, "querySelector('.status').textContent")) == "missing"
        await page.evaluate("state.events.abort()")  # no event tells it: only the map read again can
        touch(models_dir / "checkpoints" / "photon_v2.safetensors", b"x")

        async def present() -> bool:
            return (await get_map(client))["by_version"]["702"]["status"] == "present"

        await eventually(present, what="the file in the map")
        await page.evaluate("loadMap()")
        assert (await page.evaluate(row(702, "querySelector('.status').textContent"))).startswith("present")


async def test_an_unknown_sort_in_the_fragment_falls_back_to_the_name(start: StartClient, catalog_dir: Path) -> None:
    library(catalog_dir)
    client = await start()
    async with browser_page() as page:
        await page.goto(str(client.make_url("/#sort=bogus")))
        await page.evaluate(f"document.getElementById('key').value = '{API_KEY}'; document.getElementById('key-form').requestSubmit()")
        await page.wait_for("document.querySelectorAll('[data-version-id]').length === 3")
        assert await page.evaluate("document.getElementById('sort').value") == "name"


async def test_a_key_that_stops_working_brings_the_key_form_back(start: StartClient, catalog_dir: Path) -> None:
    library(catalog_dir)
    client = await start()
    async with browser_page() as page:
        await login(page, str(client.make_url("/")))
        await page.evaluate("sessionStorage.setItem(KEY, 'not-the-key'); api('GET', MAP).catch(() => {})")  # as after a restart with another key
        await page.wait_for("document.readyState === 'complete' && !document.getElementById('key-form').classList.contains('hidden')")
        assert "not right" in await page.evaluate("document.getElementById('message').textContent")
        assert await page.evaluate("document.getElementById('offline').classList.contains('hidden')")


async def test_a_hugging_face_download_of_a_catalogued_file_has_its_cancel_on_the_row(start: StartClient, catalog_dir: Path, aiohttp_server: Any) -> None:
    # A job of no version (a workflow's Hugging Face file) is found by its file, as the map finds it.
    library(catalog_dir)
    data, release = b"x" * 1_000_000, asyncio.Event()

    async def resolve_file(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/storage/f", "X-Linked-Etag": '"' + "ab" * 32 + '"', "X-Linked-Size": str(len(data))})

    async def storage(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(len(data))})
        await response.prepare(request)
        await response.write(data[:4096])
        await release.wait()
        return response

    hub_app = web.Application()
    hub_app.router.add_get("/{owner}/{repo}/resolve/main/{path}", resolve_file)
    hub_app.router.add_get("/storage/{path}", storage)
    hub = await aiohttp_server(hub_app)
    base = str(hub.make_url("")).rstrip("/")
    client = await start(huggingface_base_url=base)
    try:
        async with browser_page() as page:
            await login(page, str(client.make_url("/")))
            client.app[DOWNLOADS].start_url(f"{base}/o/r/resolve/main/photon_v2.safetensors", "checkpoints", "photon_v2.safetensors")
            await page.wait_for(row(702, "querySelector('[data-action=cancel]') !== null"), timeout=15)
            await page.evaluate(row(702, "querySelector('[data-action=cancel]').click()"))
            await page.wait_for(row(702, "querySelector('.status').dataset.status === 'missing'"), timeout=15)
    finally:
        release.set()
