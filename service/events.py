"""Push updates: a Server-Sent Events stream of map changes, for clients that would rather be told.

On connect a client gets `snapshot` (the current ETag). After every change of the map it
gets `change` with the new ETag and the versions whose status moved (null when a version
left the map). A client too slow to keep up gets `resync` (refetch the map) instead of
an ever-growing queue. Heartbeats are SSE comments. The number of clients is bounded,
and every stream closes when the service shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from aiohttp_sse import EventSourceResponse

from .errors import Unavailable
from .index import Changes, gzip_etag
from .typedefs import FEED, LIBRARY

logger = logging.getLogger(__name__)

MAX_CLIENTS = 32
QUEUE_LIMIT = 64
HEARTBEAT_S = 15.0
RESYNC = object()


@dataclass(frozen=True, slots=True)
class NamedEvent:
    """An event other than a map change (e.g. `updates`), sent as is to every stream."""

    name: str
    data: Any


class Subscription:
    """One client's bounded queue of (etag, changes) messages."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, Changes] | object] = asyncio.Queue(QUEUE_LIMIT)

    def push(self, etag: str, changes: Changes) -> None:
        """Queue a change; when the client lags, replace its backlog with one resync."""
        self.push_event((etag, changes))

    def push_event(self, message: tuple[str, Changes] | NamedEvent) -> None:
        """Queue a message; when the client lags, replace its backlog with one resync."""
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(RESYNC)


class ChangeFeed:
    """Fans index changes out to the connected streams."""

    def __init__(self, max_clients: int = MAX_CLIENTS) -> None:
        self.max_clients = max_clients
        self.subscriptions: set[Subscription] = set()
        self.closing = asyncio.Event()

    def publish(self, etag: str, changes: Changes) -> None:
        """Called by the index after every publish."""
        for subscription in self.subscriptions:
            subscription.push(etag, changes)

    def announce(self, name: str, data: Any) -> None:
        """Send a named event (not a map change) to every stream."""
        for subscription in self.subscriptions:
            subscription.push_event(NamedEvent(name, data))

    def subscribe(self) -> Subscription:
        """A new client's subscription; 503 past the client limit."""
        if len(self.subscriptions) >= self.max_clients:
            raise Unavailable("Too many clients are listening for changes; poll the map instead.", code="too_many_listeners", retry_after=30)
        subscription = Subscription()
        self.subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self.subscriptions.discard(subscription)

    def close(self) -> None:
        """End every stream (at shutdown)."""
        self.closing.set()


async def close_streams(app: web.Application) -> None:
    """on_shutdown: let the streams end before aiohttp waits for handlers."""
    app[FEED].close()


async def civitai_map_events(request: web.Request) -> web.StreamResponse:
    """The SSE stream of map changes."""
    library, feed = request.app[LIBRARY], request.app[FEED]
    if not library.ready:
        raise Unavailable("The index is still being built; try again in a moment.", code="not_ready", retry_after=1)
    subscription = feed.subscribe()
    stream = EventSourceResponse(ping_interval=HEARTBEAT_S, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    try:
        await stream.prepare(request)
        await stream.send(_json(_tags(library.index.snapshot.etag)), event="snapshot")
        gone = asyncio.ensure_future(stream.wait())  # ends when the client has gone (its heartbeat failed)
        while not feed.closing.is_set():
            message = await _next(subscription, feed.closing, gone)
            if message is None:
                break
            if message is RESYNC:
                await stream.send(_json(_tags(library.index.snapshot.etag)), event="resync")
                continue
            if isinstance(message, NamedEvent):
                await stream.send(_json(message.data), event=message.name)
                continue
            etag, changes = message  # type: ignore[misc]
            body = {**_tags(etag), "changes": {str(v): s for v, s in changes.items()}}
            await stream.send(_json(body), event="change", id=etag)
    except (ConnectionResetError, TimeoutError):
        logger.debug("an events client went away or stopped reading")
    finally:
        feed.unsubscribe(subscription)
        if stream.prepared:
            stream.stop_streaming()
            with contextlib.suppress(Exception):
                await stream.write_eof()
    return stream


async def _next(subscription: Subscription, closing: asyncio.Event, gone: asyncio.Future[None]) -> tuple[str, Changes] | object | None:
    """The next message; None at shutdown or once the client has gone."""
    getter = asyncio.ensure_future(subscription.queue.get())
    closer = asyncio.ensure_future(closing.wait())
    try:
        done, _pending = await asyncio.wait({getter, closer, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        getter.cancel()  # `gone` is shared by every call: cancelling it would stop the heartbeat
        closer.cancel()
    if getter in done and not getter.cancelled():
        return getter.result()
    return None


def _tags(etag: str) -> dict[str, str]:
    """The map's ETag for plain and for gzip answers, so a client can compare whichever it holds."""
    return {"etag": etag, "etag_gzip": gzip_etag(etag)}


def _json(value: object) -> str:
    return orjson.dumps(value).decode()
