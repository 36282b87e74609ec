"""The model folders as the library knows them: what is on disk in them (`Presence`), which can
not be read or are offline, and how many symlinked folders they hold. Scans and probes run in
worker threads; their facts are applied here, on the event loop."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable

from ..disk.presence import Presence
from ..disk.scan import MAX_DEPTH, FolderSource, PathFact, Scan, probe, scan_sources

logger = logging.getLogger(__name__)

SCAN_REPORT_S = 5.0
RELOOKS_AFTER_A_SCAN = 5  # rounds of looking again at paths that changed while a rescan ran


class ModelFolders:
    """The roots, what is in them, and which of them are offline. Owned by the event loop."""

    def __init__(self, sources: tuple[FolderSource, ...]) -> None:
        self.sources = sources
        self.presence = Presence(sources)
        self.unreadable: list[str] = []
        self.links = 0  # symlinked folders under the roots, as of the last scan
        self._touched: set[str] | None = None  # paths that changed while a rescan runs
        self._mount_roots: set[str] = set()  # roots that were mount points: not one any more means unmounted
        # Roots that could be read at some point of this run: only those can go offline. A folder
        # that was never there (an unused line of extra_model_paths.yaml) leaves its versions missing.
        self._seen_roots: set[str] = set()
        self._cut_folders: set[str] = set()  # folders named in a warning for being too deep

    def set_sources(self, sources: tuple[FolderSource, ...]) -> None:
        """Set the model folders (before the first scan)."""
        self.sources = sources
        self.presence.sources = sources

    async def note_mount_points(self) -> None:
        """Remember which roots are mount points now: one that stops being one was unmounted."""
        self._mount_roots = await asyncio.to_thread(lambda: {s.path for s in self.sources if os.path.ismount(s.path)})

    async def look_at(self, paths: list[str]) -> tuple[set[str], bool, list[PathFact]]:
        """Probe changed paths and apply what they are now: the file names whose places changed,
        whether a root went offline or came back, and the facts."""
        if self._touched is not None:
            self._touched.update(paths)
        facts = await asyncio.to_thread(probe, self.sources, paths)
        for fact in facts:
            if fact.scan is not None:
                self._warn_too_deep(fact.scan)
        roots = {source.path: fact for fact in facts for source in self.sources if fact.path == source.path}
        offline_moved = False
        if roots:
            offline = set(self.presence.offline)
            for path, fact in roots.items():
                if fact.kind == "dir" and not await asyncio.to_thread(self._unmounted, path):
                    offline.discard(path)
                    self._seen_roots.add(path)
                elif path in self._seen_roots:
                    offline.add(path)
            offline_moved = self._set_offline(offline)
        return self.presence.apply(facts), offline_moved, facts

    async def rescan(self, *, report: bool) -> tuple[set[str], bool]:
        """Walk every root and swap the scan in: the file names whose places changed, and whether
        a root went offline or came back. `report`: log progress every few seconds (a long first scan)."""
        self._touched = set()
        try:
            scan = Scan()
            reporter = asyncio.create_task(_report_scan(scan)) if report else None
            try:
                await asyncio.to_thread(scan_sources, self.sources, scan)
            finally:
                if reporter is not None:
                    reporter.cancel()
            changed = self.presence.replace(scan)
            for _ in range(RELOOKS_AFTER_A_SCAN):  # re-look at paths that changed while the scan ran
                touched, self._touched = self._touched, set()
                if not touched:
                    break
                changed |= self.presence.apply(await asyncio.to_thread(probe, self.sources, touched))
        finally:
            self._touched = None
        self._warn_too_deep(scan)
        if scan.unreadable != self.unreadable:
            for path in set(scan.unreadable) - set(self.unreadable):
                logger.warning("a model folder is missing or cannot be read: %s", path)
        self.unreadable = scan.unreadable
        self.links = scan.links
        unmounted = await asyncio.to_thread(lambda: {root for root in self._mount_roots if self._unmounted(root)})
        unreachable = set(scan.unreadable) | unmounted
        self._seen_roots |= {source.path for source in self.sources} - unreachable
        return changed, self._set_offline(unreachable & self._seen_roots)

    def _warn_too_deep(self, scan: Scan) -> None:
        """Name each folder left out for being deeper than MAX_DEPTH, once a run."""
        for path in scan.too_deep:
            if path not in self._cut_folders:
                self._cut_folders.add(path)
                logger.warning("model folder %s is more than %d folders deep; it and what it holds are not looked at", path, MAX_DEPTH)

    def _unmounted(self, root: str) -> bool:
        """True when a root that was a mount point is not one now (the volume is gone, its empty mount point is left)."""
        return root in self._mount_roots and not os.path.ismount(root)

    def _set_offline(self, offline: Iterable[str]) -> bool:
        before = set(self.presence.offline)
        if not self.presence.set_offline(offline):
            return False
        for path in sorted(self.presence.offline - before):
            logger.warning("model folder %s is offline; versions that can only be there show as unavailable", path)
        for path in sorted(before - self.presence.offline):
            logger.info("model folder %s is back online", path)
        return True


async def _report_scan(scan: Scan) -> None:
    """Log the progress of a long scan every few seconds: files and folders so far, and the rate."""
    started = time.monotonic()
    while True:
        await asyncio.sleep(SCAN_REPORT_S)
        elapsed = time.monotonic() - started
        logger.info("scanning model folders: %d entries in %d folders so far (%.0f a second)", scan.files, scan.folders, scan.files / elapsed)
