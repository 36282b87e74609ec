"""The library: both catalogs, what is on disk, and the map made from them.

Every change goes through here, from the watcher, the periodic reconcile or a mutation.
Blocking work (reading, parsing, scanning, probing) runs in worker threads; the results
are applied on the event loop, under one lock for catalog changes so layouts land in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

from .. import workers
from ..catalog.document import CATALOG_NAMES, catalog_path
from ..catalog.reading import (
    UNPARSABLE_RETRY_S,
    CatalogReading,
    cut_rows,
    whole_reading,
)
from ..catalog.rows import CutRows
from ..catalog.text import Text
from ..catalog.transaction import SavedCatalog
from ..disk.presence import Presence
from ..disk.scan import FolderSource
from ..disk.watching import first_of, stopped
from ..logs import counted
from ..map.entry import MapEntry
from ..map.index import CivitaiIndex
from ..map.layout import build_layout
from .catalogs import (
    CatalogState,
    give_memory_back,
    long_lived,
    moved_versions,
    read_state,
    size_of,
    worker_cut,
)
from .folders import ModelFolders

logger = logging.getLogger(__name__)

SAVES_SETTLE_S = 2.0  # how long a catalog's watch event waits for this service's saves under way
REQUESTED_RESCAN_DELAY_S = 0.2


# More versions than this changed at once: lay the map out anew in a thread instead of
# splicing them in on the event loop (each splice costs microseconds there).
SPLICE_LIMIT = 2_000
# Both catalogs at least this large: the start cuts the smaller in a worker process beside the
# larger (a process's start and the pieces' way back cost less than the parse it saves).
BESIDE_BYTES = 64 * 1024 * 1024


class Library:
    """Keeps the index true to the catalogs and the model folders."""

    def __init__(self, catalog_dir: Path, sources: tuple[FolderSource, ...]) -> None:
        self.catalogs = {name: CatalogState(name, catalog_path(catalog_dir, name)) for name in CATALOG_NAMES}
        self.folders = ModelFolders(sources)
        self.index = CivitaiIndex(self.folders.presence)
        self.ready = False
        self._starting = False  # `start` under way (see `collect_first`)
        self._catalog_lock = asyncio.Lock()
        self._saves = 0  # this service's saves under way, not yet taken into the map
        self._saves_settled = asyncio.Event()
        self._saves_settled.set()
        self._rescan = asyncio.Event()  # set when only a full rescan can be sure
        self.new_links: Callable[[], None] = lambda: None  # told of a new symlinked folder (the watcher watches inside it)
        self._reconcile_lock = asyncio.Lock()  # one full rescan at a time: each swaps its whole scan in
        self.disk_entries: dict[int, MapEntry] = {}  # versions identified on disk by hash that no catalog lists
        self.disk_listeners: list[Callable[[set[str] | None], None]] = []  # told the file names that changed (None: all)

    @property
    def sources(self) -> tuple[FolderSource, ...]:
        """The model folders."""
        return self.folders.sources

    @property
    def presence(self) -> Presence:
        """What is on disk in them."""
        return self.folders.presence

    @property
    def unreadable(self) -> list[str]:
        """Model folders that are missing or cannot be read, as of the last scan."""
        return self.folders.unreadable

    @property
    def links(self) -> int:
        """Symlinked folders under the roots."""
        return self.folders.links

    def set_sources(self, sources: tuple[FolderSource, ...]) -> None:
        """Set the model folders (before `start`)."""
        self.folders.set_sources(sources)

    @property
    def collect_first(self) -> bool:
        """Whether the garbage is collected before a structure just built is set aside from the
        collector (`workers.collector_paused`). Not while `start` runs: what exists then is the
        start's own build, which holds no cycles, and the little the server made meanwhile; a
        walk of a large library would cost seconds to find those few (bench/README, "a million
        entries"), which stay set aside for good."""
        return not self._starting

    @property
    def healthy_catalogs(self) -> bool:
        """True when every catalog parsed at its last reading."""
        return all(state.error is None for state in self.catalogs.values())

    async def start(self) -> None:
        """First full build: both catalogs, then a scan of every root, then the map laid out
        once with every status known, then the catalogs looked at again."""
        self._starting = True
        try:
            await self._start()
        finally:
            self._starting = False

    async def _start(self) -> None:
        started = time.perf_counter()
        took = {}
        await self.folders.note_mount_points()
        await self._read_catalogs()
        took["catalogs"] = time.perf_counter()
        async with self._reconcile_lock:  # the disk first: the map is then laid out once, every status known
            await self.folders.rescan(report=True)
            self._tell_disk_listeners(None)
            took["scan"] = time.perf_counter()
            async with self._catalog_lock:
                # Afresh: a catalog save seen during the scan was spliced in while the disk was
                # not known yet, and a layout built against that one would keep its statuses.
                await self._rebuild(afresh=True)
            took["map"] = time.perf_counter()
        for name in CATALOG_NAMES:  # as a reconcile does: a change whose event never came
            await self.reload_catalog(name)
        self.ready = True
        took["the rest"] = time.perf_counter()
        phases, last = [], started
        for phase, at in took.items():
            phases.append(f"{phase} {at - last:.2f} s")
            last = at
        logger.info(
            "index ready: %s catalogued, %s on disk, in %.2f s (%s)",
            counted(len(self.index), "version"),
            counted(len(self.presence), "file"),
            last - started,
            ", ".join(phases),
        )

    async def _read_catalogs(self) -> None:
        """Both catalogs, for the start: when both are large (BESIDE_BYTES), the smaller is cut
        in a worker process, on the other core, while the larger is read here; its pieces then
        cost this process a rebuild instead of a parse. Read here alone if that fails."""
        sizes = {name: size_of(state.path) for name, state in self.catalogs.items()}
        larger, smaller = sorted(CATALOG_NAMES, key=sizes.__getitem__, reverse=True)
        beside = None
        if sizes[smaller] >= BESIDE_BYTES:
            beside = asyncio.ensure_future(workers.in_worker_process(cut_rows, self.catalogs[smaller].path, smaller, killed_if_cancelled=True))
        cut = None
        try:
            await self.reload_catalog(larger, rebuild=False)
            if beside is not None:
                cut = await worker_cut(beside, smaller)
        finally:
            if beside is not None and not beside.done():
                beside.cancel()  # the start was stopped, or the reading failed: the worker is stopped too
            elif beside is not None and not beside.cancelled():
                beside.exception()  # looked at: a worker that failed after the start did is not reported twice
        await self.reload_catalog(smaller, rebuild=False, cut=cut)

    async def reload_catalog(self, name: str, *, rebuild: bool = True, cut: CutRows | None = None) -> bool:
        """Re-read one catalog; keep the last good entries when it does not parse. True if the map
        changed. `cut`: the pieces a worker process cut it into (`reading.cut_rows`)."""
        state = self.catalogs[name]
        async with self._catalog_lock:
            reading = await self._read(state, cut)
            for delay in UNPARSABLE_RETRY_S:
                if not reading.unparsable:
                    break
                await asyncio.sleep(delay)
                reading = await self._read(state)
            if reading.error is not None:
                if reading.error != state.error and state.digest is None:  # never read well: there is no last good version
                    logger.warning("%s.json is unusable; none of its entries are in the map until it is mended: %s", name, reading.error)
                elif reading.error != state.error:
                    logger.warning("%s.json is unusable, keeping the last good version: %s", name, reading.error)
                state.error = reading.error
                return False
            if state.error is not None:
                logger.info("%s.json parses again", name)
                state.error = None
            loaded = reading.loaded
            if loaded is None:
                return False
            if rebuild and loaded.changed is not None and state.text is not None and len(loaded.changed) <= SPLICE_LIMIT:  # cut against the last cut: compare what moved
                moved = moved_versions(state.shown, loaded.shown, loaded.changed | state.dirty)
            elif rebuild:
                moved = await asyncio.to_thread(moved_versions, state.shown, loaded.shown)
            else:
                moved = set()
            state.digest, state.text, state.dirty = loaded.digest, loaded.text, set()
            state.shown = loaded.shown
            self._warn_unusable(state, loaded.unusable)
            logger.info("%s.json loaded: %s%s", name, counted(len(state.shown), "version"), f", {len(moved)} changed" if rebuild else "")
            if not loaded.partial:  # the reading's garbage is gone
                await give_memory_back(len(state.shown))
            return await self._splice(moved) if rebuild else False

    async def _read(self, state: CatalogState, cut: CutRows | None = None) -> CatalogReading:
        """Read one catalog (under the catalog lock: `state` holds still meanwhile)."""
        return await read_state(state, cut, collect=self.collect_first)

    @contextlib.asynccontextmanager
    async def saving(self) -> AsyncIterator[None]:
        """Mark one of this service's saves under way until the map has taken it in."""
        self._saves += 1
        self._saves_settled.clear()
        try:
            yield
        finally:
            self._saves -= 1
            if not self._saves:
                self._saves_settled.set()

    async def saves_settled(self, timeout: float = SAVES_SETTLE_S) -> None:
        """Wait (a bounded while) for this service's saves under way to reach the map. A watch
        event for a catalog is then usually our own write, known by its digest and not read
        again, instead of a file read mid-save and cut in vain."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._saves_settled.wait(), timeout)

    async def catalogs_changed(self, names: Iterable[str]) -> None:
        """Catalog files changed on disk: read them again, once this service's saves under way
        have reached the map (a watch event is then usually our own write, known by its digest)."""
        await self.saves_settled()
        for name in names:
            try:
                await self.reload_catalog(name)
            except Exception:  # one catalog that cannot be read again does not keep the other from it
                logger.exception("reloading %s.json failed", name)

    def request_rescan(self) -> None:
        """Rescan every root soon (coalesced): something only a full rescan can be sure of."""
        self._rescan.set()

    @property
    def rescan_requested(self) -> bool:
        """True while a requested rescan has not started."""
        return self._rescan.is_set()

    async def rescan_forever(self, interval_s: float, stop: asyncio.Event) -> None:
        """Rescan every root at a fixed interval, and soon after one is requested, until `stop`."""
        while not await first_of(stop, self._rescan, interval_s):
            if self._rescan.is_set():
                if await stopped(stop, REQUESTED_RESCAN_DELAY_S):  # let a burst of events settle
                    return
                self._rescan.clear()
            try:
                if await self.reconcile():
                    logger.info("reconcile found changes the watcher had missed")
            except Exception:
                logger.exception("the periodic reconcile failed")

    def texts(self) -> dict[str, Text] | None:
        """The cut text of each catalog, when every catalog has one (a mutation then reads only
        what it needs). A cut that is behind the file still serves: the save reads anew."""
        texts = {name: state.text for name, state in self.catalogs.items() if state.text is not None}
        return texts if len(texts) == len(self.catalogs) else None

    async def accept_writes(self, written: dict[str, SavedCatalog]) -> None:
        """Take in catalogs this service has just written, so the map shows them at once."""
        async with self._catalog_lock:
            moved: set[int] = set()
            for name, saved in written.items():
                state = self.catalogs[name]
                state.error = None
                if saved.entries is not None:  # rewritten whole
                    loaded = whole_reading(saved.digest, saved.entries)
                    moved |= await asyncio.to_thread(moved_versions, state.shown, loaded.shown)
                    state.digest, state.shown, state.text, state.dirty = saved.digest, loaded.shown, None, set()
                    self._warn_unusable(state, loaded.unusable)
                    continue
                assert saved.changes is not None
                for version, entry in saved.changes.items():
                    if entry is None:
                        state.shown.pop(version, None)
                    else:
                        state.shown[version] = entry
                moved |= saved.changes.keys()
                current = state.text is not None and state.text.digest == state.digest == saved.based_on and not state.dirty
                if current and saved.text is not None:  # planned on what the map shows: the new cut is exact
                    state.digest, state.text = saved.digest, saved.text
                else:
                    # Planned on a reading the map has not taken in (an outside save it has not seen
                    # yet), or the cut could not follow: keep the old cut, remember what was changed
                    # since, and leave the digest behind so the file is read again.
                    state.dirty |= saved.changes.keys()
            await self._splice(moved)
        # The save's reading, its cut's copies and the old cut are garbage now, which the
        # allocator would otherwise keep.
        await give_memory_back(max((len(self.catalogs[name].shown) for name in written), default=0))

    async def set_disk_entries(self, entries: list[MapEntry]) -> bool:
        """Show these versions identified on disk (in no catalog) in the map; True if it changed."""
        found: dict[int, MapEntry] = {}
        for entry in entries:
            found.setdefault(entry.version_id, entry)
        async with self._catalog_lock:
            moved = moved_versions(self.disk_entries, found) if len(found) + len(self.disk_entries) < SPLICE_LIMIT * 5 else None
            if moved is None:
                moved = await asyncio.to_thread(moved_versions, self.disk_entries, found)
            if not moved:
                return False
            self.disk_entries = found
            return await self._splice(moved)

    def _warn_unusable(self, state: CatalogState, unusable: int) -> None:
        if unusable and unusable != state.unusable_ids:
            logger.warning(
                "%s.json: %d entries have a CivitAI id that is not a positive whole number; they are left out of the map and kept in the file",
                state.name,
                unusable,
            )
        state.unusable_ids = unusable

    async def paths_changed(self, paths: Iterable[str]) -> bool:
        """Look at changed paths under the model roots and update their files' statuses."""
        changed, offline_moved, facts = await self.folders.look_at(list(paths))
        if any(fact.link for fact in facts):  # a new symlinked folder: watch inside it too
            self.folders.links += 1
            self.new_links()
        if self.folders.links:
            # Through a symlinked folder a file has several paths, and an event names only one:
            # a rescan (coalesced, in the background) sets every other path straight.
            self.request_rescan()
        self._tell_disk_listeners(changed | {os.path.basename(fact.path) for fact in facts if fact.kind == "file"})
        moved = self.index.files_changed(changed)
        return (self.index.refresh() if offline_moved else False) or moved

    def _tell_disk_listeners(self, names: set[str] | None) -> None:
        for listener in self.disk_listeners:
            listener(names)

    async def reconcile(self) -> bool:
        """Re-read both catalogs and rescan every root: the safety net for events that never
        arrived. Unchanged catalogs cost a hash. One at a time. True if the map changed."""
        async with self._reconcile_lock:
            return await self._reconcile()

    async def _reconcile(self) -> bool:
        catalogs_moved = False
        for name in CATALOG_NAMES:
            catalogs_moved |= await self.reload_catalog(name)
        changed, offline_moved = await self.folders.rescan(report=not self.ready)  # the first scan may be long
        self._tell_disk_listeners(None)
        moved = self.index.files_changed(changed)
        return (self.index.refresh() if offline_moved else False) or moved or catalogs_moved

    async def _splice(self, versions: set[int]) -> bool:
        """Show these versions as the catalogs and the disk now have them (loras.json first, then
        models.json, then files identified on disk), splicing them into the map in place. Many
        at once, or a map worn by many removals, is laid out anew in a thread instead."""
        if not versions:
            return False
        layout = self.index.layout
        if len(versions) > SPLICE_LIMIT or layout.holes > max(SPLICE_LIMIT, len(layout.entries) // 4):
            return await self._rebuild()
        loras, models, disk = self.catalogs["loras"].shown, self.catalogs["models"].shown, self.disk_entries
        return self.index.update({v: loras.get(v) or models.get(v) or disk.get(v) for v in versions})

    async def _rebuild(self, *, afresh: bool = False) -> bool:
        """Lay the map out anew in a thread; the statuses of versions whose entry did not change
        are taken over from the map as it is, unless `afresh` (every one worked out again)."""
        catalogs = [self.catalogs["loras"].shown.values(), self.catalogs["models"].shown.values(), self.disk_entries.values()]
        with workers.collector_paused(collect=self.collect_first) as pause:
            layout = await asyncio.to_thread(build_layout, catalogs, None if afresh else self.index.layout)
            moved = self.index.set_layout(layout, afresh=afresh)
            pause.set_aside = long_lived(len(layout.entries))
        await give_memory_back(len(layout.entries))  # the old layout and the reading are garbage now
        return moved

