"""Push updates: a Server-Sent Events stream of map changes, for clients that would rather be told.

On connect a client gets `snapshot` (the current ETag). After every change of the map it
gets `change` with the new ETag, the versions whose status moved (null when a version left
the map), and for those the map says more about, what it says beside the status
(`details`: progress, `partial_bytes`, `dl_error`...; not for a change of more than
MAX_DETAILED versions, after which a client fetches the map). A client too slow to keep up gets `resync` (refetch the map) instead of
an ever-growing queue. Heartbeats are SSE comments. Every stream closes when the service
shuts down.

A client that stopped reading is dropped once what was written to it has waited
STALLED_S without going out. The number of streams is bounded, but a new client is never
refused: when every slot is taken, the stream most likely to be dead gives its slot up (one
whose writes are waiting, then one that lags behind, then the oldest), since a client that
stopped reading looks, until its buffers fill, like one that reads. A live client that was
dropped connects again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from aiohttp_sse import EventSourceResponse

from ..errors import Unavailable
from ..map.body import gzip_etag
from ..map.status import Changes
from .appkeys import FEED, LIBRARY

logger = logging.getLogger(__name__)

MAX_CLIENTS = 32
QUEUE_LIMIT = 64
HEARTBEAT_S = 15.0
STALLED_S = 10.0  # what was written to a client has not gone out for this long: it stopped reading
STALL_CHECK_S = 1.0
RESYNC = object()
MAX_DETAILED = 2_000  # a larger change carries no details (reading them would hold the loop): fetch the map


@dataclass(frozen=True, slots=True)
class NamedEvent:
    """An event other than a map change (e.g. `updates`), sent as is to every stream."""

    name: str
    data: Any


@dataclass(frozen=True, slots=True)
class MapChange:
    """One change of the map: its new ETag, the statuses that moved, and the fields beside them."""

    etag: str
    changes: Changes
    details: dict[int, dict[str, object]]


class Subscription:
    """One client's bounded queue of map changes and named events, and how to drop the client."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[MapChange | NamedEvent | object] = asyncio.Queue(QUEUE_LIMIT)
        self.since = time.monotonic()
        self.lagged = False  # its backlog was once replaced by a resync
        self.dropped = asyncio.Event()
        self.waiting_writes: Callable[[], int] = lambda: 0  # bytes written to the client that have not gone out
        self.abort: Callable[[], None] = lambda: None  # ends the connection, even in the middle of a write

    def drop(self) -> None:
        """End this client's stream now: its handler leaves and ends the stream, or, when a write
        to it is waiting, the connection is cut."""
        self.dropped.set()
        if self.waiting_writes():
            self.abort()

    def liveliness(self) -> tuple[bool, bool, float]:
        """Sorts the client least likely to be reading first."""
        return (self.waiting_writes() == 0, not self.lagged, self.since)

    def push_event(self, message: MapChange | NamedEvent) -> None:
        """Queue a message; when the client lags, replace its backlog with one resync."""
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(RESYNC)
            self.lagged = True


class ChangeFeed:
    """Fans index changes out to the connected streams."""

    def __init__(self, max_clients: int = MAX_CLIENTS, details_of: Callable[[int], dict[str, object] | None] = lambda _v: None) -> None:
        self.max_clients = max_clients
        self.details_of = details_of  # what the map says beside a version's status
        self.subscriptions: set[Subscription] = set()
        self.closing = asyncio.Event()

    def publish(self, etag: str, changes: Changes) -> None:
        """Called by the index after every publish."""
        if not self.subscriptions:
            return
        details = {v: fields for v in changes if (fields := self.details_of(v)) is not None} if len(changes) <= MAX_DETAILED else {}
        change = MapChange(etag, changes, details)
        for subscription in self.subscriptions:
            subscription.push_event(change)

    def announce(self, name: str, data: Any) -> None:
        """Send a named event (not a map change) to every stream."""
        for subscription in self.subscriptions:
            subscription.push_event(NamedEvent(name, data))

    def subscribe(self) -> Subscription:
        """A new client's subscription. When every slot is taken, the client least likely to be
        reading gives up its slot."""
        if self.closing.is_set():
            raise Unavailable("The service is stopping; try again in a moment.", code="shutting_down", retry_after=5)
        while len(self.subscriptions) >= self.max_clients:
            victim = min(self.subscriptions, key=Subscription.liveliness)
            logger.info("every events slot is taken: the client connected longest ago or stalled gives its slot up")
            self.subscriptions.discard(victim)
            victim.drop()
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
    subscription = feed.subscribe()
    transport = request.transport
    if transport is not None:
        subscription.waiting_writes = transport.get_write_buffer_size
        subscription.abort = transport.abort
    stream = EventSourceResponse(ping_interval=HEARTBEAT_S, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    watchdog = asyncio.create_task(_drop_when_stalled(subscription))
    try:
        await stream.prepare(request)
        await _send(stream, _json(_tags(library.index.snapshot.etag)), "snapshot")
        gone = asyncio.ensure_future(stream.wait())  # ends when the client has gone (its heartbeat failed)
        while not feed.closing.is_set():
            message = await _next(subscription, feed.closing, gone)
            if message is None:
                break
            if message is RESYNC:
                await _send(stream, _json(_tags(library.index.snapshot.etag)), "resync")
                continue
            if isinstance(message, NamedEvent):
                await _send(stream, _json(message.data), message.name)
                continue
            assert isinstance(message, MapChange)
            body: dict[str, Any] = {**_tags(message.etag), "changes": {str(v): s for v, s in message.changes.items()}}
            if message.details:
                body["details"] = {str(v): fields for v, fields in message.details.items()}
            await _send(stream, _json(body), "change", message.etag)
    except (ConnectionResetError, TimeoutError):
        logger.debug("an events client went away or stopped reading")
    finally:
        watchdog.cancel()
        feed.unsubscribe(subscription)
        if stream.prepared:
            stream.stop_streaming()
            try:
                async with asyncio.timeout(STALL_CHECK_S):
                    await stream.write_eof()
            except TimeoutError:
                subscription.abort()
            except Exception:
                logger.debug("an events stream could not be ended cleanly")
    return stream


async def _send(stream: EventSourceResponse, data: str, event: str, event_id: str | None = None) -> None:
    """One event, written within STALLED_S or the connection is ended (a client that stopped reading)."""
    async with asyncio.timeout(STALLED_S):
        await stream.send(data, event=event, id=event_id)


async def _drop_when_stalled(subscription: Subscription) -> None:
    """Drop the client once bytes written to it (a heartbeat, an event) have waited STALLED_S
    without going out: its buffers are full, it stopped reading."""
    waiting_since: float | None = None
    while True:
        await asyncio.sleep(STALL_CHECK_S)
        if subscription.waiting_writes() == 0:
            waiting_since = None
            continue
        now = time.monotonic()
        waiting_since = waiting_since or now
        if now - waiting_since >= STALLED_S:
            logger.info("an events client stopped reading; its stream is ended")
            subscription.abort()
            subscription.drop()
            return


async def _next(subscription: Subscription, closing: asyncio.Event, gone: asyncio.Future[None]) -> MapChange | NamedEvent | object | None:
    """The next message; None at shutdown, once the client has gone, or when it was dropped."""
    getter = asyncio.ensure_future(subscription.queue.get())
    closer = asyncio.ensure_future(closing.wait())
    dropper = asyncio.ensure_future(subscription.dropped.wait())
    try:
        done, _pending = await asyncio.wait({getter, closer, dropper, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        getter.cancel()  # `gone` is shared by every call: cancelling it would stop the heartbeat
        closer.cancel()
        dropper.cancel()
    if getter in done and not getter.cancelled():
        return getter.result()
    return None


def _tags(etag: str) -> dict[str, str]:
    """The map's ETag for plain and for gzip answers, so a client can compare whichever it holds."""
    return {"etag": etag, "etag_gzip": gzip_etag(etag)}


def _json(value: object) -> str:
    return orjson.dumps(value).decode()
