"""Test helpers: catalog builders and polling with a deadline (never sleeping past a debounce)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import ClientResponse

API_KEY = "test-key-0123456789abcdef"
AUTH = {"X-API-Key": API_KEY}
CIVITAI = "https://civitai.test"
MAP = "/api/admin/models/civitai-map"


def entry(version_id: int, file: str, dest: str = "checkpoints", *, model_id: int | None = None, **extra: Any) -> dict[str, Any]:
    """A catalog entry as users' catalogs hold them."""
    data: dict[str, Any] = {
        "name": f"Model {version_id}",
        "file": file,
        "dest": dest,
        "source": "civitai",
        "civitai_version_id": version_id,
        "civitai_model_id": model_id if model_id is not None else version_id * 10,
        "base_model": "SDXL 1.0",
        "tags": [],
    }
    data.update(extra)
    return data


def catalog(*entries: dict[str, Any], category: str = "checkpoints", version: int = 1) -> dict[str, Any]:
    """A catalog document with the entries in one category."""
    return {"version": version, "date": "2026-11-23 14:05", "categories": [{"id": category, "name": category.title(), "models": list(entries)}]}


def write_json(path: Path, doc: Any) -> None:
    """Write a file in place (as an editor that does not replace would)."""
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))


def replace_json(path: Path, doc: Any) -> None:
    """Write a file atomically (temp file + rename), as many programs and editors do."""
    temp = path.with_name(f".{path.name}.edit~")
    temp.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    os.replace(temp, path)


def read_json(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


def touch(path: Path, data: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


async def eventually(check: Callable[[], Awaitable[bool]], *, timeout: float = 15.0, what: str = "condition") -> None:
    """Poll `check` until it is true, failing after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.01)


FIXTURES = Path(__file__).parent / "fixtures" / "civitai"


def civitai_version(name: str) -> dict[str, Any]:
    """A recorded-shape CivitAI model-version body from tests/fixtures/civitai."""
    return orjson.loads((FIXTURES / f"{name}.json").read_bytes())


def lora_version(version_id: int, *, model_id: int = 5000, base_model: str = "SDXL 1.0", file: str | None = None) -> dict[str, Any]:
    """A minimal, valid CivitAI body for a LoRA version."""
    return {
        "id": version_id,
        "modelId": model_id,
        "name": f"v{version_id}",
        "baseModel": base_model,
        "trainedWords": ["trigger"],
        "usageControl": "Download",
        "model": {"name": f"Lora {model_id}", "type": "LORA"},
        "files": [
            {
                "id": version_id * 7,
                "name": file or f"lora_{version_id}.safetensors",
                "type": "Model",
                "primary": True,
                "sizeKB": 223000.5,
                "metadata": {"fp": "fp16", "format": "SafeTensor"},
                "hashes": {"SHA256": "AB" * 32},
            }
        ],
    }


async def next_event(response: ClientResponse, timeout: float = 5.0) -> tuple[str, Any]:
    """Read one SSE event (skipping heartbeat comments) within a deadline."""
    event, data = "message", ""
    async with asyncio.timeout(timeout):
        while True:
            line = (await response.content.readline()).decode().rstrip("\r\n")
            if line.startswith(":"):
                continue
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data += line[5:].strip()
            elif line == "" and data:
                return event, orjson.loads(data)


def status_of(client: Any, version_id: int) -> Callable[[], Awaitable[str | None]]:
    """A check that reads one version's status from the map (None when not in it)."""

    async def current() -> str | None:
        response = await client.get(MAP, headers=AUTH)
        return ((await response.json())["by_version"].get(str(version_id)) or {}).get("status")

    return current


async def until(client: Any, version_id: int, status: str, what: str, timeout: float = 15.0) -> None:
    """Poll the map until a version has a status, failing after `timeout` seconds."""
    current = status_of(client, version_id)

    async def reached() -> bool:
        return await current() == status

    await eventually(reached, timeout=timeout, what=what)
