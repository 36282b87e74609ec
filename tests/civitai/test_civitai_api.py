"""Adding through the real app with CivitAI faked: the second origin, and one gate for every call."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from aioresponses import aioresponses

from ..conftest import StartClient
from ..helpers import AUTH, CIVITAI, lora_version, read_json

FALLBACK = "https://civitai-red.test"


@pytest.fixture
def civitai() -> Iterator[aioresponses]:
    with aioresponses(passthrough=["http://127.0.0.1"]) as mocked:
        yield mocked


def calls(mocked: aioresponses, origin: str) -> list[str]:
    return [str(url) for (_method, url) in mocked.requests if str(url).startswith(origin)]


async def test_a_version_only_on_the_second_origin_is_added_and_says_where(start: StartClient, civitai: aioresponses, catalog_dir: Path) -> None:
    civitai.get(f"{CIVITAI}/api/v1/model-versions/31", status=404)
    civitai.get(f"{FALLBACK}/api/v1/model-versions/31", payload=lora_version(31))
    client = await start(civitai_fallback_url=FALLBACK, civitai_api_key="civitai-secret-token")
    response = await client.post("/api/admin/civitai/add/31", headers=AUTH)
    assert (await response.json())["status"] == "added"
    [added] = [e for c in read_json(catalog_dir / "models.json")["categories"] for e in c["models"]]
    assert added["civitai_origin"] == FALLBACK
    [(_, fallback_call)] = [(k, v) for k, v in civitai.requests.items() if str(k[1]).startswith(FALLBACK)]
    assert "Authorization" not in fallback_call[0].kwargs["headers"]  # not one of CivitAI's own hosts


async def test_not_on_either_origin_is_404_naming_both(start: StartClient, civitai: aioresponses) -> None:
    civitai.get(f"{CIVITAI}/api/v1/model-versions/32", status=404)
    civitai.get(f"{FALLBACK}/api/v1/model-versions/32", status=404)
    client = await start(civitai_fallback_url=FALLBACK)
    response = await client.post("/api/admin/civitai/add/32", headers=AUTH)
    assert response.status == 404
    body = await response.json()
    assert body["code"] == "civitai_not_found" and "civitai-red.test" in body["detail"]


async def test_no_second_origin_when_it_is_switched_off(start: StartClient, civitai: aioresponses) -> None:
    civitai.get(f"{CIVITAI}/api/v1/model-versions/33", status=404)
    client = await start(civitai_fallback_url="")
    assert (await client.post("/api/admin/civitai/add/33", headers=AUTH)).status == 404
    assert len(civitai.requests) == 1


async def test_entries_from_the_primary_origin_carry_no_origin(start: StartClient, civitai: aioresponses, catalog_dir: Path) -> None:
    civitai.get(f"{CIVITAI}/api/v1/model-versions/34", payload=lora_version(34))
    client = await start(civitai_fallback_url=FALLBACK)
    assert (await (await client.post("/api/admin/civitai/add/34", headers=AUTH)).json())["status"] == "added"
    [added] = [e for c in read_json(catalog_dir / "models.json")["categories"] for e in c["models"]]
    assert "civitai_origin" not in added


@pytest.mark.parametrize("retry_after", ["120", "Wed, 21 Oct 2099 07:28:00 GMT"], ids=["seconds", "http-date"])
async def test_one_429_makes_every_later_call_wait_without_asking_civitai(start: StartClient, civitai: aioresponses, retry_after: str) -> None:
    civitai.get(f"{CIVITAI}/api/v1/model-versions/35", status=429, headers={"Retry-After": retry_after})
    civitai.get(re.compile(rf"^{re.escape(CIVITAI)}/api/v1/model-versions/\d+$"), payload=lora_version(36), repeat=True)
    client = await start()
    first = await client.post("/api/admin/civitai/add/35", headers=AUTH)
    assert first.status == 503 and (await first.json())["code"] == "civitai_rate_limited"
    assert 60 <= int(first.headers["Retry-After"]) <= 3600
    second = await client.post("/api/admin/civitai/add/36", headers=AUTH)
    assert second.status == 503 and int(second.headers["Retry-After"]) >= 60
    assert "try again in" in (await second.json())["detail"]
    assert len(civitai.requests) == 1  # the second add never reached CivitAI
