"""Durable, lock-respecting writes of catalog files.

A write takes the catalog's sidecar lock (`.<name>.lock`, never the data file: a replace
swaps the inode), re-reads the file under it, applies the change to what is on disk now,
writes a temp file in the same folder, fsyncs it, checks the file still holds what was
read (programs that take no lock edit it too), swaps it in, and fsyncs the folder. The
blocking parts run in a worker thread; the caller keeps this process's writers in line
(one asyncio lock) so they do not hold worker threads waiting on each other.

On Linux the swap is `renameat2(RENAME_EXCHANGE)`: it hands back the file it displaced, so
a save by another program that landed between the check and the swap is seen, put back,
and the change applied again on top of it. Where the filesystem refuses the flag, the
check alone guards (a save landing in that window of microseconds can then be lost).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..disk.files import (
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    file_stamp,
    fsync_folder,
    rename_with,
)
from ..errors import Unavailable
from .codec import (
    CatalogFormatError,
    CatalogUnwritable,
    digest,
    file_digest,
    parse_catalog,
    serialize_catalog,
    write_catalog,
)
from .copying import Source, SourceChanged
from .document import Doc, empty_catalog, stamp
from .text import Spliced, StaleText, Text, Unsplittable, cut, spliced_doc

logger = logging.getLogger(__name__)

LOCK_TIMEOUT_S = 10.0
TEMP_PREFIX = ".tmp-"
# A catalog that does not parse may be half-written by a program that saves in place (open
# 'w' + dump): read it again, backing off, for about a second before calling it unparsable.
UNPARSABLE_RETRY_S = (0.02, 0.05, 0.1, 0.2, 0.3, 0.35)
UNPARSABLE_WHILE_CHANGING_S = 10.0
STREAM_BYTES = 16 * 1024 * 1024  # catalogs larger than this are written piece by piece
QUIET_NS = 50_000_000  # by the filesystem's clock: a file untouched this long is "quiet" (see CatalogStore._swap_in)


class StaleRead(Exception):
    """The file changed between our read and our replace; the change must be applied again."""


@dataclass(slots=True)
class Reading:
    """A catalog as read under its lock: the digest of its bytes (None when the file is absent),
    the doc, and which file it was. The bytes themselves are not kept: a huge catalog is then
    held once, as its document.

    A spliced reading's doc holds only the entries its plan asked about; the rest are runs of
    the file, still open as `source`, that a write copies (`close` it when done)."""

    digest: str | None
    doc: Doc
    identity: tuple[int, int] | None = None  # (device, inode) of the file read
    size: int = 0  # bytes read
    seen: tuple[int, int, int] | None = None  # (size, mtime, ctime) when read: a save in place moves them
    source: int | None = None  # the open file a spliced doc's runs are copied from
    spliced: Spliced | None = None
    text: Text | None = None  # the cut the spliced doc was made from

    def close(self) -> None:
        """Let go of the source file, if any."""
        if self.source is not None:
            os.close(self.source)
            self.source = None


@dataclass(frozen=True, slots=True)
class Written:
    digest: str
    size: int = 0
    outline: list[Any] | None = None  # a spliced doc's pieces as written (see `write_catalog`)


class CatalogStore:
    """One catalog file on disk and the only way this service changes it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.stem
        self.lock_path = path.with_name(f".{path.name}.lock")
        self._lock_fd: int | None = None  # while the lock is held

    def ensure_exists(self) -> bool:
        """Create the file as an empty catalog when missing; True if created."""
        with self.locked():
            if self.path.exists():
                return False
            self._replace(empty_catalog(), expected=None)
            return True

    @contextlib.contextmanager
    def locked(self, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
        """Hold the sidecar lock (blocking; call from a worker thread). Temp files left by a
        writer that was killed mid-save are removed once the lock is ours."""
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() > deadline:
                        raise Unavailable(
                            f"{self.name}.json is locked by another writer; try again shortly.",
                            code="catalog_locked",
                            retry_after=2,
                        ) from None
                    time.sleep(0.02)
            self._remove_stale_temps()
            self._lock_fd = fd
            yield
        finally:
            self._lock_fd = None
            os.close(fd)  # closing the descriptor releases the lock

    def read(self) -> Reading:
        """Read and parse the file; a file that does not parse is never written over.

        One that does not parse is read again for about a second first: a program saving it
        in place may be half-way through. One that keeps changing is read again for as long as
        it does (up to UNPARSABLE_WHILE_CHANGING_S): a program saving in place many times a
        second leaves it half-written most of the time. One that stays as it is does not parse.
        """
        delays = iter(UNPARSABLE_RETRY_S)
        give_up_at = time.monotonic() + UNPARSABLE_WHILE_CHANGING_S
        before: tuple[int, int, int] | None = None
        while True:
            try:
                with open(self.path, "rb") as handle:
                    stat = os.fstat(handle.fileno())
                    raw = handle.read()
            except FileNotFoundError:
                return Reading(None, empty_catalog())
            try:
                return Reading(digest(raw), parse_catalog(raw), (stat.st_dev, stat.st_ino), len(raw), file_stamp(stat))
            except CatalogFormatError as exc:
                changing, before = before is not None and file_stamp(stat) != before, file_stamp(stat)
                delay = next(delays, None)
                if delay is None and changing and time.monotonic() < give_up_at:
                    delay = UNPARSABLE_RETRY_S[-1]
                if delay is None:
                    raise Unavailable(
                        f"{self.name}.json cannot be changed because it does not parse ({exc}); "
                        "it was left exactly as it is. Fix the file and try again.",
                        code="catalog_unparsable",
                    ) from None
                time.sleep(delay)

    def read_spliced(self, text: Text, versions: set[int], files: set[str], *, fresh: bool = False) -> Reading:
        """Read for a plan that needs only some entries: those versions and files parsed, the rest
        left in the file as runs to copy. `text` is the last cut of this file; when the file is
        not that text any more (or `fresh`) it is read and cut again, reusing what `text` knows.
        A file that no longer cuts is read whole (`read`)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return self.read()
        try:
            stat = os.fstat(fd)
            for attempt in (False, True):
                try:
                    if fresh or attempt or stat.st_size != text.size:
                        raw = _read_all(fd)
                        text = cut(raw, self.name, digest(raw), text)
                        del raw
                    spliced = spliced_doc(fd, text, versions, files)
                    break
                except StaleText:
                    if attempt:
                        raise
                    stat = os.fstat(fd)
            return Reading(text.digest, spliced.doc, (stat.st_dev, stat.st_ino), text.size, file_stamp(stat), fd, spliced, text)
        except (Unsplittable, CatalogFormatError, StaleText):
            os.close(fd)
            return self.read()
        except BaseException:
            os.close(fd)
            raise

    def write(self, reading: Reading) -> Written:
        """Stamp and durably write the edited doc, unless the file moved on since `reading`."""
        if self.path.is_symlink():
            raise Unavailable(
                f"{self.name}.json is a symbolic link; saving would replace the link with a file and split it from "
                "its target. Point CATALOG_DIR at the folder that holds the real file.",
                code="catalog_is_link",
            )
        stamp(reading.doc)
        outline: list[Any] | None = [] if reading.source is not None else None
        try:
            written, size = self._replace(
                reading.doc,
                expected=reading.digest,
                identity=reading.identity,
                stream=reading.size > STREAM_BYTES,
                seen=reading.seen,
                source=reading.source,
                outline=outline,
            )
            return Written(written, size, outline)
        except CatalogUnwritable as exc:
            raise Unavailable(
                f"{self.name}.json was not changed: {exc}. It was left exactly as it is.", code="catalog_unwritable"
            ) from None

    def _replace(
        self,
        doc: Doc,
        expected: str | None,
        identity: tuple[int, int] | None = None,
        stream: bool = False,
        seen: tuple[int, int, int] | None = None,
        source: int | None = None,
        outline: list[Any] | None = None,
    ) -> tuple[str, int]:
        """Write the doc to a temp file and swap it in; the digest and size of what was written. A big
        catalog is written piece by piece (never all its bytes in memory); a small one at once.
        A spliced doc's runs are copied from `source`, which must still hold what was read."""
        folder = self.path.parent
        fd, temp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{self.path.name}.", dir=folder)
        quiet = False
        try:
            with os.fdopen(fd, "w+b") as handle:
                if source is not None:
                    quiet = self._quiet(seen, identity)  # before the copy starts (see `_swap_in`)
                    copied = Source(source)
                    try:
                        written = write_catalog(handle, doc, copied, outline)
                        if copied.finish() != expected:  # the runs copied are not of the file planned on
                            raise StaleRead()
                    except SourceChanged:
                        raise StaleRead() from None
                elif stream:
                    written = write_catalog(handle, doc)
                else:
                    raw = serialize_catalog(doc)
                    handle.write(raw)
                    written = digest(raw)
                handle.flush()
                size = handle.tell()
                os.fsync(handle.fileno())
            self._copy_mode(temp)
            if seen is None and self._current() != expected:
                raise StaleRead()
            self._swap_in(temp, expected, identity, seen, quiet)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temp)  # after a swap it holds the file displaced; otherwise our unused copy
        try:
            fsync_folder(folder)
        except OSError as exc:  # the new file is in place; only its survival of a power cut is unsure
            logger.warning("%s was saved but its folder could not be synced (%s)", self.path.name, exc.strerror)
        return written, size

    def _swap_in(
        self,
        temp: str,
        expected: str | None,
        identity: tuple[int, int] | None,
        seen: tuple[int, int, int] | None = None,
        quiet: bool = False,
    ) -> None:
        """Put the temp file in place; StaleRead when that would lose a save made meanwhile.

        After the swap our version is what others read until a save it displaced is given back.
        A program that takes no lock and reads in that moment sees our file without its own
        last save, and its next save is made from ours: that save of its is then lost, by its
        own hand. No rename can close the moment (Linux has no compare-and-swap of a name), so
        it is kept to a few system calls: a different inode (an atomic save by someone else), or
        another size or mtime (a save in place), is seen by one stat and given back at once;
        only an unchanged stamp costs the displaced file's hash (a save in place within one
        tick of the clock). README, "Guarantees when writing", gives its measured rate.
        Without the exchange the file is hashed before the replace.

        A spliced save is `quiet` when, as the copy began, the file had not been changed for
        QUIET_NS by the filesystem's own clock (`_quiet`): a write since then has a later mtime,
        and the copy hashed every byte after that moment. The displaced file's size and mtime,
        unchanged, then say what its hash would, and a 36 MB catalog is not read a third time.
        The margin is for writes whose mtime moves before their bytes land (a write(2) is
        stamped as it starts): one stalled that long, or a program writing through a shared
        mapping (later stores to a dirty page do not move the mtime), could go unseen. Either
        can write into the file after any swap too, which no check here can see.
        """
        if expected is None:  # the file did not exist: create it only if it still does not
            if not rename_with(temp, self.path, RENAME_NOREPLACE):
                if self._current() is not None:
                    raise StaleRead()
                os.replace(temp, self.path)
            return
        path, temp_path = os.fsencode(self.path), os.fsencode(temp)  # encoded before: nothing but syscalls in the windows below
        mine = os.stat(temp_path)
        if identity is not None and _identity(self.path, seen) != (identity, seen):  # last, cheapest look: keeps the race window tiny
            raise StaleRead()
        if not rename_with(temp_path, path, RENAME_EXCHANGE):
            if seen is not None and self._current() != expected:
                raise StaleRead()
            os.replace(temp, self.path)
            return
        # From here until a give-back, our file is what others read: the stamp is looked at first
        # (a syscall), so a save seen by it is given back at once; only an unchanged stamp costs a hash.
        displaced = os.stat(temp_path)
        same_file = (displaced.st_dev, displaced.st_ino) == identity
        if same_file and seen is not None and (displaced.st_size, displaced.st_mtime_ns) != seen[:2]:
            same_file = False
        if same_file and ((quiet and seen is not None) or _digest_or_none(temp) == expected):
            return
        # Another program saved between our check and our swap: give its file back, then the
        # change is applied again on top of it.
        self._give_back(temp_path, path, mine)
        raise StaleRead()

    def _give_back(self, temp_path: bytes, path: bytes, mine: os.stat_result) -> None:
        """Swap the other program's save back in place of ours. When ours was written over or
        replaced in the moment it was shown (the other program saved again), that save is the
        newest and stays; the one it followed is kept beside it as a conflict copy, since it may
        hold an edit the newest lacks (if the newest was made from ours)."""
        if not rename_with(temp_path, path, RENAME_EXCHANGE):
            logger.warning("%s.json was saved by another program at the same moment as this service; check it", self.name)
            return
        back = os.stat(temp_path)
        if (back.st_dev, back.st_ino, back.st_size, back.st_mtime_ns) == (mine.st_dev, mine.st_ino, mine.st_size, mine.st_mtime_ns):
            logger.debug("%s.json was saved by another program just now; applying the change again on top of it", self.name)
            return
        if rename_with(temp_path, path, RENAME_EXCHANGE):  # the newest save back in place; the one before it is at temp
            aside = self.path.with_name(f"{self.path.name}.conflict-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 1_000_000:06d}")
            with contextlib.suppress(OSError):
                os.link(temp_path, aside)
                logger.warning(
                    "%s.json was saved twice by another program while this service saved it; the newest save is kept, the one "
                    "before it is in %s (compare the two if an edit is missing)",
                    self.name,
                    aside.name,
                )

    def _quiet(self, seen: tuple[int, int, int] | None, identity: tuple[int, int] | None) -> bool:
        """Whether the last change `seen` records is QUIET_NS old by the filesystem's clock: the
        held lock file (on the same filesystem) is touched and its times read back. The
        filesystem's own clock and granularity are used, not ours, so a server whose clock
        is off, or times kept in whole seconds, cannot make a file look quiet early. A
        change's ctime cannot be set by anyone, so an mtime set ahead (a copy that kept its
        times) only delays it."""
        if seen is None or identity is None or self._lock_fd is None:
            return False
        try:
            os.utime(self._lock_fd)
            now = os.fstat(self._lock_fd)
        except OSError:
            return False
        return now.st_dev == identity[0] and max(now.st_mtime_ns, now.st_ctime_ns) - max(seen[1], seen[2]) >= QUIET_NS

    def _remove_stale_temps(self) -> None:
        prefix = f"{TEMP_PREFIX}{self.path.name}."
        try:
            names = [name for name in os.listdir(self.path.parent) if name.startswith(prefix)]
        except OSError:
            return
        for name in names:
            with contextlib.suppress(OSError):
                os.unlink(self.path.parent / name)
                logger.info("removed %s, left by a save that was cut short", name)

    def _current(self) -> str | None:
        return _digest_or_none(self.path)

    def _copy_mode(self, temp: str) -> None:
        try:
            mode = self.path.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o644
        os.chmod(temp, mode)


def _identity(path: Path, seen: tuple[int, int, int] | None) -> tuple[tuple[int, int] | None, tuple[int, int, int] | None]:
    """Which file is at the path, and (when `seen` is compared) its size, mtime and ctime."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None, None
    return (stat.st_dev, stat.st_ino), (file_stamp(stat) if seen is not None else None)


def _read_all(fd: int) -> bytes:
    parts = []
    position = 0
    while block := os.pread(fd, 1 << 24, position):
        parts.append(block)
        position += len(block)
    return b"".join(parts)


def _digest_or_none(path: str | Path) -> str | None:
    """The `digest` of a file's content, read in blocks (never the whole file in memory)."""
    try:
        with open(path, "rb") as handle:
            return file_digest(handle)
    except FileNotFoundError:
        return None
