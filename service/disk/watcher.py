"""The watcher: keeps the library true while files and catalogs change on disk.

It watches the catalog *folder* (an atomic replace of a watched file kills a watch on
it) and every model root recursively. Changes are looked at again when handled, so the
kind of event and its order do not matter. A periodic full reconcile catches whatever
the events missed (network volumes, symlinked folders, a watcher restart).

Lost events are looked for, not waited out. The kernel queues at most
`max_queued_events` inotify events and drops the rest; notify (the Rust crate under
watchfiles) turns the kernel's IN_Q_OVERFLOW into an event with its `Rescan` flag and no
path, and watchfiles drops every event without a path, so an overflow is never reported
(watchfiles 1.3.0; samuelcolvin/watchfiles#348). What an overflow leaves behind is
watched for instead: a batch as large as what survives one, and a stall of the whole
process (notify reads the queue in its own thread, so only a stopped, swapped-out or
suspended process lets the queue fill). Either way the watches are set up again (folders
made while events were lost have none) and every root is rescanned.

A file or folder name that is not UTF-8 ends watchfiles' watch for good (it cannot turn the
name into a str; samuelcolvin/watchfiles, `Unable to decode path`). The folder that holds
it is then looked at on a timer instead (`unwatchable`), named in one warning, and every
other folder is watched one by one, without it; nothing else changes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

from watchfiles import Change, awatch

from ..catalog.document import CATALOG_NAMES
from ..library.library import Library
from .scan import Scan, scan_sources, scan_subtree, watch_folders

logger = logging.getLogger(__name__)

CATALOG_FILES = frozenset(f"{name}.json" for name in CATALOG_NAMES)
STEP_MS = 50  # quiet time that ends a batch of changes
QUEUE_LIMIT_FILE = "/proc/sys/fs/inotify/max_queued_events"
DEFAULT_QUEUE_LIMIT = 16_384
# What survives an overflow is a full queue: one distinct change per 1-5 events (a file
# written anew costs CREATE, OPEN, MODIFY, CLOSE_WRITE), so at least a fifth of the queue.
# A batch of an eighth of it, and never under this, may be one.
SMALLEST_SUSPICIOUS_BATCH = 1000
PAUSE_TICK_S = 1.0
PAUSE_S = 3.0  # the process did not run for this long: the kernel's queue may have overflowed
ROOT_CHECK_S = 2.0  # how often roots are checked for disappearing or appearing
RESTART_DELAYS_S = (0.5, 1, 2)
MIN_SCAN_INTERVAL_S = 2.0
ASKED_RECONCILE_DELAY_S = 0.2
# Failures that a restart cannot mend: fall back to scanning at once.
HOPELESS = ("file system loop", "watch limit", "no space left on device")
NOT_UTF8 = "Unable to decode path"  # watchfiles' error for a name that is not UTF-8
UNFOUND_NAME_LIMIT = 3  # such errors in a row whose folder cannot be found are failures like any other


class Watcher:
    """Runs watchfiles over the catalog folder and the model roots, and restarts it if it dies."""

    def __init__(
        self,
        library: Library,
        catalog_dir: Path,
        *,
        debounce_ms: int,
        polling: bool,
        poll_interval_ms: int,
    ) -> None:
        self.library = library
        self.catalog_dir = str(catalog_dir)
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
        # Folders holding a name that is not UTF-8: looked at on a timer, since a watch on them
        # would end at the first event about that name.
        self.unwatchable: set[str] = set()
        self._unfound_names = 0
        self._one_by_one = False  # folders watched one by one (not recursively), around the unwatchable ones

    @property
    def mode(self) -> str:
        """How changes are noticed: "inotify" (events), "polling", or "rescan" (the fallback)."""
        if self.scan_mode is not None:
            return "rescan"
        return "polling" if self.polling else "inotify"

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until `stop` is set. After repeated failures, fall back to scanning on a timer."""
        self.suspicious_batch = await asyncio.to_thread(suspicious_batch_size)
        failures = 0
        while not stop.is_set() and self.scan_mode is None:
            try:
                await self._watch(stop)
                failures = 0
            except Exception as exc:
                self.state = "restarting"
                self.live.clear()
                self._full_catch_up = True
                if NOT_UTF8 in _first_line(exc) and await self._stop_watching_names_not_utf8():
                    continue
                reason = _first_line(exc).lower()
                if failures >= len(RESTART_DELAYS_S) or any(words in reason for words in HOPELESS):
                    self.scan_mode = _first_line(exc)
                    break
                delay = RESTART_DELAYS_S[failures]
                failures += 1
                logger.warning("the file watcher failed (%s); restarting in %.1f s", _first_line(exc), delay)
                if await _stopped(stop, delay):
                    break
        if self.scan_mode is not None and not stop.is_set():
            await self._scan_forever(stop)
        self.state = "stopped"

    async def _scan_forever(self, stop: asyncio.Event) -> None:
        interval = max(self.poll_interval_ms / 1000, MIN_SCAN_INTERVAL_S)
        logger.warning("file events are unavailable (%s); rescanning every %.1f s instead", self.scan_mode, interval)
        self.state = "running"
        self.live.set()
        while not await _stopped(stop, interval):
            try:
                await self.library.reconcile()
            except Exception:
                logger.exception("a rescan failed")

    async def _stop_watching_names_not_utf8(self) -> bool:
        """After watchfiles gave up on a name that is not UTF-8: find the folders holding such
        names and look at them on a timer from now on. False when none is found, again and again."""
        scan = await asyncio.to_thread(scan_sources, self.library.sources)
        found = scan.undecodable - self.unwatchable
        if not found:
            self._unfound_names += 1
            return self._unfound_names < UNFOUND_NAME_LIMIT
        self._unfound_names = 0
        interval = self._unwatchable_interval()
        for folder in sorted(found):
            logger.warning(
                "model folder %s holds a name that is not UTF-8, which the file watcher cannot report; it is looked at every %.1f s instead",
                folder,
                interval,
            )
        self.unwatchable |= found
        return True

    def _unwatchable_interval(self) -> float:
        return max(self.poll_interval_ms / 1000, 1.0)

    async def _watch(self, stop: asyncio.Event) -> None:
        paths = [source.path for source in self.library.sources]
        self.watched_identities = await asyncio.to_thread(lambda: {path: _folder_identity(path) for path in paths})
        self.roots = _outermost([path for path, identity in self.watched_identities.items() if identity is not None])
        this_run = asyncio.Event()  # ends this run: on stop, or when the watches must be set up again
        relay = asyncio.create_task(self._end_run_on(stop, this_run))
        looker = asyncio.create_task(self._look_at_unwatchable(this_run)) if self.unwatchable else None
        try:
            await self._watch_until(this_run)
        finally:
            relay.cancel()
            if looker is not None:
                looker.cancel()
        if self.library.rewatch_wanted.is_set() and not stop.is_set():
            self.library.rewatch_wanted.clear()
            self.live.clear()  # the next run catches up with a reconcile
            logger.info("setting up the watches again")

    async def _end_run_on(self, stop: asyncio.Event, this_run: asyncio.Event) -> None:
        await _first(stop, self.library.rewatch_wanted, None)
        this_run.set()

    async def _look_at_unwatchable(self, stop: asyncio.Event) -> None:
        """Look at the folders that cannot be watched on a timer; tell the library when one changed."""
        seen: dict[str, Scan] = {}
        while True:  # the first look always tells: this run's watches may have come after a change
            for folder in sorted(self.unwatchable):
                scan = await asyncio.to_thread(scan_subtree, self.library.sources, folder)
                before = seen.get(folder)
                seen[folder] = scan
                if before is None or (before.dirs, before.partials) != (scan.dirs, scan.partials):
                    try:
                        await self.library.paths_changed([folder])
                    except Exception:
                        logger.exception("looking at model folder %s failed", folder)
            if await _stopped(stop, self._unwatchable_interval()):
                return

    async def _watched_paths(self) -> tuple[list[str], bool]:
        """What to watch, and whether recursively: the roots, or every folder but the unwatchable ones."""
        if not self.unwatchable:
            return [self.catalog_dir, *self.roots], True
        self.unwatchable = {folder for folder in self.unwatchable if os.path.isdir(folder)}
        folders = await asyncio.to_thread(watch_folders, self.roots, self.unwatchable)
        return [self.catalog_dir, *folders], False

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
        poller = asyncio.create_task(self._poll_catalogs(stop)) if self.polling else None
        try:
            # awatch sets up its watches synchronously, then awaits its first batch: once the
            # generator is suspended there, nothing that happens on disk can be missed.
            while changes.ag_await is None and not pending.done():
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
        """In polling mode, stat the two catalog files ourselves: the generic poller only sees
        mtime changes across a second boundary, and a catalog edit must never go unseen."""
        paths = {name: os.path.join(self.catalog_dir, f"{name}.json") for name in CATALOG_NAMES}
        seen = {name: await asyncio.to_thread(_signature, path) for name, path in paths.items()}
        while not stop.is_set():
            await asyncio.sleep(self.poll_interval_ms / 1000)
            for name, path in paths.items():
                signature = await asyncio.to_thread(_signature, path)
                if signature != seen[name]:
                    seen[name] = signature
                    try:
                        await self.library.saves_settled()
                        await self.library.reload_catalog(name)
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
            self.library.rewatch_wanted.set()  # watched one by one: a new folder needs a watch of its own
        if catalogs:
            await self.library.saves_settled()
        for name in sorted(catalogs):
            try:
                await self.library.reload_catalog(name)
            except Exception:
                logger.exception("reloading %s.json failed", name)
        if paths:
            try:
                await self.library.paths_changed(paths)
            except Exception:
                logger.exception("updating presence for %d changed paths failed", len(paths))

    async def watch_roots(self, stop: asyncio.Event) -> None:
        """Notice a model folder that disappears (an unmounted volume, a deleted folder), appears (a
        late mount) or is replaced by a new folder since the watches were set up: watch again and
        rescan, instead of waiting for the periodic reconcile."""
        while not await _stopped(stop, ROOT_CHECK_S):
            if self.scan_mode is not None or not self.live.is_set() or self.library.rewatch_wanted.is_set():
                continue  # rescanning on a timer anyway, or the watches are being set up
            try:
                await self._check_roots()
            except Exception:
                logger.exception("checking the model folders failed")

    async def _check_roots(self) -> None:
        for path, was in self.watched_identities.items():
            now = await asyncio.to_thread(_folder_identity, path)
            if now != was:
                state = "is gone" if now is None else "appeared" if was is None else "was replaced"
                logger.warning("model folder %s %s; watching again and rescanning it", path, state)
                self._changed_roots.add(path)
                self.library.rewatch_wanted.set()  # the next run of the watches rescans it once they are set

    async def watch_for_pauses(self, stop: asyncio.Event) -> None:
        """Notice that the whole process did not run for a while (stopped, swapped out, suspended):
        the kernel's event queue may have overflowed meanwhile, and nothing else would say so."""
        while True:
            before = _clock()
            if await _stopped(stop, PAUSE_TICK_S):
                return
            paused = _clock() - before - PAUSE_TICK_S
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
                self.library.rewatch_wanted.set()
                return
        whole_roots = {source.path for source in self.library.sources if not source.logical} & roots
        for path in paths:
            if os.path.dirname(path) in whole_roots:
                created = os.path.isdir(path)
                if created or self.library.presence.holds_folder(path):  # not for a loose file
                    logger.info("model folder %s was %s; rescanning", path, "created" if created else "removed")
                    self.library.reconcile_wanted.set()
                    return

    def _events_lost(self, why: str) -> None:
        """Set the watches up again and rescan every root: events may have been lost, and with
        them the creation of folders that therefore have no watch."""
        self._full_catch_up = True
        if self.library.rewatch_wanted.is_set():
            return  # already on its way
        logger.warning(
            "file events may have been lost: %s; watchfiles does not report an overflow, so the watches are set up again and every model folder is rescanned",
            why,
        )
        self.library.rewatch_wanted.set()

    def _wanted(self, _change: Change, path: str) -> bool:
        directory, name = os.path.split(path)
        if directory == self.catalog_dir:
            return name in CATALOG_FILES
        # Everything under a model root counts, download-like names included: a folder named
        # `pack.tmp` renamed to `pack` must be seen; probing decides what is complete.
        return not path.startswith(self.catalog_dir + os.sep) or any(path.startswith(r + os.sep) for r in self.roots)


def _outermost(paths: list[str]) -> list[str]:
    """Paths not inside another of them (a recursive watch already covers those)."""
    unique = sorted(set(paths))
    return [p for p in unique if not any(p != q and p.startswith(q.rstrip(os.sep) + os.sep) for q in unique)]


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):  # watchfiles raises its errors inside a task group
        return "; ".join(_first_line(inner) for inner in exc.exceptions)
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


async def _first(stop: asyncio.Event, wanted: asyncio.Event, seconds: float | None) -> bool:
    """Wait for `stop`, `wanted` or the time; True only if `stop` was set."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wanted.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return stop.is_set()


async def _stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds`; True if `stop` was set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
        return True
    except TimeoutError:
        return False


def _signature(path: str) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


async def reconcile_forever(library: Library, interval_s: float, stop: asyncio.Event) -> None:
    """Rescan every root at a fixed interval, and soon after the library asks for it, until `stop`."""
    while not await _first(stop, library.reconcile_wanted, interval_s):
        if library.reconcile_wanted.is_set():
            if await _stopped(stop, ASKED_RECONCILE_DELAY_S):  # let a burst of events settle
                return
            library.reconcile_wanted.clear()
        try:
            if await library.reconcile():
                logger.info("reconcile found changes the watcher had missed")
        except Exception:
            logger.exception("the periodic reconcile failed")


def suspicious_batch_size(limit_file: str = QUEUE_LIMIT_FILE) -> int:
    """Distinct changes in one batch that may be what an overflow of the inotify queue left."""
    try:
        with open(limit_file, "rb") as handle:
            limit = int(handle.read())
    except (OSError, ValueError):
        limit = DEFAULT_QUEUE_LIMIT
    return max(SMALLEST_SUSPICIOUS_BATCH, limit // 8)


def _clock() -> float:
    """Seconds on a clock that runs while the process is stopped and while the machine sleeps."""
    return time.clock_gettime(time.CLOCK_BOOTTIME) if hasattr(time, "CLOCK_BOOTTIME") else time.monotonic()


def _folder_identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of a folder, None when it is not one (gone, unmounted)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino) if os.path.isdir(path) else None
