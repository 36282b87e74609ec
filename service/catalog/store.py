"""Durable, lock-respecting writes of catalog files.

A write takes the catalog's sidecar lock (`.<name>.lock`, never the data file: a replace
swaps the inode), re-reads the file under it, applies the change to what is on disk now,
writes a temp file in the same folder, fsyncs it, checks the file still holds what was
read (programs that take no lock edit it too), swaps it in (`swap`), and fsyncs the folder.
The blocking parts run in a worker thread; the caller keeps this process's writers in line
(one asyncio lock) so they do not hold worker threads waiting on each other.
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
    file_stamp,
    fsync_folder,
)
from ..errors import Unavailable
from . import swap
from .codec import (
    CatalogFormatError,
    CatalogUnwritable,
    digest,
    parse_catalog,
    serialize_catalog,
    write_catalog,
)
from .copying import Source, SourceChanged
from .cutting import cut
from .document import Doc, empty_catalog, stamp
from .layout import NATIVE
from .reading import UNPARSABLE_RETRY_S, UNPARSABLE_WHILE_CHANGING_S
from .splice import Spliced, spliced_doc
from .swap import StaleRead
from .text import StaleText, Text, Unsplittable

logger = logging.getLogger(__name__)

LOCK_TIMEOUT_S = 10.0
TEMP_PREFIX = ".tmp-"
STREAM_BYTES = 16 * 1024 * 1024  # catalogs larger than this are written piece by piece


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
    placed: tuple[int, ...] | None = None  # `placed_stamp` of the file just after it was swapped in


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
                    if text.layout != NATIVE:
                        raise Unsplittable("written whole, in this service's layout")
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
            written, size, placed = self._replace(
                reading.doc,
                expected=reading.digest,
                identity=reading.identity,
                stream=reading.size > STREAM_BYTES,
                seen=reading.seen,
                source=reading.source,
                outline=outline,
            )
            return Written(written, size, outline, placed)
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
    ) -> tuple[str, int, tuple[int, ...] | None]:
        """Write the doc to a temp file and swap it in; the digest and size of what was written, and
        which file is then at the path (`placed_stamp`, looked at before the folder's sync). A big
        catalog is written piece by piece (never all its bytes in memory); a small one at once.
        A spliced doc's runs are copied from `source`, which must still hold what was read."""
        folder = self.path.parent
        fd, temp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{self.path.name}.", dir=folder)
        quiet = False
        try:
            with os.fdopen(fd, "w+b") as handle:
                if source is not None:
                    quiet = swap.is_quiet(self._lock_fd, seen, identity)  # before the copy starts (see `swap.swap_in`)
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
            if seen is None and swap.current_digest(self.path) != expected:
                raise StaleRead()
            swap.swap_in(self.path, temp, written, expected, identity, seen, quiet)
            placed = placed_stamp(self.path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temp)  # after a swap it holds the file displaced; otherwise our unused copy
        try:
            fsync_folder(folder)
        except OSError as exc:  # the new file is in place; only its survival of a power cut is unsure
            logger.warning("%s was saved but its folder could not be synced (%s)", self.path.name, exc.strerror)
        return written, size, placed

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

    def _copy_mode(self, temp: str) -> None:
        try:
            mode = self.path.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o644
        os.chmod(temp, mode)


def placed_stamp(path: Path) -> tuple[int, ...] | None:
    """Which file is at a path, and its size and times (None: none): another program's save,
    in place or by a replace, moves it."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return (stat.st_dev, stat.st_ino, *file_stamp(stat))


def _read_all(fd: int) -> bytes:
    parts = []
    position = 0
    while block := os.pread(fd, 1 << 24, position):
        parts.append(block)
        position += len(block)
    return b"".join(parts)
