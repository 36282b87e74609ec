"""Adding by what people copy, through the real app: a civitai.com URL, an AIR or an id in
`POST /api/admin/civitai/add`; CivitAI faked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aioresponses import aioresponses

from .conftest import StartClient, get_map
from .helpers import AUTH, CIVITAI, civitai_version, lora_version, read_json

ADD = "/api/admin/civitai/add"


@pytest.fixture
def civitai() -> Iterator[aioresponses]:
    with aioresponses(passthrough=["http://127.0.0.1"]) as mocked:
        yield mocked


def catalogued(catalog_dir: Path) -> list[int]:
    return [e["civitai_version_id"] for c in read_json(catalog_dir / "models.json")["categories"] for e in c["models"]]


async def test_a_model_page_url_adds_the_version_it_shows(start: StartClient, civitai: aioresponses, catalog_dir: Path) -> None:
    civitai.get(f"{CIVITAI}/api/v1/model-versions/2514310", payload=civitai_version("checkpoint_illustrious"))
    client = await start()
    url = "https://civitai.com/models/827184/wai-illustrious-sdxl?modelVersionId=2514310"
    response = await client.post(ADD, headers=AUTH, json={"ref": url})
    assert response.status == 200, await response.text()
    answer = await response.json()
    assert (answer["status"], answer["version_id"], answer["file"]) == ("added", 2514310, "waiIllustriousSDXL_v160.safetensors")
    assert catalogued(catalog_dir) == [2514310]
    assert (await get_map(client))["by_version"]["2514310"]["status"] == "missing"
    again = await (await client.post(ADD, headers=AUTH, json={"ref": "urn:air:sdxl:checkpoint:civitai:827184@2514310"})).json()
    assert again == {"status": "already_exists", "file": "waiIllustriousSDXL_v160.safetensors", "version_id": 2514310}


async def test_a_url_that_names_only_the_model_adds_its_newest_version(start: StartClient, civitai: aioresponses, catalog_dir: Path) -> None:
    model = {"id": 5000, "name": "Lora 5000", "type": "LORA", "modelVersions": [{"id": 702, "name": "v2"}, {"id": 701, "name": "v1"}]}
    civitai.get(f"{CIVITAI}/api/v1/models/5000", payload=model)
    civitai.get(f"{CIVITAI}/api/v1/model-versions/702", payload=lora_version(702))
    client = await start()
    answer = await (await client.post(ADD, headers=AUTH, json={"ref": "civitai.com/models/5000/some-lora"})).json()
    assert (answer["status"], answer["version_id"]) == ("added", 702)
    assert catalogued(catalog_dir) == [702]


async def test_a_model_civitai_does_not_have_is_404(start: StartClient, civitai: aioresponses, catalog_dir: Path) -> None:
    civitai.get(f"{CIVITAI}/api/v1/models/404404", status=404, payload={"error": "No model with id 404404"}, repeat=True)
    civitai.get("https://civitai.red/api/v1/models/404404", status=404, payload={"error": "No model with id 404404"})
    client = await start()
    response = await client.post(ADD, headers=AUTH, json={"ref": "urn:air:sdxl:lora:civitai:404404"})
    assert response.status == 404 and (await response.json())["code"] == "civitai_not_found"
    assert catalogued(catalog_dir) == []


BAD_BODIES: dict[str, tuple[Any, int, str]] = {
    # (what is sent as JSON, status, code)
    "no ref": ({}, 400, "invalid_body"),
    "a list": (["2514310"], 400, "invalid_body"),
    "a number for ref": ({"ref": 2514310}, 400, "invalid_reference"),
    "another key too": ({"ref": "1", "dry-run": True}, 400, "invalid_body"),
    "not CivitAI": ({"ref": "https://huggingface.co/models/1"}, 400, "invalid_reference"),
    "nothing": ({"ref": "   "}, 400, "invalid_reference"),
}


@pytest.mark.parametrize(("body", "status", "code"), BAD_BODIES.values(), ids=BAD_BODIES.keys())
async def test_what_names_no_version_is_a_clear_400(start: StartClient, catalog_dir: Path, body: Any, status: int, code: str) -> None:
    client = await start()
    response = await client.post(ADD, headers=AUTH, json=body)
    assert response.status == status, await response.text()
    error = await response.json()
    assert error["code"] == code and error["detail"]
    assert catalogued(catalog_dir) == []


async def test_a_form_post_or_no_key_adds_nothing(start: StartClient, catalog_dir: Path) -> None:
    client = await start()
    form = await client.post(ADD, headers=AUTH, data={"ref": "2514310"})
    assert form.status == 415
    empty = await client.post(ADD, headers=AUTH)
    assert empty.status == 400 and (await empty.json())["code"] == "invalid_body"
    keyless = await client.post(ADD, json={"ref": "2514310"})
    assert keyless.status == 401
    assert catalogued(catalog_dir) == []
