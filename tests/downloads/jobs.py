"""What the download tests share: test files, catalog entries for them, and reading jobs and the map."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient

from ..conftest import get_map
from ..helpers import AUTH, entry, eventually
from .fake_civitai import Blob

CIVITAI_KEY = "civitai-secret-token"
MB = 1024 * 1024
Starter = Callable[..., Awaitable[TestClient]]


def blob(seed: int, size: int = 3 * MB, **kwargs: Any) -> Blob:
    pattern = bytes((seed * 7 + i) % 251 for i in range(4096))
    return Blob((pattern * (size // len(pattern) + 1))[:size], **kwargs)


def lora(version_id: int, data: Blob | None, *, sha256: str | None = None, size_gb: float | None = None, with_hash: bool = True) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if with_hash and (sha256 or data is not None):
        extra["hash"] = (sha256 or data.sha256).upper()  # type: ignore[union-attr]
    if size_gb is not None or data is not None:
        extra["size_gb"] = size_gb if size_gb is not None else round(len(data.data) / 1e9, 3)  # type: ignore[union-attr]
    return entry(version_id, f"lora_{version_id}.safetensors", "loras", **extra)


async def download(client: TestClient, file: str) -> dict[str, Any]:
    response = await client.post(f"/api/admin/models/download/{file}", headers=AUTH, json={})
    assert response.status == 200, await response.text()
    return await response.json()


async def job_state(client: TestClient, job: str) -> dict[str, Any]:
    listing = await (await client.get("/api/admin/downloads", headers=AUTH)).json()
    return next(item for item in listing["downloads"] if item["job"] == job)


async def until_job(client: TestClient, job: str, state: str, timeout: float = 15.0) -> dict[str, Any]:
    async def reached() -> bool:
        return (await job_state(client, job))["state"] == state

    await eventually(reached, timeout=timeout, what=f"job {state}")
    return await job_state(client, job)


async def map_entry(client: TestClient, version_id: int) -> dict[str, Any]:
    return (await get_map(client))["by_version"][str(version_id)]


def leftovers(folder: Any) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.endswith(".part"))
