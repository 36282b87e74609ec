"""Knowing every model on disk: hash complete files in the background, ask CivitAI what they are,
and tell the map.

One file is hashed at a time, in a worker thread of its own at a lower CPU priority that reads
in large blocks; nothing of it runs on the event loop. A file is hashed once: the
store keys its SHA256 by (device, inode, size, mtime_ns). New files are hashed once they have
not changed for `settle_s`. Hashes are identified 100 a call through the shared rate-limit gate;
a hash CivitAI does not know is asked again after a day.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

from .. import workers
from ..civitai.client import CivitaiClient
from ..civitai.lookup import BATCH, Identity, look_up
from ..disk.mounts import network_paths
from ..disk.presence import Presence
from ..disk.watching import first_of, stopped
from ..errors import ServiceError
from ..map.entry import MapEntry
from ..map.index import CivitaiIndex
from . import survey
from .digest import Cancelled, FileChanged, sha256_of
from .disk_versions import DiskVersions
from .hints import Hints
from .progress import REPORT_S, HashProgress, OnDisk, duration, stat_all
from .store import STORE_NAME, FileKey, HashStore

logger = logging.getLogger(__name__)

T = TypeVar("T")
LOOKUP_BACKOFF_S = (60.0, 300.0, 1800.0, 3600.0)  # after a failed lookup (CivitAI down, a bad answer)
RECHECK_S = 3600.0  # unknown hashes whose day is up are looked at this often, with no file event
RETRY_AFTER_FAILURE_S = 60.0  # after an unexpected failure of a pass
STORE_RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)  # pauses between attempts to open a store that cannot be opened
FLUSH_S = 1.0  # hashed files are kept and shown at least this often (and every BATCH files)


class HashedLibrary(Protocol):
    """What the hasher reads of the library and tells it (the library is one)."""

    ready: bool
    presence: Presence
    index: CivitaiIndex

    async def set_disk_entries(self, entries: list[MapEntry]) -> bool: ...


class Hasher:
    """The background job, and what it knows. Owned by the event loop."""

    def __init__(self, library: HashedLibrary, client: CivitaiClient, catalog_dir: Path, *, settle_s: float, show_uncatalogued: bool) -> None:
        self.library = library
        self.client = client
        self.store = HashStore(catalog_dir / STORE_NAME)
        self.known = library.index.hashes
        self.settle_s = settle_s
        self.disk = DiskVersions(library.set_disk_entries, shown=show_uncatalogued)
        self.progress = HashProgress()
        self.identities: dict[str, Identity] = {}  # of the hashes of files on disk now
        self._wanted = asyncio.Event()
        self._everything = True  # the next pass looks at every file, not only the named ones
        self._names: set[str] = set()
        self._lookup_failures = 0
        self._lookup_after = 0.0
        self._db = ThreadPoolExecutor(1, thread_name_prefix="hash-store")
        self._reader = workers.background_threads(1, "hashing")
        self._cancel = threading.Event()  # set at stop: the file being hashed is left at once
        self.hints = Hints()  # what sidecars say of files not hashed yet

    def files_touched(self, names: Iterable[str] | None) -> None:
        """Presence saw these file names change (None: a full rescan ran); hash what is new."""
        if names is None:
            self._everything = True
        else:
            self._names.update(names)
        self._wanted.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Open the store, then hash and identify whatever presence finds, until `stop`."""
        try:
            # SQLite's WAL needs shared memory that network filesystems do not give: a rollback journal there.
            self.store.wal = not await asyncio.to_thread(network_paths, [str(self.store.path.parent)])
            if not await self._open_store(stop):
                return
            while not self.library.ready:
                if await stopped(stop, 0.1):
                    return
            while not stop.is_set():
                try:
                    wait = await self._pass(stop)
                except Exception as exc:  # a full disk, a store gone bad: say so, and try again later
                    logger.exception("hashing and identifying files failed; trying again in %s", duration(RETRY_AFTER_FAILURE_S))
                    self.progress.last_error = f"hashing failed: {type(exc).__name__}: {exc}"
                    self._everything, wait = True, RETRY_AFTER_FAILURE_S
                self.progress.state = "idle"
                await first_of(stop, self._wanted, wait)
                if wait >= RECHECK_S and not self._wanted.is_set():
                    self._everything = True  # the hourly look at every file: previews and sidecars no event named
                if not stop.is_set():
                    await stopped(stop, 0.2)  # a burst of file events arrives as several batches
        finally:
            self._cancel.set()
            self._reader.shutdown(wait=False, cancel_futures=True)
            with contextlib.suppress(Exception):
                await self._in_db(self.store.close)
            self._db.shutdown(wait=False)

    async def _open_store(self, stop: asyncio.Event) -> bool:
        """Open the store, trying again with growing pauses while it cannot be (another process
        holds it, a folder stands in its place); False when stopped first."""
        for attempt in itertools.count():  # pragma: no branch (returns from inside)
            try:
                await self._in_db(self.store.open)
                if attempt:
                    logger.info("the hash store opens now; hashing starts")
                self.progress.last_error = None
                return True
            except (sqlite3.Error, OSError) as exc:
                pause = STORE_RETRY_S[min(attempt, len(STORE_RETRY_S) - 1)]
                if attempt == 0:
                    logger.error("the hash store %s cannot be opened (%s); trying again every while, up to every %s", self.store.path, exc, duration(STORE_RETRY_S[-1]))
                self.progress.state = "failed"
                self.progress.last_error = f"the hash store cannot be opened: {exc}; trying again in {duration(pause)}"
            if await stopped(stop, pause):
                return False
        raise AssertionError("unreachable")

    async def _pass(self, stop: asyncio.Event) -> float:
        """Look at the files presence knows (all, or those with changed names); hash, identify, tell
        the map. Returns how long to wait before the next pass without a file event."""
        self._wanted.clear()
        everything, names = self._everything, self._names
        self._everything, self._names = False, set()
        presence = self.library.presence
        # A pass after file events looks at the files of the names they named, and no others:
        # its cost is theirs, not the library's.
        wanted = presence.files() if everything else presence.files_named(names)
        keys, gone = await asyncio.to_thread(stat_all, [path for path, _ in wanted])
        on_disk = {path for path, _ in wanted}
        looked_at = list(self.known.by_path) if everything else self.known.by_path.named(names)
        stale = [path for path in looked_at if path not in on_disk or path in gone]
        hashes = await self._in_db(self.store.known_hashes, keys)
        now = time.time()
        todo, unsettled = [], []
        for key in keys:
            if key.path not in hashes:
                (todo if now - key.mtime_ns / 1e9 >= self.settle_s else unsettled).append(key)
        new_hints, changed_paths = await self.hints.look_beside(keys, todo, on_disk, self.library.index, None if everything else names)
        changed_hashes = self._take_known(stale, keys, hashes, changed_paths)
        self.hints.take_back_identities(self.known, self.identities, changed_hashes)
        await self._take_hint_identities()
        # Only hashes whose identity is not loaded yet, or whose files moved: a pass over an
        # unchanged library of 100,000 files costs the loop almost nothing.
        await self._learn_identities(self.known.by_hash.keys() - self.identities.keys(), changed_paths, changed_hashes)
        if unsettled:
            self._names.update(os.path.basename(key.path) for key in unsettled)
        if new_hints:  # shown before any byte is hashed: identified by the sidecars, and by CivitAI for bare hashes
            await self._identify(stop)
            await self.disk.publish(now=True)
            self._count()
        await self._hash_all(todo, stop)
        await self._identify(stop)
        if self.disk.dirty:
            await self.disk.publish(now=True)
        self._count()
        waits = [RECHECK_S]
        if unsettled:
            waits.append(self.settle_s)
        if self.progress.waiting_for_lookup:
            waits.append(max(1.0, self._lookup_after - time.time()))
        return min(waits)

    def _take_known(self, stale: list[str], keys: list[FileKey], hashes: dict[str, str], changed_paths: set[str]) -> set[str]:
        """Forget the files gone; set each file's hash as the store knows it, else as its sidecar
        says. Notes the paths that moved; returns the hashes that did."""
        changed_hashes: set[str] = set()
        for path in stale:
            old = self.known.drop_path(path)
            if old is not None:
                changed_paths.add(path)
                changed_hashes.add(old)
        for key in keys:
            sha256 = hashes.get(key.path)
            if sha256 is None and (sha256 := self.hints.sha256_of(key)) is not None:
                self.known.hinted.add(key.path)  # a sidecar's word: no `hash_mismatch` is read from it
            else:
                self.known.hinted.discard(key.path)
            before = self.known.by_path.get(key.path)
            if sha256 == before:
                continue
            if sha256 is None:
                self.known.drop_path(key.path)  # changed since it was hashed
            else:
                self.known.set_hash(key.path, sha256)
            changed_paths.add(key.path)
            changed_hashes.update(h for h in (before, sha256) if h is not None)
        return changed_hashes

    async def _take_hint_identities(self) -> None:
        """The versions sidecars name, for hashes CivitAI has not named one for (what the store
        knows of them is loaded first)."""
        missing = sorted({hint.sha256 for _path, hint in self.hints.identities()} - self.identities.keys())
        if missing:
            self.identities.update(await self._in_db(self.store.identities, missing))
        self.hints.lend_identities(self.known, self.identities)

    async def _hash_all(self, todo: list[FileKey], stop: asyncio.Event) -> None:
        if not todo:
            return
        progress = self.progress
        progress.state = "hashing"
        progress.files_to_hash = len(todo)
        progress.bytes_to_hash = sum(key.size for key in todo)
        progress.bytes_hashed = 0
        confirming = sum(1 for key in todo if key.path in self.hints)
        logger.info(
            "hashing %d model files (%.1f GB) to identify them%s", len(todo), progress.bytes_to_hash / 1e9,
            f" ({confirming} of them to confirm what their sidecars say, last)" if confirming else "",
        )
        started = time.monotonic()
        reported = flushed = started
        counter = [0]
        done_before = 0
        hashed: list[tuple[FileKey, str]] = []
        for key in sorted(todo, key=lambda k: (k.path in self.hints, k.path)):  # files a sidecar identified last
            if stop.is_set():
                break
            try:
                job = asyncio.get_running_loop().run_in_executor(self._reader, sha256_of, key, counter, self._cancel)
                job.add_done_callback(_retrieved)  # left unawaited when the service stops mid-file
                while True:
                    try:
                        sha256 = await asyncio.wait_for(asyncio.shield(job), REPORT_S)
                        break
                    except TimeoutError:
                        reported = self.progress.report(started, done_before + counter[0], reported)
            except FileChanged:
                self._names.add(os.path.basename(key.path))  # still being written: later
                continue
            except Cancelled:
                break
            except OSError as exc:
                logger.warning("cannot hash %s: %s", key.path, exc.strerror or exc)
                continue
            done_before += key.size
            counter[0] = 0
            progress.files_to_hash -= 1
            hashed.append((key, sha256))
            reported = self.progress.report(started, done_before, reported)
            # Many small files: keep them, tell the map and ask CivitAI a batch at a time, not file by file.
            if len(hashed) >= BATCH or time.monotonic() - flushed >= FLUSH_S:
                await self._take_hashed(hashed, stop)
                hashed, flushed = [], time.monotonic()
        await self._take_hashed(hashed, stop)
        elapsed = time.monotonic() - started
        logger.info(
            "hashed %d files (%.1f GB) in %.1f s (%.0f MB/s)",
            len(todo) - progress.files_to_hash,
            done_before / 1e9,
            elapsed,
            done_before / 1e6 / elapsed if elapsed > 0 else 0.0,
        )
        progress.files_to_hash = 0
        progress.bytes_to_hash = 0
        progress.rate_mb_s = progress.seconds_left = None

    async def _take_hashed(self, hashed: list[tuple[FileKey, str]], stop: asyncio.Event) -> None:
        """Keep newly hashed files in the store, tell the map, and identify once a batch is waiting."""
        if not hashed:
            return
        await self._in_db(self.store.remember_hashes, hashed)
        changed: set[str] = set()
        confirmed: list[Identity] = []
        for key, sha256 in hashed:
            hint = self.hints.hashed(key, sha256)
            if hint is not None and hint.identity is not None and self.identities.get(sha256) is hint.identity:
                confirmed.append(dataclasses.replace(hint.identity, checked_at=time.time()))
                self.hints.lent.discard(sha256)
            old = self.known.set_hash(key.path, sha256)
            self.known.hinted.discard(key.path)
            changed.update(h for h in (old, sha256) if h is not None)
        if confirmed:  # the bytes are what the sidecar said: its version is kept, as CivitAI's answers are
            await self._in_db(self.store.remember_identities, confirmed)
            self.identities.update((identity.sha256, identity) for identity in confirmed)
        self.hints.take_back_identities(self.known, self.identities, changed)
        versions = {identity.version_id for identity in confirmed if identity.version_id is not None}
        if versions:
            self._refresh_disk_versions(versions)
        self.progress.hashed_this_run += len(hashed)
        await self._learn_identities({sha256 for _key, sha256 in hashed}, {key.path for key, _sha in hashed}, changed)
        self.progress.waiting_for_lookup += sum(1 for _key, sha256 in hashed if sha256 not in self.identities)
        if self.progress.waiting_for_lookup >= BATCH:  # identify as hashing goes: a batch at a time
            await self._identify(stop)
            self.progress.state = "hashing"

    async def _learn_identities(self, hashes: set[str], paths: set[str], changed: set[str]) -> None:
        """Load what the store knows of these hashes, and tell the map what moved."""
        new = hashes - self.identities.keys()
        if new:
            self.identities.update(await self._in_db(self.store.identities, sorted(new)))
        versions = self._apply_versions(hashes | changed)
        if paths or changed or versions:
            self.library.index.hashes_changed(paths, changed, versions)
        # A file of an identified version came, went or moved: the versions shown from disk may change.
        touched = versions | {v for sha256 in changed if (v := self.known.version_of.get(sha256)) is not None}
        if touched:
            self._refresh_disk_versions(touched)
            await self.disk.publish()

    def _apply_versions(self, hashes: Iterable[str]) -> set[int]:
        moved: set[int] = set()
        for sha256 in hashes:
            identity = self.identities.get(sha256) if sha256 in self.known.by_hash else None
            old = self.known.version_of.get(sha256)
            version_id = identity.version_id if identity is not None else None
            if self.known.set_version(sha256, version_id):
                moved.update(v for v in (old, version_id) if v is not None)
        return moved

    async def _identify(self, stop: asyncio.Event) -> None:
        """Ask CivitAI about hashes never asked, and unknown ones whose day is up; 100 a call."""
        now = time.time()
        pending = sorted(
            sha256
            for sha256 in self.known.by_hash
            if (identity := self.identities.get(sha256)) is None or (not identity.known and (identity.retry_at or 0) <= now)
        )
        self.progress.waiting_for_lookup = len(pending)
        if not pending or now < self._lookup_after:
            return
        self.progress.state = "identifying"
        for start in range(0, len(pending), BATCH):
            if stop.is_set():
                return
            batch = pending[start : start + BATCH]
            try:
                found, calls = await look_up(self.client, batch)
            except ServiceError as exc:
                delay = LOOKUP_BACKOFF_S[min(self._lookup_failures, len(LOOKUP_BACKOFF_S) - 1)]
                self._lookup_failures += 1
                self._lookup_after = time.time() + delay
                self.progress.last_error = exc.detail
                logger.warning("identifying files by hash failed: %s; trying again in %s", exc.detail, duration(delay))
                return
            self._lookup_failures = 0
            self.progress.last_error = None
            self.progress.civitai_calls += calls
            await self._in_db(self.store.remember_identities, list(found.values()))
            self.identities.update(found)
            self.progress.waiting_for_lookup = max(0, self.progress.waiting_for_lookup - len(batch))
            named = sum(1 for identity in found.values() if identity.known)
            logger.info("identified %d of %d files by hash on CivitAI (%d call%s)", named, len(batch), calls, "" if calls == 1 else "s")
            versions = self._apply_versions(found)
            paths = {path for sha256 in found for path in self.known.by_hash.get(sha256, ())}
            self.library.index.hashes_changed(paths, set(found), versions)
            if versions:
                self._refresh_disk_versions(versions)
                await self.disk.publish()

    def on_disk(self) -> list[OnDisk]:
        """Complete files identified as CivitAI versions (by their bytes or a sidecar), in path order."""
        return survey.identified_files(self.known, self.identities, self.library.presence)

    def not_identified(self) -> tuple[list[dict[str, str]], int]:
        """Files on disk no version is known for, by name (the first MAX_LISTED), and how many."""
        return survey.unidentified_files(self.known, self.identities, self.library.presence)

    async def duplicates(self) -> dict[str, Any]:
        """Files whose bytes are kept in more than one place, the most space wasted first."""
        return await survey.duplicates(self.known, self.identities, self.library.presence)

    def _refresh_disk_versions(self, versions: Iterable[int]) -> None:
        self.disk.refresh(versions, self.known, self.identities, self.library.presence, self.hints)

    def _count(self) -> None:
        self.progress.count(len(self.library.presence), self.known.by_path, self.known.by_hash, self.identities, len(self.hints))
        self.progress.sidecars_caught = self.hints.caught

    async def _in_db(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db, function, *args)


def _retrieved(job: asyncio.Future[Any]) -> None:
    if not job.cancelled():
        job.exception()
