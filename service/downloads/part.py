"""The partial file a download writes, `<file>.part` beside its target.

The models folder is shared with ComfyUI and other tools, so what sits at that name is not
trusted: it is opened without following a link (`O_NOFOLLOW`, and `O_EXCL` when created), and
only a regular file with one name is written. An exclusive lock (`flock`) is held on it while
this service writes it: a second service on the same volume finds the lock taken and says the
file is being downloaded elsewhere instead of writing into it. A part is placed by renaming it
without replacing anything, and the name it lands on is checked to be the file written.

Every method blocks: call them in a worker thread.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import stat
from pathlib import Path
from typing import BinaryIO

from ..disk.files import RENAME_NOREPLACE, fsync_folder, rename_with
from ..disk.names import DOWNLOAD_PART_SUFFIX

logger = logging.getLogger(__name__)

PART_SUFFIX = DOWNLOAD_PART_SUFFIX
_OPEN_FLAGS = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # O_NONBLOCK: a FIFO planted there never blocks the open
_ATTEMPTS = 3  # a part renamed away between our open and our lock is opened again, this often


class PartRefused(Exception):
    """What sits at the part's name cannot be written by this download; `code` says why."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def part_path(target: Path) -> Path:
    """Where the download of `target` is written until it is whole."""
    return target.with_name(target.name + PART_SUFFIX)


class PartFile:
    """An open, locked, regular part file."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.handle: BinaryIO = open(fd, "r+b", closefd=False)  # noqa: SIM115 (closed in close())
        self._identity = _identity(os.fstat(fd))

    @classmethod
    def open(cls, path: Path, *, create: bool = True) -> PartFile:
        """Open the part at `path`, making it if there is none (and `create`); PartRefused when
        it is not a regular file of one name, or another process holds it."""
        for _ in range(_ATTEMPTS):
            fd = _open_regular(path, create=create)
            try:
                _lock(fd, path)
                if _names(path, fd):  # still the file at that name: the holder before us may have placed it meanwhile
                    return cls(path, fd)
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        raise PartRefused(f"{path.name} kept being replaced while it was opened", "part_changed")

    def size(self) -> int:
        """Bytes in the part now."""
        return os.fstat(self.fd).st_size

    def truncate(self, length: int) -> None:
        """Cut the part to `length` bytes and write from there."""
        self.handle.flush()
        os.ftruncate(self.fd, length)
        self.handle.seek(length)

    def sync(self) -> None:
        """Flush and fsync what was written."""
        self.handle.flush()
        os.fsync(self.fd)

    def place(self, target: Path) -> bool:
        """Rename the part to `target` without replacing anything there; False when something
        is there already (the part stays). The name it lands on must be this very file."""
        if not _names(self.path, self.fd):
            raise PartRefused(f"{self.path.name} was replaced by something else while it was written; nothing was placed", "part_changed")
        if not rename_with(self.path, target, RENAME_NOREPLACE):
            if os.path.lexists(target):
                return False
            os.link(self.path, target)  # no renameat2 here: a hard link never replaces, then the part goes
            os.unlink(self.path)
        if not _names(target, self.fd):  # swapped between the check and the rename: take it back out
            with contextlib.suppress(OSError):
                os.unlink(target)
            raise PartRefused(f"{self.path.name} was replaced by something else as it was placed; nothing was placed", "part_changed")
        self.path = target
        fsync_folder(target.parent)
        return True

    def remove(self) -> None:
        """Delete the part, if its name still is this file."""
        if _names(self.path, self.fd):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def close(self) -> None:
        """Close the file, which releases the lock."""
        with contextlib.suppress(OSError):
            self.handle.close()
        with contextlib.suppress(OSError):
            os.close(self.fd)


def remove_unheld_part(path: Path) -> bool:
    """Delete a part nobody is writing (left by a restart or a failure); a link, a file of
    several names or a part another process holds is left alone. True when one was deleted."""
    try:
        part = PartFile.open(path, create=False)
    except (PartRefused, OSError):  # a link, a folder, a socket, another process's part, or nothing
        return False
    try:
        part.remove()
        return True
    finally:
        part.close()


def _open_regular(path: Path, *, create: bool) -> int:
    """A descriptor of the regular, single-named file at `path` (made when there is none and
    `create`), never through a link."""
    fd = -1
    if create:
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, _OPEN_FLAGS | os.O_CREAT | os.O_EXCL, 0o644)
    if fd < 0:
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise PartRefused(f"{path.name} is a symbolic link; it was left alone and nothing was written", "part_not_a_file") from None
            if exc.errno in (errno.EISDIR, errno.ENXIO, errno.EOPNOTSUPP):
                raise PartRefused(f"{path.name} is not a regular file; it was left alone and nothing was written", "part_not_a_file") from None
            raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        what = "has another name too (a hard link)" if stat.S_ISREG(info.st_mode) else "is not a regular file"
        raise PartRefused(f"{path.name} {what}; it was left alone and nothing was written", "part_not_a_file")
    return fd


_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)
_warned_no_locks: set[str] = set()


def _lock(fd: int, path: Path) -> None:
    """Take the part's lock; PartRefused when another process holds it. Where the filesystem has
    no locks (NFS without lockd), go on without one, and say so once for that folder."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise PartRefused(f"{path.name} is being downloaded by another process", "downloading_elsewhere") from None
    except OSError as exc:
        if exc.errno not in _NO_LOCKS:
            raise
        if str(path.parent) not in _warned_no_locks:
            _warned_no_locks.add(str(path.parent))
            logger.warning("%s has no file locks (%s): a second service on it could write the same download", path.parent, exc.strerror)


def _identity(info: os.stat_result) -> tuple[int, int]:
    return (info.st_dev, info.st_ino)


def _names(path: Path, fd: int) -> bool:
    """True when `path` (not followed) is the file open at `fd`."""
    try:
        return _identity(os.lstat(path)) == _identity(os.fstat(fd))
    except FileNotFoundError:
        return False
