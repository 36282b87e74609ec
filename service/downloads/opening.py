"""A job's part file, from the event loop: watched for another program's writes before it is
resumed, then opened and locked in a worker thread, and let go of when the job is cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

from .fetch import DownloadFailed
from .job import Job
from .part import PartFile, PartRefused

PART_WATCH_S = 1.0  # a recent part is watched this long for another program's writes before it is resumed


async def written_elsewhere(part: Path, stale_s: float) -> bool:
    """True when a part that changed within `stale_s` (the map says `downloading`) changes again
    while it is watched for PART_WATCH_S: a program that takes no lock (a browser, wget) is
    writing it. One left by a restart of this service stays still, and is resumed."""
    before = await asyncio.to_thread(_part_stamp, part)
    if before is None or time.time() - before[1] / 1e9 >= stale_s:
        return False
    await asyncio.sleep(PART_WATCH_S)
    return await asyncio.to_thread(_part_stamp, part) != before


def _part_stamp(path: Path) -> tuple[int, int] | None:
    """A part's size and mtime (ns), not following a link; None when there is none."""
    try:
        info = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns


async def open_part(job: Job) -> PartFile:
    """Open (and lock) the job's part in a thread. A cancel that comes meanwhile does not stop
    the thread: what it opens is closed again (and deleted, when the job was cancelled)."""
    opening = asyncio.ensure_future(asyncio.to_thread(PartFile.open, job.part))
    try:
        return await asyncio.shield(opening)
    except PartRefused as exc:
        raise DownloadFailed(str(exc), exc.code) from None
    except asyncio.CancelledError:
        # The open goes on in its thread: close what it opens (deleting it when the job was
        # cancelled) in a task of its own, which a second cancel cannot stop, and wait for it.
        letting_go = asyncio.ensure_future(_let_go(opening, cancelled=job.state == "cancelled"))
        with contextlib.suppress(Exception):
            await asyncio.shield(letting_go)
        raise


async def _let_go(opening: asyncio.Future[PartFile], *, cancelled: bool) -> None:
    try:
        part = await opening
    except Exception:
        return
    if cancelled:
        await asyncio.to_thread(part.remove)
    await asyncio.to_thread(part.close)
