"""Partial downloads no job of this service is writing: alive while they grow, stopped after that.

A part (`x.safetensors.part`, `.tmp`, `.crdownload`...) read from disk is another program's
download, or one this service left: by a restart, a dropped connection, a cancel. It reads
`downloading` while it keeps changing, judged by its modification time: once unchanged for
`stale_s`, or as soon as this service's own job for it has ended, it reads `missing` with its
`partial_bytes`, and a Download resumes it. A job that failed leaves `dl_error` ({code,
detail, at}) on its versions until the next download of that file starts.

The time a part last changed is the file's own modification time, so a restart, or the
watcher's event for the last write coming after the job ended, changes nothing: the last
write happened before the end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from .entry import MapEntry
from .status import MISSING, Status, Transfer, slot

DEFAULT_STALE_S = 60.0
WAKE_SLACK_S = 0.05  # a timer may fire a little early: look again a moment after the deadline


@dataclass(frozen=True, slots=True)
class Ended:
    """How this service's job for a file ended: when (Unix time), and the error if it failed."""

    at: float
    error: bytes | None = None  # the dl_error object, serialized
    wrote_part: bool = True  # False when the job never wrote the part (another process held it)


class Parts:
    """The jobs that ended per file and folder, and timers to look again when a part goes stale.

    Owned by the event loop, like the index that asks it."""

    def __init__(self, wake: Callable[[str], object], stale_s: float = DEFAULT_STALE_S) -> None:
        self.stale_s = stale_s
        self._wake = wake  # told a file name whose part may have gone stale
        self._ended: dict[str, dict[str, Ended]] = {}  # file name -> logical folder -> how its job ended
        self._timers: dict[str, tuple[asyncio.TimerHandle, float]] = {}  # file -> (timer, when it fires)

    def job_ended(self, file: str, folder: str, code: str | None, detail: str | None, *, wrote_part: bool = True) -> None:
        """This service's job for a file stopped (`code` None: cancelled, no error to show). A part
        it did not write (another process's) goes on reading `downloading` while it changes."""
        at = time.time()
        error = None if code is None else orjson.dumps({"code": code, "detail": detail or code, "at": round(at, 3)})
        self._ended.setdefault(file, {})[folder] = Ended(at, error, wrote_part)

    def job_started(self, file: str, folder: str) -> None:
        """A new job for the file: whatever the last one left is forgotten."""
        places = self._ended.get(file)
        if places is not None and places.pop(folder, None) is not None and not places:
            del self._ended[file]

    def growing(self, entry: MapEntry, part: tuple[int, float] | None) -> bytes | None:
        """The `downloading` slot of a part that is still changing, or None. A growing part is
        looked at again once it would be stale."""
        if part is None:
            return None
        size, changed_at = part
        ended = self._ended_for(entry)
        if ended is not None and ended.wrote_part and changed_at <= ended.at:
            return None
        if time.time() - changed_at >= self.stale_s:
            return None
        self._wake_at(entry.file, changed_at + self.stale_s)
        return Transfer("downloading", size, entry.size).slot()

    def stopped(self, entry: MapEntry, part: tuple[int, float] | None) -> bytes:
        """The `missing` slot, with the part's bytes and the last job's error when there are any."""
        fields = b""
        if part is not None:
            fields += b',"partial_bytes":%d' % part[0]
        ended = self._ended_for(entry)
        if ended is not None and ended.error is not None:
            fields += b',"dl_error":' + ended.error
        return slot(Status.MISSING, fields) if fields else MISSING

    def _ended_for(self, entry: MapEntry) -> Ended | None:
        places = self._ended.get(entry.file)
        if not places:
            return None
        prefix = entry.folder + "/"
        found = [ended for folder, ended in places.items() if folder == entry.folder or folder.startswith(prefix)]
        return max(found, key=lambda ended: ended.at) if found else None

    def _wake_at(self, file: str, deadline: float) -> None:
        """Look at a file's parts again at `deadline` (never later than STALE_PART_S from now: a
        time in the future, from a skewed clock, is no sign of progress). A timer already set
        for an earlier time is kept: it looks again, and sets the next one."""
        now = time.time()
        deadline = min(deadline, now + self.stale_s)
        held = self._timers.get(file)
        if held is not None:
            if held[1] <= deadline:
                return
            held[0].cancel()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # laid out outside the loop (tests, benchmarks): nothing to wake
            return
        self._timers[file] = (loop.call_later(max(0.0, deadline - now) + WAKE_SLACK_S, self._fire, file), deadline)

    def _fire(self, file: str) -> None:
        del self._timers[file]
        self._wake(file)

    def close(self) -> None:
        """Cancel every timer (at shutdown)."""
        for timer, _deadline in self._timers.values():
            timer.cancel()
        self._timers.clear()
