"""Small pieces the watcher is made of: waiting on events with a deadline, what a folder or a
catalog file is now, which roots a recursive watch needs, and the clocks that show a pause."""

from __future__ import annotations

import asyncio
import os
import time

QUEUE_LIMIT_FILE = "/proc/sys/fs/inotify/max_queued_events"
DEFAULT_QUEUE_LIMIT = 16_384
# What survives an overflow is a full queue: one distinct change per 1-5 events (a file
# written anew costs CREATE, OPEN, MODIFY, CLOSE_WRITE), so at least a fifth of the queue.
# A batch of an eighth of it, and never under this, may be one.
SMALLEST_SUSPICIOUS_BATCH = 1000


def outermost(paths: list[str]) -> list[str]:
    """Paths not inside another of them (a recursive watch already covers those)."""
    unique = sorted(set(paths))
    return [p for p in unique if not any(p != q and p.startswith(q.rstrip(os.sep) + os.sep) for q in unique)]


def first_line(exc: BaseException) -> str:
    """The first line of an error, as a log shows it (the errors of a task group joined)."""
    if isinstance(exc, BaseExceptionGroup):  # watchfiles raises its errors inside a task group
        return "; ".join(first_line(inner) for inner in exc.exceptions)
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


async def first_of(stop: asyncio.Event, wanted: asyncio.Event, seconds: float | None) -> bool:
    """Wait for `stop`, `wanted` or the time; True only if `stop` was set."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wanted.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return stop.is_set()


async def stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds`; True if `stop` was set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
        return True
    except TimeoutError:
        return False


def file_signature(path: str) -> tuple[int, int, int] | None:
    """(inode, size, mtime) of a file, None when there is none: what a save moves."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def folder_identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of a folder, None when it is not one (gone, unmounted)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino) if os.path.isdir(path) else None


def suspicious_batch_size(limit_file: str = QUEUE_LIMIT_FILE) -> int:
    """Distinct changes in one batch that may be what an overflow of the inotify queue left."""
    try:
        with open(limit_file, "rb") as handle:
            limit = int(handle.read())
    except (OSError, ValueError):
        limit = DEFAULT_QUEUE_LIMIT
    return max(SMALLEST_SUSPICIOUS_BATCH, limit // 8)


def boot_clock() -> float:
    """Seconds on a clock that runs while the process is stopped and while the machine sleeps."""
    return time.clock_gettime(time.CLOCK_BOOTTIME) if hasattr(time, "CLOCK_BOOTTIME") else time.monotonic()


def watching(generator: object, first: asyncio.Future[object]) -> bool:
    """Whether `awatch` has set its watches up: it does so synchronously on its first step, then
    waits for its first batch, which `ag_await` (an async generator's documented attribute, PEP
    525) then shows; or it already ended."""
    return getattr(generator, "ag_await", None) is not None or first.done()
