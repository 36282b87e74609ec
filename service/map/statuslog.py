"""Status changes a person can follow in the log: `version 2514310 WAI v16: missing -> present`.

At most a few lines a second: a 20,000-file unpack writes a handful of lines and then one
summary (`... and 19,990 more status changes in the last 10 s`), not 20,000 lines. The first
build of the map is not a change and is not logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from .index import CivitaiIndex
from .status import Changes

logger = logging.getLogger(__name__)

LINES_PER_WINDOW = 20
WINDOW_S = 10.0


class StatusLog:
    """An index listener that logs each version's status change, rate-limited with a summary."""

    def __init__(self, index: CivitaiIndex, active: Callable[[], bool]) -> None:
        self.index = index
        self.active = active  # False while the first build and scan run: those are not changes
        self.known: dict[int, str] = {}
        self.files: dict[int, str] = {}  # the file each known version was last shown with (a version that left keeps its name)
        self._window_start = 0.0
        self._lines = 0
        self._suppressed = 0
        self._summary: asyncio.TimerHandle | None = None

    def __call__(self, _etag: str, changes: Changes) -> None:
        logging_now = self.active()
        for version_id, status in changes.items():
            before = self.known.get(version_id)
            if status is not None:
                self.known[version_id] = status
                shown = self.index.shown(version_id)
                if shown is not None:
                    self.files[version_id] = shown.file if shown.catalog else f"{shown.file} (in no catalog)"
            if logging_now and status != before and not (before == status == "downloading"):
                self._line(version_id, before, status)
            if status is None:
                self.known.pop(version_id, None)
                self.files.pop(version_id, None)

    def _line(self, version_id: int, before: str | None, after: str | None) -> None:
        now = time.monotonic()
        if now - self._window_start >= WINDOW_S:
            self._flush()
            self._window_start, self._lines = now, 0
        if self._lines >= LINES_PER_WINDOW:
            self._suppressed += 1
            self._schedule_summary()
            return
        self._lines += 1
        name = self.files.get(version_id, "")
        logger.info("version %d %s: %s -> %s", version_id, name, before or "not in the map", after or "not in the map")

    def _schedule_summary(self) -> None:
        if self._summary is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        delay = max(0.0, self._window_start + WINDOW_S - time.monotonic())
        self._summary = loop.call_later(delay, self._flush)

    def _flush(self) -> None:
        if self._summary is not None:
            self._summary.cancel()
            self._summary = None
        if self._suppressed:
            logger.info("... and %d more status changes in the last %.0f s", self._suppressed, WINDOW_S)
            self._suppressed = 0
