"""Running the app: listen, stop cleanly on SIGTERM/SIGINT, and never be locked out by idle sockets.

`web.run_app` offers no hook on the server's connections, so this is its loop written out:
a runner, a TCP site, and a guard that closes any connection that has not sent a whole
request head within HEADER_TIMEOUT_S (from connect, or since its last request, while no
request of it is being answered), or not the whole body within as long after its head. A
thousand sockets that trickle headers, or a head and no body, would otherwise hold every
file descriptor. The soft open-file limit is raised to the hard limit at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from ..settings import Settings
from .pipeline import MUTATING

logger = logging.getLogger(__name__)

MAX_HEADER_BYTES = 8190
KEEPALIVE_TIMEOUT_S = 75.0


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft >= hard:
        return soft
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def serve(app: web.Application, settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT, then stop within about SHUTDOWN_TIMEOUT_S."""
    limit = raise_open_file_limit()
    logger.info("open-file limit: %d", limit)
    asyncio.run(_serve(app, settings))


async def _serve(app: web.Application, settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log_class=QuietAccessLogger,
        shutdown_timeout=settings.shutdown_timeout_s,
        keepalive_timeout=KEEPALIVE_TIMEOUT_S,
        max_line_size=MAX_HEADER_BYTES,
        max_field_size=MAX_HEADER_BYTES,
    )
    await runner.setup()
    guard: asyncio.Task[None] | None = None
    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
        assert runner.server is not None
        guard = asyncio.create_task(close_stalled_connections(runner.server, settings.header_timeout_s), name="connection guard")
        await stop.wait()
        logger.info("stopping")
        # aiohttp waits SHUTDOWN_TIMEOUT_S for running requests, then as long again after
        # cancelling them; the stop must take SHUTDOWN_TIMEOUT_S in all.
        loop.call_later(settings.shutdown_timeout_s, cancel_running_requests, runner.server)
    finally:
        if guard is not None:
            guard.cancel()
        await runner.cleanup()


def cancel_running_requests(server: web.Server | None) -> None:
    """Cancel the handler of every request still running (reads aiohttp's `_task_handler`)."""
    for handler in server.connections if server is not None else ():
        task = getattr(handler, "_task_handler", None)
        if task is not None and not task.done():
            task.cancel()


async def close_stalled_connections(server: web.Server, timeout_s: float) -> None:
    """Close connections that sent no whole request head, or no whole body after their head,
    for `timeout_s`; a request whose body has arrived may take as long as it needs.

    Reads two attributes of aiohttp's RequestHandler (`_request_count`, `_current_request`);
    tests/test_serving.py fails if they change meaning.
    """
    loop = asyncio.get_running_loop()
    seen: dict[int, tuple[int, float]] = {}  # id(handler) -> (requests seen, since when)
    while True:
        await asyncio.sleep(min(1.0, timeout_s / 4))
        now = loop.time()
        alive = set()
        for handler in server.connections:
            key = id(handler)
            alive.add(key)
            count = getattr(handler, "_request_count", 0)
            request: web.BaseRequest | None = getattr(handler, "_current_request", None)
            # A handler waiting on a body that does not come is not answering: the clock runs on.
            answering = request is not None and request.content.is_eof()
            last = seen.get(key)
            if last is None or last[0] != count or answering:
                seen[key] = (count, now)
            elif now - last[1] > timeout_s:
                handler.force_close()
        for key in set(seen) - alive:
            del seen[key]


class QuietAccessLogger(AbstractAccessLogger):
    """Access log that keeps polling out of sight: reads at DEBUG, changes and errors at INFO."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        level = logging.INFO if request.method in MUTATING or response.status >= 400 else logging.DEBUG
        if self.logger.isEnabledFor(level):
            self.logger.log(level, "%s %s %d %.1f ms", request.method, request.path, response.status, time * 1000)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)
