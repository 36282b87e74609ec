"""Folders the watcher cannot watch: those holding a file or folder name that is not UTF-8.

watchfiles ends its watch for good at the first event about such a name (it cannot turn it into
a str; samuelcolvin/watchfiles, `Unable to decode path`). Such folders are found by a walk,
named in one warning, and looked at on a timer instead; every other folder is watched one by
one around them. The catalog folder itself can be one: its two files are then looked at on the
same timer.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable

from .scan import FolderSource, Scan, is_utf8, scan_sources, scan_subtree
from .watching import stopped

logger = logging.getLogger(__name__)


class Unwatchable:
    """The folders looked at on a timer, and the loop that looks at them."""

    def __init__(self, catalog_dir: str, interval_s: float) -> None:
        self.catalog_dir = catalog_dir
        self.interval_s = max(interval_s, 1.0)
        self.folders: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self.folders)

    @property
    def catalogs(self) -> bool:
        """True when the catalog folder itself holds such a name (its files are polled)."""
        return self.catalog_dir in self.folders

    def found(self, sources: tuple[FolderSource, ...]) -> set[str]:
        """Walk the model folders and the catalog folder (blocking: call it in a thread); add and
        name the folders that hold a name that is not UTF-8. Returns the ones new to it."""
        found = scan_sources(sources).undecodable
        try:
            if any(not is_utf8(name) for name in os.listdir(self.catalog_dir)):
                found.add(self.catalog_dir)
        except OSError:
            pass
        new = found - self.folders
        for folder in sorted(new):
            what = "the catalog folder" if folder == self.catalog_dir else "model folder"
            logger.warning(
                "%s %s holds a name that is not UTF-8, which the file watcher cannot report; it is looked at every %.1f s instead",
                what,
                folder,
                self.interval_s,
            )
        self.folders |= new
        return new

    def still_there(self) -> set[str]:
        """Forget folders that are gone; the ones left (blocking)."""
        self.folders = {folder for folder in self.folders if os.path.isdir(folder)}
        return set(self.folders)

    async def look(self, sources: tuple[FolderSource, ...], changed: Callable[[list[str]], Awaitable[object]], stop: asyncio.Event) -> None:
        """Look at the model folders among them on the timer; tell `changed` when one changed. The
        first look always tells: the watches of this run may have come after a change."""
        seen: dict[str, Scan] = {}
        while True:
            for folder in sorted(self.folders - {self.catalog_dir}):
                scan = await asyncio.to_thread(scan_subtree, sources, folder)
                before = seen.get(folder)
                seen[folder] = scan
                if before is None or (before.dirs, before.partials) != (scan.dirs, scan.partials):
                    try:
                        await changed([folder])
                    except Exception:
                        logger.exception("looking at model folder %s failed", folder)
            if await stopped(stop, self.interval_s):
                return
