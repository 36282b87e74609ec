"""Concurrent adds in one process, and two service processes adding to one catalog folder."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aioresponses import aioresponses

from .conftest import StartClient, get_map
from .helpers import API_KEY, AUTH, CIVITAI, eventually, lora_version, read_json

ROOT = Path(__file__).resolve().parent.parent


def versions_in(path: Path) -> list[int]:
    return [e["civitai_version_id"] for c in read_json(path)["categories"] for e in c["models"]]


async def test_fifty_concurrent_adds_make_41_entries(start: StartClient, catalog_dir: Path) -> None:
    client = await start()
    with aioresponses(passthrough=["http://127.0.0.1"]) as civitai:
        for version_id in range(1001, 1041):
            civitai.get(f"{CIVITAI}/api/v1/model-versions/{version_id}", payload=lora_version(version_id), repeat=True)
        civitai.get(f"{CIVITAI}/api/v1/model-versions/2000", payload=lora_version(2000), repeat=True)
        ids = [*range(1001, 1041), *[2000] * 10]
        responses = await asyncio.gather(*(client.post(f"/api/admin/civitai/add/{v}", headers=AUTH) for v in ids))
        statuses = [(await r.json())["status"] for r in responses]
    assert statuses.count("added") == 41 and statuses.count("already_exists") == 9
    found = versions_in(catalog_dir / "models.json")
    assert sorted(found) == sorted({*ids})
    assert read_json(catalog_dir / "models.json")["version"] == 41
    assert len((await get_map(client))["by_version"]) == 41


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def fake_civitai(aiohttp_server) -> str:  # type: ignore[no-untyped-def]
    """A loopback CivitAI answering every model-version id with a LoRA."""

    async def model_version(request: web.Request) -> web.Response:
        await asyncio.sleep(0.005)
        return web.json_response(lora_version(int(request.match_info["id"])))

    app = web.Application()
    app.router.add_get("/api/v1/model-versions/{id}", model_version)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
def two_services(catalog_dir: Path, models_dir: Path, fake_civitai: str) -> Iterator[list[str]]:
    ports = [free_port(), free_port()]
    env = {**os.environ, "API_KEY": API_KEY, "CATALOG_DIR": str(catalog_dir), "MODELS_DIR": str(models_dir), "CIVITAI_BASE_URL": fake_civitai, "LOG_LEVEL": "WARNING"}
    procs = [
        subprocess.Popen([sys.executable, "-m", "service"], cwd=ROOT, env={**env, "PORT": str(port)}, stdout=subprocess.DEVNULL)
        for port in ports
    ]
    try:
        yield [f"http://127.0.0.1:{port}" for port in ports]
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            assert proc.wait(timeout=15) == 0


async def test_two_processes_on_one_catalog_folder_lose_nothing(two_services: list[str], catalog_dir: Path) -> None:
    async with aiohttp.ClientSession(headers=AUTH) as session:

        async def ready(url: str) -> bool:
            try:
                async with session.get(f"{url}/ready") as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        for url in two_services:
            await eventually(lambda url=url: ready(url), timeout=20, what=f"{url} ready")

        async def add(url: str, version_id: int) -> str:
            async with session.post(f"{url}/api/admin/civitai/add/{version_id}") as response:
                assert response.status == 200, await response.text()
                return (await response.json())["status"]

        jobs = [add(two_services[i % 2], 3000 + i) for i in range(60)]
        jobs += [add(url, 9999) for url in two_services for _ in range(3)]  # both try the same version
        statuses = await asyncio.gather(*jobs)
    assert statuses.count("added") == 61
    found = versions_in(catalog_dir / "models.json")
    assert sorted(found) == sorted({*range(3000, 3060), 9999})
