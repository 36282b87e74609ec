"""The SSE stream: a snapshot on connect, then changes as downloads land and catalogs change."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from service.events import RESYNC, ChangeFeed
from service.typedefs import FEED

from .conftest import StartClient
from .helpers import API_KEY, AUTH, catalog, entry, eventually, next_event, replace_json, touch, write_json

EVENTS = "/api/admin/models/civitai-map/events"


@pytest.fixture
def two_entries(catalog_dir: Path) -> None:
    write_json(catalog_dir / "models.json", catalog(entry(1, "one.safetensors"), entry(2, "two.safetensors")))


@pytest.mark.usefixtures("two_entries")
async def test_a_client_sees_a_download_land_and_a_catalog_edit(start: StartClient, models_dir: Path, catalog_dir: Path) -> None:
    client = await start()
    async with client.get(EVENTS, headers=AUTH) as response:
        assert response.status == 200 and response.headers["Content-Type"].startswith("text/event-stream")
        event, data = await next_event(response)
        map_etag = (await client.get("/api/admin/models/civitai-map", headers={**AUTH, "Accept-Encoding": "identity"})).headers["ETag"]
        gzip_etag = (await client.get("/api/admin/models/civitai-map", headers={**AUTH, "Accept-Encoding": "gzip"})).headers["ETag"]
        assert (event, data) == ("snapshot", {"etag": map_etag, "etag_gzip": gzip_etag})
        touch(models_dir / "checkpoints" / "one.safetensors")
        event, data = await next_event(response)
        assert event == "change" and data["changes"] == {"1": "present"} and data["etag"] != map_etag
        replace_json(catalog_dir / "models.json", catalog(entry(1, "one.safetensors"), entry(3, "three.safetensors")))
        event, data = await next_event(response)
        assert event == "change" and data["changes"] == {"2": None, "3": "missing"}


@pytest.mark.usefixtures("two_entries")
async def test_the_key_may_come_as_a_query_parameter_here_only(start: StartClient) -> None:
    client = await start()
    async with client.get(EVENTS, params={"key": API_KEY}) as response:
        assert response.status == 200
        assert (await next_event(response))[0] == "snapshot"
    assert (await client.get(EVENTS, params={"key": "wrong-key-0123456789"})).status == 401
    assert (await client.get("/api/admin/models/civitai-map", params={"key": API_KEY})).status == 401


async def test_clients_are_bounded(start: StartClient) -> None:
    client = await start()
    client.app[FEED].max_clients = 1
    async with client.get(EVENTS, headers=AUTH) as first:
        await next_event(first)
        second = await client.get(EVENTS, headers=AUTH)
        assert second.status == 503 and (await second.json())["code"] == "too_many_listeners"

    async def freed() -> bool:
        return not client.app[FEED].subscriptions

    await eventually(freed, what="the subscription released after the client left")


def test_a_lagging_client_gets_one_resync_instead_of_a_backlog() -> None:
    async def run() -> list[object]:
        feed = ChangeFeed()
        subscription = feed.subscribe()
        for n in range(500):
            feed.publish(f'"tag-{n}"', {n: "present"})
        return [subscription.queue.get_nowait() for _ in range(subscription.queue.qsize())]

    messages = asyncio.run(run())
    assert len(messages) <= 64
    assert any(m is RESYNC for m in messages)


async def test_streams_close_on_shutdown(start: StartClient) -> None:
    client = await start()
    response = await client.get(EVENTS, headers=AUTH)
    await next_event(response)
    client.app[FEED].close()  # what on_shutdown does
    async with asyncio.timeout(5):
        rest = await response.content.read()
    assert b"change" not in rest
    response.release()


async def test_an_sse_client_that_leaves_frees_its_slot(start: StartClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("service.events.HEARTBEAT_S", 0.05)
    client = await start(server_kwargs={"handler_cancellation": False})  # as under run_app
    feed = client.app[FEED]
    for _ in range(3):
        response = await client.get("/api/admin/models/civitai-map/events", headers=AUTH)
        await next_event(response)
        response.close()

    async def freed() -> bool:
        return not feed.subscriptions

    await eventually(freed, what="slots of departed clients freed")
