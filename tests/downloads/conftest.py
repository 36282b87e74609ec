"""Fixtures of the download tests: the loopback CivitAI and the service started against it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ..conftest import StartClient
from ..helpers import catalog, write_json
from .fake_civitai import FakeCivitai, started
from .jobs import CIVITAI_KEY, Starter


@pytest.fixture
async def fake(aiohttp_server: Any) -> FakeCivitai:
    return await started(aiohttp_server)


@pytest.fixture
def service(fake: FakeCivitai, start: StartClient, catalog_dir: Path) -> Starter:
    """Start the service against `fake`. The fake is set up first, so it is torn down after the
    service: a download still streaming at the end stops with the service, instead of the fake's
    shutdown waiting on it."""
    async def _start(*entries: dict[str, Any], **settings: Any) -> TestClient:
        write_json(catalog_dir / "models.json", catalog(*entries, category="loras"))
        base = str(fake.civitai.make_url("")).rstrip("/")  # type: ignore[attr-defined]
        return await start(civitai_base_url=base, civitai_api_key=CIVITAI_KEY, **settings)

    return _start
