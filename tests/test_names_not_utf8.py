"""A file name that is not UTF-8 (a Latin-1 name copied from an old system) costs one warning:
its folder is looked at on a timer, every other folder stays watched, nothing falls back to rescans."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from service.disk.scan import FolderSource, is_utf8, scan_sources

from .conftest import StartClient
from .helpers import catalog, entry, eventually, touch, until, write_json

NOT_UTF8 = b"caf\xe9_style.safetensors"  # "café" in Latin-1


def test_a_scan_names_the_folders_holding_such_names(models_dir: Path) -> None:
    os.close(os.open(os.path.join(os.fsencode(models_dir / "loras"), NOT_UTF8), os.O_CREAT | os.O_WRONLY))
    scan = scan_sources((FolderSource(str(models_dir)),))
    assert scan.undecodable == {str(models_dir / "loras")}
    assert not is_utf8(os.fsdecode(NOT_UTF8)) and is_utf8("café.safetensors")


async def test_a_name_that_is_not_utf8_costs_one_warning_and_nothing_more(
    start: StartClient, catalog_dir: Path, models_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_json(catalog_dir / "models.json", catalog(entry(1, "one.safetensors", "checkpoints"), entry(2, "two.safetensors", "loras")))
    client = await start()
    bad = os.path.join(os.fsencode(models_dir / "loras"), NOT_UTF8)
    with caplog.at_level(logging.WARNING, logger="service.disk.unwatchable"):
        for _ in range(14):  # a program that keeps writing it, past the watcher's three restarts (0.5 + 1 + 2 s)
            with open(bad, "ab") as handle:
                handle.write(b"x" * 1024)
            await asyncio.sleep(0.25)

        async def settled() -> bool:
            body = await (await client.get("/ready")).json()
            return body["watcher"]["state"] == "running"

        await eventually(settled, what="the watcher running again")
        touch(models_dir / "checkpoints" / "one.safetensors")  # a watched folder: seen by its event
        await until(client, 1, "present", "a file in a watched folder")
        touch(models_dir / "loras" / "two.safetensors")  # the folder with the name: seen on the timer
        await until(client, 2, "present", "a file beside the name that is not UTF-8")
        for _ in range(3):
            with open(bad, "ab") as handle:
                handle.write(b"x")
            await asyncio.sleep(0.1)
        ready = await (await client.get("/ready")).json()
    assert ready["watcher"]["mode"] == "inotify"
    warnings = [record.getMessage() for record in caplog.records if "not UTF-8" in record.getMessage()]
    assert len(warnings) == 1, warnings
    assert "\\udce9" in warnings[0] or str(models_dir / "loras") in warnings[0]


async def test_names_that_come_and_go_never_wear_the_watcher_down(start: StartClient, catalog_dir: Path, models_dir: Path) -> None:
    """A tool that makes a Latin-1 temp file and removes it, again and again: its folder is never
    found by the walk after, yet the watcher stays on events."""
    write_json(catalog_dir / "models.json", catalog(entry(1, "one.safetensors", "checkpoints")))
    client = await start()
    bad = os.path.join(os.fsencode(models_dir / "loras"), NOT_UTF8)

    async def running() -> bool:
        return (await (await client.get("/ready")).json())["watcher"]["state"] == "running"

    for _ in range(7):  # more than the three restarts that once led to rescans
        with open(bad, "wb") as handle:
            handle.write(b"x")
        await asyncio.sleep(0.15)
        os.unlink(bad)
        await eventually(running, what="the watcher running again")
    assert (await (await client.get("/ready")).json())["watcher"]["mode"] == "inotify"
    touch(models_dir / "checkpoints" / "one.safetensors")
    await until(client, 1, "present", "a file seen by its event")


async def test_a_name_that_is_not_utf8_in_the_catalog_folder_keeps_catalogs_seen(start: StartClient, catalog_dir: Path) -> None:
    write_json(catalog_dir / "models.json", catalog(entry(1, "one.safetensors", "checkpoints")))
    client = await start()
    backup = os.path.join(os.fsencode(catalog_dir), b"models.json.bak-\xe9")
    with open(backup, "wb") as handle:
        handle.write(b"{}")

    async def polled() -> bool:
        watcher = (await (await client.get("/ready")).json())["watcher"]
        return watcher["state"] == "running" and watcher["mode"] == "inotify"

    await eventually(polled, what="the watcher running again")
    write_json(catalog_dir / "models.json", catalog(entry(1, "one.safetensors", "checkpoints"), entry(2, "two.safetensors", "loras")))
    await until(client, 2, "missing", "an edit of the catalog, seen with the folder looked at on a timer")
