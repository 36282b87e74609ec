"""Filesystem operations the standard library lacks: renames with flags, folder fsync, a file's
stamp, and one atomic write for the small files the service keeps."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import tempfile
from pathlib import Path

AT_FDCWD = -100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP})
_libc = ctypes.CDLL(None, use_errno=True)
_renameat2 = getattr(_libc, "renameat2", None)
if _renameat2 is not None:
    _renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    _renameat2.restype = ctypes.c_int


def rename_with(source: str | Path, target: str | Path, flags: int) -> bool:
    """renameat2 with flags: True when done. False when this system or filesystem does not
    offer the flag, or (RENAME_NOREPLACE) the target exists: the caller looks again."""
    if _renameat2 is None:
        return False
    if _renameat2(AT_FDCWD, os.fsencode(source), AT_FDCWD, os.fsencode(target), flags) == 0:
        return True
    code = ctypes.get_errno()
    if code in _UNSUPPORTED or (code == errno.EEXIST and flags == RENAME_NOREPLACE):
        return False
    raise OSError(code, os.strerror(code), str(target))


def fsync_folder(folder: Path) -> None:
    """Make a rename in this folder durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_stamp(stat: os.stat_result) -> tuple[int, int, int]:
    """What moves when a file's content is written: its size, mtime and ctime (nanoseconds)."""
    return (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def write_atomically(path: Path, data: bytes, *, mode: int = 0o644, replace: bool = True) -> bool:
    """Write a whole small file so that a reader sees the old one or the new one, never a part, and
    a power cut leaves one of them: a temp file in the same folder, fsynced, renamed into place,
    the folder fsynced. With `replace` false nothing already there is replaced: False when
    something was (the temp file is removed). The small files the service keeps go through here
    (the API key, the update-check cache); catalogs (`catalog.store`), downloads
    (`downloads.part`) and the SQLite hash store have protocols of their own."""
    fd, temp = tempfile.mkstemp(prefix=f".tmp-{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(temp, path)
        elif not rename_with(temp, path, RENAME_NOREPLACE):
            if os.path.lexists(path):
                return False
            try:
                os.link(temp, path)  # no renameat2 here: a hard link never replaces
            except FileExistsError:
                return False
            except OSError:  # nor hard links (some FUSE and network filesystems): create it exclusively
                return _create_exclusively(path, data, mode)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temp)  # after a rename, a name that is not there any more
    fsync_folder(path.parent)
    return True


def _create_exclusively(path: Path, data: bytes, mode: int) -> bool:
    """Write a new file in place, failing when one is there (O_EXCL): readers may see it part-written
    for a moment, so this is the last resort of `write_atomically`."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return True
