"""Filesystem operations the standard library lacks: renames with flags, folder fsync, a file's stamp."""

from __future__ import annotations

import ctypes
import errno
import os
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
