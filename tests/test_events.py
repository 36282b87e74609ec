"""The SSE stream: a snapshot on connect, then changes as downloads land and catalogs change."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from service.http.appkeys import FEED
from service.http.events import MAX_DETAILED, RESYNC, ChangeFeed, MapChange
from service.map.status import Status

from .conftest import StartClient
from .helpers import (
    API_KEY,
    AUTH,
    catalog,
    entry,
    eventually,
    next_event,
    replace_json,
    touch,
    write_json,
)

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
@pytest.mark.parametrize("path", [EVENTS, "/api/admin/models/civitai-map"])
async def test_a_key_in_the_url_is_refused_everywhere(start: StartClient, path: str) -> None:
    client = await start()
    response = await client.get(path, params={"key": API_KEY})
    assert response.status == 400 and (await response.json())["code"] == "key_in_url"
    with_header_too = await client.get(path, params={"key": API_KEY}, headers=AUTH)
    assert with_header_too.status == 400


async def test_a_new_client_is_never_refused_and_the_oldest_gives_its_slot_up(start: StartClient) -> None:
    client = await start()
    client.app[FEED].max_clients = 2
    first = await client.get(EVENTS, headers=AUTH)
    await next_event(first)
    second = await client.get(EVENTS, headers=AUTH)
    await next_event(second)
    third = await client.get(EVENTS, headers=AUTH)
    assert third.status == 200 and (await next_event(third))[0] == "snapshot"
    async with asyncio.timeout(5):
        assert b"change" not in await first.content.read()  # the oldest stream was ended
    assert len(client.app[FEED].subscriptions) == 2
    for response in (first, second, third):
        response.close()


async def open_idle_stream(port: int, receive_buffer: int = 4096) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client that asks for the stream and then never reads a byte (with a small receive buffer)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.transport.pause_reading()  # type: ignore[attr-defined]
    writer.write(f"GET {EVENTS} HTTP/1.1\r\nHost: x\r\nX-API-Key: {API_KEY}\r\n\r\n".encode())
    await writer.drain()
    return reader, writer


async def test_clients_that_stopped_reading_never_keep_new_ones_out(start: StartClient) -> None:
    client = await start()
    feed = client.app[FEED]
    feed.max_clients = 4
    assert client.server.port is not None
    idle = [await open_idle_stream(client.server.port) for _ in range(4)]

    async def all_subscribed() -> bool:
        return len(feed.subscriptions) == 4

    await eventually(all_subscribed, what="the idle clients subscribed")
    async with client.get(EVENTS, headers=AUTH) as response:
        assert response.status == 200 and (await next_event(response))[0] == "snapshot"
    for _reader, writer in idle:
        writer.close()


async def test_a_client_whose_buffer_stays_full_is_dropped(start: StartClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("service.http.events.STALLED_S", 0.3)
    monkeypatch.setattr("service.http.events.STALL_CHECK_S", 0.05)
    client = await start()
    feed = client.app[FEED]
    assert client.server.port is not None
    _reader, writer = await open_idle_stream(client.server.port, receive_buffer=1024)

    async def subscribed() -> bool:
        return len(feed.subscriptions) == 1

    await eventually(subscribed, what="the idle client subscribed")
    big = {"blob": "x" * 200_000}
    for _ in range(40):  # more than any socket buffer takes
        feed.announce("updates", big)
        await asyncio.sleep(0.01)

    async def dropped() -> bool:
        return not feed.subscriptions

    await eventually(dropped, what="the stalled client dropped")
    writer.close()


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


def test_details_come_with_small_changes_only() -> None:
    async def run() -> list[MapChange]:
        feed = ChangeFeed(details_of=lambda version: {"partial_bytes": version})
        subscription = feed.subscribe()
        feed.publish('"small"', {1: Status.MISSING, 2: Status.MISSING})
        feed.publish('"large"', dict.fromkeys(range(MAX_DETAILED + 1), Status.MISSING))
        return [subscription.queue.get_nowait() for _ in range(subscription.queue.qsize())]  # type: ignore[misc]

    small, large = asyncio.run(run())
    assert small.details == {1: {"partial_bytes": 1}, 2: {"partial_bytes": 2}}
    assert large.details == {} and len(large.changes) == MAX_DETAILED + 1


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
    monkeypatch.setattr("service.http.events.HEARTBEAT_S", 0.05)
    client = await start(server_kwargs={"handler_cancellation": False})  # as under run_app
    feed = client.app[FEED]
    for _ in range(3):
        response = await client.get("/api/admin/models/civitai-map/events", headers=AUTH)
        await next_event(response)
        response.close()

    async def freed() -> bool:
        return not feed.subscriptions

    await eventually(freed, what="slots of departed clients freed")
