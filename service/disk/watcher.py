"""The watcher: tells the library what changed on disk, in the catalog folder and every model root.

It watches the catalog *folder* (an atomic replace of a watched file kills a watch on it) and
every model root recursively. Changes are looked at again when handled, so the kind of event
and its order do not matter. The library's periodic rescan catches whatever the events missed
(network volumes, symlinked folders, a watcher restart).

Lost events are looked for, not waited out. The kernel queues at most
`max_queued_events` inotify events and drops the rest; notify (the Rust crate under
watchfiles) turns the kernel's IN_Q_OVERFLOW into an event with its `Rescan` flag and no
path, and watchfiles drops every event without a path, so an overflow is never reported
(watchfiles 1.3.0; samuelcolvin/watchfiles#348). What an overflow leaves behind is
watched for instead: a batch as large as what survives one, and a stall of the whole
process (notify reads the queue in its own thread, so only a stopped, swapped-out or
suspended process lets the queue fill). Either way the watches are set up again (folders
made while events were lost have none) and every root is rescanned.

Folders holding a name that is not UTF-8 are looked at on a timer instead (`unwatchable`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from watchfiles import Change, awatch

from .presence import Presence
from .scan import FolderSource, watch_folders
from .unwatchable import Unwatchable
from .watching import (
    SMALLEST_SUSPICIOUS_BATCH,
    boot_clock,
    file_signature,
    first_line,
    first_of,
    folder_identity,
    outermost,
    stopped,
    suspicious_batch_size,
    watching,
)

logger = logging.getLogger(__name__)

STEP_MS = 50  # quiet time that ends a batch of changes
PAUSE_TICK_S = 1.0
PAUSE_S = 3.0  # the process did not run for this long: the kernel's queue may have overflowed
ROOT_CHECK_S = 2.0  # how often roots are checked for disappearing or appearing
RESTART_DELAYS_S = (0.5, 1, 2)
HEALTHY_RUN_S = 60.0  # a watch that ran this long before it failed starts the count of failures afresh
MIN_SCAN_INTERVAL_S = 2.0
# Failures that a restart cannot mend: fall back to scanning at once.
HOPELESS = ("file system loop", "watch limit", "no space left on device")
NOT_UTF8 = "Unable to decode path"  # watchfiles' error for a name that is not UTF-8
# Before watching again after such a name vanished before the walk could find it, by how many in
# a row: each costs a walk and a rescan, so a tool that keeps making such names costs no more
# than a rescan a second, and the watcher recovers by itself once it stops.
UNFOUND_NAME_PAUSES_S = (0.25, 0.5, 1.0)


class WatchedLibrary(Protocol):
    """What the watcher tells of the changes it sees (the library is one)."""

    ready: bool
    sources: tuple[FolderSource, ...]
    presence: Presence

    async def catalogs_changed(self, names: Iterable[str]) -> None: ...

    async def paths_changed(self, paths: Iterable[str]) -> bool: ...

    async def reconcile(self) -> bool: ...

    def request_rescan(self) -> None: ...


class Watcher:
    """Runs watchfiles over the catalog folder and the model roots, and restarts it if it dies."""

    def __init__(
        self,
        library: WatchedLibrary,
        catalog_dir: Path,
        catalog_files: Iterable[str],
        *,
        debounce_ms: int,
        polling: bool,
        poll_interval_ms: int,
    ) -> None:
        self.library = library
        self.catalog_dir = str(catalog_dir)
        self.catalog_files = frozenset(catalog_files)  # names of the catalog files in that folder
        self.roots: list[str] = []
        self.watched_identities: dict[str, tuple[int, int] | None] = {}  # each model folder as the watches found it
        self.debounce_ms = debounce_ms
        self.polling = polling
        self.poll_interval_ms = poll_interval_ms
        self.state = "starting"
        self.scan_mode: str | None = None  # why events were given up for timed rescans
        self.live = asyncio.Event()
        self.suspicious_batch = SMALLEST_SUSPICIOUS_BATCH  # set from the kernel's queue length in `run`
        # What the next run of the watches catches up on: only the roots that went or came back,
        # unless events may have been lost (then every root is rescanned).
        self._changed_roots: set[str] = set()
        self._full_catch_up = False
        self._rewatch = asyncio.Event()  # the watches must be set up again
        self.unwatchable = Unwatchable(self.catalog_dir, poll_interval_ms / 1000)
        self._one_by_one = False  # folders watched one by one (not recursively), around the unwatchable ones

    @property
    def mode(self) -> str:
        """How changes are noticed: "inotify" (events), "polling", or "rescan" (the fallback)."""
        if self.scan_mode is not None:
            return "rescan"
        return "polling" if self.polling else "inotify"

    def request_rewatch(self) -> None:
        """Set the watches up again soon (a new symlinked folder, a root that came or went)."""
        self._rewatch.set()

    @property
    def rewatch_requested(self) -> bool:
        """True while the watches wait to be set up again."""
        return self._rewatch.is_set()

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until `stop` is set. After repeated failures, fall back to scanning on a timer."""
        self.suspicious_batch = await asyncio.to_thread(suspicious_batch_size)
        failures = vanished = 0
        while not stop.is_set() and self.scan_mode is None:
            started = time.monotonic()
            try:
                await self._watch(stop)
                failures = 0
            except Exception as exc:
                self.state = "restarting"
                self.live.clear()
                self._full_catch_up = True
                if time.monotonic() - started >= HEALTHY_RUN_S:
                    failures = 0
                reason = first_line(exc)
                if NOT_UTF8 in reason:  # never a failure: its folder is looked at on a timer from now on
                    found = await asyncio.to_thread(self.unwatchable.found, self.library.sources)
                    vanished = 0 if found else vanished + 1  # names that came and went: back off, each time a walk
                    if vanished and await stopped(stop, UNFOUND_NAME_PAUSES_S[min(vanished, len(UNFOUND_NAME_PAUSES_S)) - 1]):
                        break
                    continue
                if failures >= len(RESTART_DELAYS_S) or any(words in reason.lower() for words in HOPELESS):
                    self.scan_mode = reason
                    break
                delay = RESTART_DELAYS_S[failures]
                failures += 1
                logger.warning("the file watcher failed (%s); restarting in %.1f s", reason, delay)
                if await stopped(stop, delay):
                    break
        if self.scan_mode is not None and not stop.is_set():
            await self._scan_forever(stop)
        self.state = "stopped"

    async def _scan_forever(self, stop: asyncio.Event) -> None:
        interval = max(self.poll_interval_ms / 1000, MIN_SCAN_INTERVAL_S)
        logger.warning("file events are unavailable (%s); rescanning every %.1f s instead", self.scan_mode, interval)
        self.state = "running"
        self.live.set()
        while not await stopped(stop, interval):
            try:
                await self.library.reconcile()
            except Exception:
                logger.exception("a rescan failed")

    async def _watch(self, stop: asyncio.Event) -> None:
        paths = [source.path for source in self.library.sources]
        self.watched_identities = await asyncio.to_thread(lambda: {path: folder_identity(path) for path in paths})
        self.roots = outermost([path for path, identity in self.watched_identities.items() if identity is not None])
        this_run = asyncio.Event()  # ends this run: on stop, or when the watches must be set up again
        helpers = [asyncio.create_task(self._end_run_on(stop, this_run))]
        if self.unwatchable:
            helpers.append(asyncio.create_task(self.unwatchable.look(self.library.sources, self.library.paths_changed, this_run)))
        try:
            await self._watch_until(this_run)
        finally:
            for helper in helpers:
                helper.cancel()
        if self._rewatch.is_set() and not stop.is_set():
            self._rewatch.clear()
            self.live.clear()  # the next run catches up with a reconcile
            logger.info("setting up the watches again")

    async def _end_run_on(self, stop: asyncio.Event, this_run: asyncio.Event) -> None:
        await first_of(stop, self._rewatch, None)
        this_run.set()

    async def _watched_paths(self) -> tuple[list[str], bool]:
        """What to watch, and whether recursively: the roots, or every folder but the unwatchable ones."""
        if not self.unwatchable:
            return [self.catalog_dir, *self.roots], True
        left = await asyncio.to_thread(self.unwatchable.still_there)
        folders = await asyncio.to_thread(watch_folders, self.roots, left)
        return ([] if self.unwatchable.catalogs else [self.catalog_dir]) + folders, False

    async def _watch_until(self, stop: asyncio.Event) -> None:
        paths, recursive = await self._watched_paths()
        self._one_by_one = not recursive
        changes = awatch(
            *paths,
            watch_filter=self._wanted,
            debounce=self.debounce_ms,
            step=min(STEP_MS, self.debounce_ms),
            stop_event=stop,
            force_polling=self.polling,
            poll_delay_ms=self.poll_interval_ms,
            recursive=recursive,
            ignore_permission_denied=True,
        )
        pending = asyncio.ensure_future(anext(changes, None))
        poller = asyncio.create_task(self._poll_catalogs(stop)) if self.polling or self.unwatchable.catalogs else None
        try:
            while not watching(changes, pending):  # one turn of the loop: awatch sets its watches up on its first step
                await asyncio.sleep(0)
            if not self.live.is_set() and self.library.ready:  # a restart: catch up on what happened meanwhile
                roots, self._changed_roots = self._changed_roots, set()
                full, self._full_catch_up = self._full_catch_up, False
                if roots and not full:  # a volume unmounted or mounted again: look at it alone
                    await self.library.paths_changed(sorted(roots))
                elif await self.library.reconcile():
                    logger.info("the rescan found changes the file events had not shown")
            self.state = "running"
            self.live.set()
            while (batch := await pending) is not None:
                await self._handle(batch)
                pending = asyncio.ensure_future(anext(changes, None))
        finally:
            for task in (pending, poller):
                if task is not None and not task.done():
                    task.cancel()
            await changes.aclose()

    async def _poll_catalogs(self, stop: asyncio.Event) -> None:
        """When polling (or when the catalog folder cannot be watched), stat the catalog files
        ourselves: the generic poller only sees mtime changes across a second boundary, and a
        catalog edit must never go unseen."""
        paths = {name[: -len(".json")]: os.path.join(self.catalog_dir, name) for name in self.catalog_files}
        seen = {name: await asyncio.to_thread(file_signature, path) for name, path in paths.items()}
        while not stop.is_set():
            await asyncio.sleep(self.poll_interval_ms / 1000)
            for name, path in paths.items():
                signature = await asyncio.to_thread(file_signature, path)
                if signature != seen[name]:
                    seen[name] = signature
                    try:
                        await self.library.catalogs_changed([name])
                    except Exception:
                        logger.exception("reloading %s.json failed", name)

    async def _handle(self, batch: set[tuple[Change, str]]) -> None:
        catalogs: set[str] = set()
        paths: set[str] = set()
        for _change, path in batch:
            if os.path.dirname(path) == self.catalog_dir and path.endswith(".json"):
                catalogs.add(os.path.basename(path)[: -len(".json")])
            else:
                paths.add(path)
        self._look_for_lost_events(batch, paths)
        if self._one_by_one and any(change == Change.added and os.path.isdir(path) for change, path in batch):
            self.request_rewatch()  # watched one by one: a new folder needs a watch of its own
        if catalogs:
            await self.library.catalogs_changed(sorted(catalogs))  # each catalog's failure is its own (logged there)
        if paths:
            try:
                await self.library.paths_changed(paths)
            except Exception:
                logger.exception("updating presence for %d changed paths failed", len(paths))

    async def watch_roots(self, stop: asyncio.Event) -> None:
        """Notice a model folder that disappears (an unmounted volume, a deleted folder), appears (a
        late mount) or is replaced by a new folder since the watches were set up: watch again and
        rescan, instead of waiting for the periodic reconcile."""
        while not await stopped(stop, ROOT_CHECK_S):
            if self.scan_mode is not None or not self.live.is_set() or self._rewatch.is_set():
                continue  # rescanning on a timer anyway, or the watches are being set up
            try:
                await self._check_roots()
            except Exception:
                logger.exception("checking the model folders failed")

    async def _check_roots(self) -> None:
        for path, was in self.watched_identities.items():
            now = await asyncio.to_thread(folder_identity, path)
            if now != was:
                state = "is gone" if now is None else "appeared" if was is None else "was replaced"
                logger.warning("model folder %s %s; watching again and rescanning it", path, state)
                self._changed_roots.add(path)
                self.request_rewatch()  # the next run of the watches rescans it once they are set

    async def watch_for_pauses(self, stop: asyncio.Event) -> None:
        """Notice that the whole process did not run for a while (stopped, swapped out, suspended):
        the kernel's event queue may have overflowed meanwhile, and nothing else would say so."""
        while True:
            before = boot_clock()
            if await stopped(stop, PAUSE_TICK_S):
                return
            paused = boot_clock() - before - PAUSE_TICK_S
            if paused >= PAUSE_S and not self.polling and self.scan_mode is None and self.live.is_set():
                self._events_lost(f"the service did not run for {paused:.1f} s (a stopped, swapped-out or suspended process)")

    def _look_for_lost_events(self, batch: set[tuple[Change, str]], paths: set[str]) -> None:
        """Rescan soon when events may have been lost: a batch as large as what an overflow of the
        inotify queue leaves, or a root (or a folder right under one) removed or created."""
        if len(batch) >= self.suspicious_batch and not self.polling:
            self._events_lost(f"{len(batch)} changes arrived at once, as many as an overflow of the kernel's queue leaves")
            return
        roots = set(self.roots)
        for change, path in batch:
            if path in roots and (change == Change.deleted or not os.path.isdir(path)):  # its watch went with it
                logger.warning("model folder %s was removed; watching again and rescanning", path)
                self._changed_roots.add(path)
                self.request_rewatch()
                return
        whole_roots = {source.path for source in self.library.sources if not source.logical} & roots
        for path in paths:
            if os.path.dirname(path) in whole_roots:
                created = os.path.isdir(path)
                if created or self.library.presence.holds_folder(path):  # not for a loose file
                    logger.info("model folder %s was %s; rescanning", path, "created" if created else "removed")
                    self.library.request_rescan()
                    return

    def _events_lost(self, why: str) -> None:
        """Set the watches up again and rescan every root: events may have been lost, and with
        them the creation of folders that therefore have no watch."""
        self._full_catch_up = True
        if self._rewatch.is_set():
            return  # already on its way
        logger.warning(
            "file events may have been lost: %s; watchfiles does not report an overflow, so the watches are set up again and every model folder is rescanned",
            why,
        )
        self._rewatch.set()

    def _wanted(self, _change: Change, path: str) -> bool:
        directory, name = os.path.split(path)
        if directory == self.catalog_dir:
            return name in self.catalog_files
        # Everything under a model root counts, download-like names included: a folder named
        # `pack.tmp` renamed to `pack` must be seen; probing decides what is complete.
        return not path.startswith(self.catalog_dir + os.sep) or any(path.startswith(r + os.sep) for r in self.roots)

