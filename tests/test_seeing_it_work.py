"""What a person sees in the log: the folders in use at start, a long scan's progress, each
status change (rate-limited to a summary in a flood), and no per-batch chatter from watchfiles."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from service.logs import configure_logging
from service.map.statuslog import LINES_PER_WINDOW

from .conftest import StartClient, get_map
from .hashes.fake_civitai import fake_civitai
from .hashes.test_hashing_api import HASHING, LORA
from .helpers import catalog, entry, eventually, touch, write_json


def messages(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger]


async def test_the_model_folders_in_use_are_logged_at_start(start: StartClient, caplog: pytest.LogCaptureFixture, tmp_path: Path, models_dir: Path) -> None:
    caplog.set_level(logging.INFO, logger="service")
    (tmp_path / "extra.yaml").write_text(f"mine:\n  loras: {tmp_path / 'not_there'}\n")
    await start(extra_model_paths=tmp_path / "extra.yaml")
    lines = messages(caplog, "service.http.app")
    assert f"model folder {models_dir}: found" in lines
    assert f"model folder {tmp_path / 'not_there'} (loras): MISSING" in lines


async def test_a_status_change_is_one_line_naming_the_version(start: StartClient, caplog: pytest.LogCaptureFixture, models_dir: Path, catalog_dir: Path) -> None:
    write_json(catalog_dir / "models.json", catalog(entry(2514310, "waiIllustrious.safetensors")))
    client = await start()
    caplog.set_level(logging.INFO, logger="service")
    touch(models_dir / "checkpoints" / "waiIllustrious.safetensors", b"x")  # a file copied in

    async def logged() -> bool:
        return "version 2514310 waiIllustrious.safetensors: missing -> present" in messages(caplog, "service.map.statuslog")

    await eventually(logged, what="the status change in the log")
    assert (await get_map(client))["by_version"]["2514310"]["status"] == "present"


async def test_a_version_that_leaves_the_map_is_named_in_its_last_line(start: StartClient, caplog: pytest.LogCaptureFixture, catalog_dir: Path) -> None:
    write_json(catalog_dir / "models.json", catalog(entry(2514310, "waiIllustrious.safetensors"), entry(2514311, "kept.safetensors")))
    client = await start()
    caplog.set_level(logging.INFO, logger="service")
    write_json(catalog_dir / "models.json", catalog(entry(2514311, "kept.safetensors")))  # another program takes it out

    async def logged() -> bool:
        return "version 2514310 waiIllustrious.safetensors: missing -> not in the map" in messages(caplog, "service.map.statuslog")

    await eventually(logged, what="the line of the version that left")
    assert "2514310" not in (await get_map(client))["by_version"]
    assert not any("2514311" in line for line in messages(caplog, "service.map.statuslog"))  # unchanged: no line


async def test_a_file_in_no_catalog_is_named_in_its_status_line(start: StartClient, caplog: pytest.LogCaptureFixture, models_dir: Path) -> None:
    with fake_civitai() as civitai:
        civitai.knows(LORA, 700, model_id=70)
        await start(**HASHING)
        caplog.set_level(logging.INFO, logger="service")
        touch(models_dir / "loras" / "found_later.safetensors", LORA)

        async def logged() -> bool:
            return "version 700 found_later.safetensors (in no catalog): not in the map -> present" in messages(caplog, "service.map.statuslog")

        await eventually(logged, timeout=10, what="the identified file's status line")


async def test_a_first_start_with_a_broken_catalog_claims_no_last_good_version(
    start: StartClient, caplog: pytest.LogCaptureFixture, catalog_dir: Path
) -> None:
    (catalog_dir / "loras.json").write_text('{"version": 1, "categories": [')
    caplog.set_level(logging.INFO, logger="service")
    await start(wait_ready=False)

    async def warned() -> bool:
        return any("loras.json is unusable" in line for line in messages(caplog, "service.library.library"))

    await eventually(warned, what="the broken catalog's warning")
    [line] = [line for line in messages(caplog, "service.library.library") if "loras.json is unusable" in line]
    assert "last good" not in line and "none of its entries are in the map until it is mended" in line


async def test_a_flood_of_changes_is_a_few_lines_and_a_summary(start: StartClient, caplog: pytest.LogCaptureFixture, models_dir: Path, catalog_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("service.map.statuslog.WINDOW_S", 0.5)
    count = 300
    write_json(catalog_dir / "models.json", catalog(*(entry(i, f"f{i}.safetensors", "loras") for i in range(1, count + 1))))
    client = await start()
    caplog.set_level(logging.INFO, logger="service")
    unpacked = models_dir / "unpacked"
    for i in range(1, count + 1):
        touch(unpacked / f"f{i}.safetensors", b"x")
    shutil.move(str(unpacked), str(models_dir / "loras" / "pack"))  # one move: 300 files land at once

    async def summarised() -> bool:
        return any(line.startswith("... and ") for line in messages(caplog, "service.map.statuslog"))

    await eventually(summarised, timeout=10, what="the summary line")
    lines = messages(caplog, "service.map.statuslog")
    assert len([line for line in lines if line.startswith("version ")]) <= LINES_PER_WINDOW * 2
    assert sum(int(line.split()[2]) for line in lines if line.startswith("... and ")) + len([l for l in lines if l.startswith("version ")]) == count
    assert all(item["status"] == "present" for item in (await get_map(client))["by_version"].values())


def test_watchfiles_batch_lines_are_debug_detail() -> None:
    root = logging.getLogger()
    handlers = list(root.handlers)
    try:
        configure_logging("INFO", "text", ())
        assert not logging.getLogger("watchfiles.main").isEnabledFor(logging.INFO)
        configure_logging("DEBUG", "text", ())
        assert logging.getLogger("watchfiles.main").isEnabledFor(logging.DEBUG)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        logging.getLogger("watchfiles.main").setLevel(logging.NOTSET)


async def test_a_long_first_scan_reports_its_progress(start: StartClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, models_dir: Path) -> None:
    """The first scan runs in a worker thread; the loop reads its counters every few seconds.
    Here the real scan of real folders is held once done, until its count is in the log, so the
    report is seen however fast the machine scans."""
    import threading

    import service.library.folders
    from service.disk.scan import FolderSource, Scan

    monkeypatch.setattr("service.library.folders.SCAN_REPORT_S", 0.05)
    for folder in range(40):
        for i in range(25):
            touch(models_dir / "loras" / f"d{folder}" / f"f{i}.safetensors")
    entries = 40 * 25 + 40 + 4  # files, the 40 folders, and the 4 folders right under the root (45 folders with it)
    real_scan = service.library.folders.scan_sources
    reported = threading.Event()

    def held_scan(sources: tuple[FolderSource, ...], scan: Scan | None = None) -> Scan:
        found = real_scan(sources, scan)
        reported.wait(10)
        return found

    monkeypatch.setattr(service.library.folders, "scan_sources", held_scan)
    caplog.set_level(logging.INFO, logger="service")
    client = await start(wait_ready=False)

    async def progress_logged() -> bool:
        lines = messages(caplog, "service.library.folders")
        return any(line.startswith(f"scanning model folders: {entries} entries in 45 folders so far (") for line in lines)

    try:
        await eventually(progress_logged, what="the scan's progress in the log")
    finally:
        reported.set()
    assert [line for line in messages(caplog, "service.library.folders") if line.endswith(" a second)")]

    async def ready() -> bool:
        return (await client.get("/ready")).status == 200

    await eventually(ready, what="readiness once the scan is done")
