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
    """An index listener that logs each version's status change, rate-limited with a summary.

    What a version showed before a change, and its name when it left the map, the index says
    while it tells its listeners (`CivitaiIndex.was`): nothing is kept here per version."""

    def __init__(self, index: CivitaiIndex, active: Callable[[], bool]) -> None:
        self.index = index
        self.active = active  # False while the first build and scan run: those are not changes
        self._window_start = 0.0
        self._lines = 0
        self._suppressed = 0
        self._summary: asyncio.TimerHandle | None = None

    def __call__(self, _etag: str, changes: Changes) -> None:
        if not self.active():
            return
        for version_id, status in changes.items():
            before, entry = self.index.was(version_id)
            if status != before and not (before == status == "downloading"):
                shown = self.index.shown(version_id) or entry
                name = "" if shown is None else shown.file if shown.catalog else f"{shown.file} (in no catalog)"
                self._line(version_id, name, before, status)

    def _line(self, version_id: int, name: str, before: str | None, after: str | None) -> None:
        now = time.monotonic()
        if now - self._window_start >= WINDOW_S:
            self._flush()
            self._window_start, self._lines = now, 0
        if self._lines >= LINES_PER_WINDOW:
            self._suppressed += 1
            self._schedule_summary()
            return
        self._lines += 1
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
