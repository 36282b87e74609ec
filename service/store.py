"""Durable, lock-respecting writes of catalog files.

A write takes the catalog's sidecar lock (`.<name>.lock`, never the data file: a replace
swaps the inode), re-reads the file under it, applies the change to what is on disk now,
writes a temp file in the same folder, fsyncs it, checks the file still holds what was
read (programs that take no lock edit it too), replaces, and fsyncs the folder. The
blocking parts run in a worker thread; the caller keeps this process's writers in line
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

from .catalog import CatalogFormatError, Doc, digest, empty_catalog, parse_catalog, serialize_catalog, stamp
from .errors import Unavailable

logger = logging.getLogger(__name__)

LOCK_TIMEOUT_S = 10.0
TEMP_PREFIX = ".tmp-"


class StaleRead(Exception):
    """The file changed between our read and our replace; the change must be applied again."""


@dataclass(slots=True)
class Reading:
    """A catalog as read under its lock: the raw bytes (None when the file is absent) and the doc."""

    raw: bytes | None
    doc: Doc


@dataclass(frozen=True, slots=True)
class Written:
    raw: bytes
    digest: str


class CatalogStore:
    """One catalog file on disk and the only way this service changes it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.stem
        self.lock_path = path.with_name(f".{path.name}.lock")

    def ensure_exists(self) -> bool:
        """Create the file as an empty catalog when missing; True if created."""
        with self.locked():
            if self.path.exists():
                return False
            self._replace(serialize_catalog(empty_catalog()), expected=None)
            return True

    @contextlib.contextmanager
    def locked(self, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
        """Hold the sidecar lock (blocking; call from a worker thread)."""
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
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def read(self) -> Reading:
        """Read and parse the file; a file that does not parse is never written over."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return Reading(None, empty_catalog())
        try:
            return Reading(raw, parse_catalog(raw))
        except CatalogFormatError as exc:
            raise Unavailable(
                f"{self.name}.json cannot be changed because it does not parse ({exc}); "
                "it was left exactly as it is. Fix the file and try again.",
                code="catalog_unparsable",
            ) from None

    def write(self, reading: Reading) -> Written:
        """Stamp and durably write the edited doc, unless the file moved on since `reading`."""
        stamp(reading.doc)
        raw = serialize_catalog(reading.doc)
        self._replace(raw, expected=reading.raw)
        return Written(raw, digest(raw))

    def _replace(self, raw: bytes, expected: bytes | None) -> None:
        folder = self.path.parent
        fd, temp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{self.path.name}.", dir=folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(raw)
                handle.flush()
                os.fsync(handle.fileno())
            self._copy_mode(temp)
            if self._current() != expected:
                raise StaleRead()
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        try:
            _fsync_folder(folder)
        except OSError as exc:  # the new file is in place; only its survival of a power cut is unsure
            logger.warning("%s was saved but its folder could not be synced (%s)", self.path.name, exc.strerror)

    def _current(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    def _copy_mode(self, temp: str) -> None:
        try:
            mode = self.path.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o644
        os.chmod(temp, mode)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
