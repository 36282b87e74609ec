from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aioresponses.core
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from service.http.app import create_app
from service.settings import Settings

from .helpers import API_KEY, AUTH, CIVITAI, MAP, eventually


class _ResponseForAioresponses(ClientResponse):
    """aioresponses 0.7.9 builds responses without the `stream_writer` aiohttp 3.14 requires;
    this test-only shim supplies one, so the suite runs on the newest aiohttp and the
    service's own dependency on aiohttp stays uncapped."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if "stream_writer" in _RESPONSE_PARAMETERS:
            kwargs.setdefault("stream_writer", _SentRequest())
        super().__init__(*args, **kwargs)


class _SentRequest:
    """What aiohttp 3.14 asks of the writer of a request already sent: how many bytes it wrote."""

    output_size = 0


_RESPONSE_PARAMETERS = inspect.signature(ClientResponse.__init__).parameters


aioresponses.core.ClientResponse = _ResponseForAioresponses  # type: ignore[misc]


@pytest.fixture
def catalog_dir(tmp_path: Path) -> Path:
    path = tmp_path / "catalogs"
    path.mkdir()
    return path


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    path = tmp_path / "models"
    for folder in ("checkpoints", "loras", "vae", "diffusion_models"):
        (path / folder).mkdir(parents=True)
    return path


@pytest.fixture
def settings(catalog_dir: Path, models_dir: Path) -> Settings:
    return Settings(
        catalog_dir=catalog_dir,
        models_dir=models_dir,
        api_key=API_KEY,
        civitai_base_url=CIVITAI,
        civitai_fallback_url="",  # tests that want the second origin set a fake one
        update_check_interval_h=0,  # no background calls to CivitAI; the update tests start checks themselves
        hashing=False,  # no background hashing or by-hash calls; the hashing tests turn it on
        previews=False,  # no image fetched after downloads; the preview tests turn it on
        watch_debounce_ms=50,
    )


StartClient = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def start(aiohttp_client: Any, settings: Settings) -> StartClient:
    """Start the real app (optionally with other settings) and wait until it is ready."""

    async def _start(wait_ready: bool = True, server_kwargs: dict[str, Any] | None = None, **changes: Any) -> TestClient:
        client = await aiohttp_client(create_app(replace(settings, **changes), API_KEY), server_kwargs=server_kwargs or {})
        if wait_ready:

            async def is_ready() -> bool:
                return (await client.get("/ready")).status == 200

            await eventually(is_ready, what="readiness")
        return client

    return _start


async def get_map(client: TestClient, **params: str) -> dict[str, Any]:
    response = await client.get(MAP, headers=AUTH, params=params)
    assert response.status == 200, await response.text()
    return await response.json()
