"""Update checks through the real app, with CivitAI's model list faked: batches, a failing batch,
the cache across restarts, a corrupt cache, the SSE event, and the flags of newer versions."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from aioresponses import CallbackResult, aioresponses

from service.civitai.updates import newer_versions
from service.map.entry import MAX_ID

from ..conftest import StartClient
from ..helpers import AUTH, CIVITAI, catalog, entry, eventually, next_event, write_json

MODELS = re.compile(rf"^{re.escape(CIVITAI)}/api/v1/models\?.*$")


@pytest.fixture
def civitai() -> Iterator[aioresponses]:
    with aioresponses(passthrough=["http://127.0.0.1"]) as mocked:
        yield mocked


def model(model_id: int, versions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": model_id, "name": f"Model {model_id}", "type": "LORA", "modelVersions": versions}


def version(version_id: int, **extra: Any) -> dict[str, Any]:
    return {"id": version_id, "name": f"v{version_id}", "baseModel": "SDXL 1.0", "publishedAt": "2026-11-01T00:00:00.000Z", **extra}


def library(catalog_dir: Path, count: int) -> None:
    """`count` catalogued models, model i with version i*10 catalogued."""
    write_json(catalog_dir / "models.json", catalog(*(entry(i * 10, f"m{i}.safetensors", "loras", model_id=i) for i in range(1, count + 1))))


def answering(failing_batch: int | None = None) -> Any:
    """CivitAI's list: every model has a newer version (i*10 + 5); one batch may fail with a 500."""
    seen = {"batches": 0}

    def callback(url: Any, **_kwargs: Any) -> CallbackResult:
        seen["batches"] += 1
        if seen["batches"] == failing_batch:
            return CallbackResult(status=500, body="oops")
        ids = [int(i) for i in url.query["ids"].split(",")]
        assert len(ids) <= 100
        return CallbackResult(payload={"items": [model(i, [version(i * 10 + 5), version(i * 10)]) for i in ids], "metadata": {}})

    return callback, seen


async def check_and_wait(client: TestClient) -> dict[str, Any]:
    started = await client.post("/api/admin/models/updates/check", headers=AUTH)
    assert started.status == 200 and (await started.json())["status"] == "running"

    async def idle() -> bool:
        return (await (await client.get("/api/admin/models/updates", headers=AUTH)).json())["state"] == "idle"

    await eventually(idle, what="the update check finished")
    return await (await client.get("/api/admin/models/updates", headers=AUTH)).json()


async def test_a_failing_batch_loses_nothing_else_and_is_reported(start: StartClient, civitai: aioresponses, catalog_dir: Path) -> None:
    library(catalog_dir, 150)
    callback, seen = answering(failing_batch=2)
    civitai.get(MODELS, callback=callback, repeat=True)
    client = await start(update_check_interval_h=0)
    answer = await check_and_wait(client)
    assert seen["batches"] == 2  # 150 models, 100 a call
    assert [m["model_id"] for m in answer["models"]] == list(range(1, 101))
    first = answer["models"][0]
    assert first["catalogued_versions"] == [10] and [v["id"] for v in first["newer"]] == [15]
    [failure] = answer["failures"]
    assert failure["model_ids"] == list(range(101, 151)) and failure["code"] == "civitai_error"
    assert answer["checked_at"] is not None


async def test_answers_survive_a_restart_and_a_corrupt_cache_is_set_aside(
    start: StartClient, civitai: aioresponses, catalog_dir: Path
) -> None:
    library(catalog_dir, 3)
    callback, seen = answering()
    civitai.get(MODELS, callback=callback, repeat=True)
    first = await start(update_check_interval_h=0)
    before = await check_and_wait(first)
    await first.close()
    again = await start(update_check_interval_h=0)
    after = await (await again.get("/api/admin/models/updates", headers=AUTH)).json()
    assert after["models"] == before["models"] and seen["batches"] == 1  # from the cache, CivitAI not asked
    await again.close()
    (catalog_dir / ".civitai-updates.json").write_bytes(b"{ not json")
    third = await start(update_check_interval_h=0)
    assert (await (await third.get("/api/admin/models/updates", headers=AUTH)).json())["models"] == []
    assert [p.name for p in catalog_dir.iterdir() if p.name.startswith(".civitai-updates.json.unreadable-")]


async def test_a_change_in_the_answer_is_an_sse_event(start: StartClient, civitai: aioresponses, catalog_dir: Path) -> None:
    library(catalog_dir, 2)
    callback, _seen = answering()
    civitai.get(MODELS, callback=callback, repeat=True)
    client = await start(update_check_interval_h=0)
    events = await client.get("/api/admin/models/civitai-map/events", headers=AUTH)
    assert (await next_event(events))[0] == "snapshot"
    await check_and_wait(client)
    name, data = await next_event(events)
    assert name == "updates" and [m["model_id"] for m in data["models"]] == [1, 2]
    events.close()


def test_newer_versions_carry_early_access_and_paid_flags() -> None:
    body = model(
        1,
        [
            version(30, availability="EarlyAccess", earlyAccessEndsAt="2026-12-01T00:00:00.000Z"),
            version(25, availability="Public"),
            version(22, availability="Private", earlyAccessConfig={"chargeForDownload": True}),
            version(20),
            version(5),
        ],
    )
    found = newer_versions(body, [20, 5])
    assert [(v["id"], v["early_access"], v["paid"]) for v in found] == [(30, True, False), (25, False, False), (22, False, True)]
    assert found[0]["early_access_ends_at"] == "2026-12-01T00:00:00.000Z"
    assert newer_versions(body, [30]) == []
    assert orjson.dumps(found)  # plain JSON for the route and the cache


def test_a_newer_version_is_one_only_with_an_id_the_map_could_show() -> None:
    body = model(1, [version(MAX_ID + 1), version(2**64 - 1), {"id": True}, {"id": "40"}, version(40)])
    assert [v["id"] for v in newer_versions(body, [20])] == [40]
