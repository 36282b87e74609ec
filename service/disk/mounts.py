"""Which folders sit on filesystems where inotify events never arrive (NFS, CIFS, FUSE, 9p, virtiofs)."""

from __future__ import annotations

import os
import re
from pathlib import Path

NETWORK_FS_TYPES = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "lustre", "gpfs", "beegfs", "davfs", "afs",
     # Docker Desktop shares host folders through these; changes made on the host send no inotify event
     "virtiofs", "fakeowner",
     # Windows drives in WSL1, VirtualBox and Parallels shared folders: the same, for the host's changes
     "drvfs", "vboxsf", "prl_fs"}
)
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def parse_mounts(text: str) -> list[tuple[str, str]]:
    """(mount point, filesystem type) pairs from the text of /proc/mounts."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            point = _OCTAL_ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), fields[1])
            mounts.append((point, fields[2]))
    return mounts


def filesystem_of(path: str, mounts: list[tuple[str, str]]) -> str | None:
    """The filesystem type of the deepest mount holding a path."""
    best: tuple[str, str] | None = None
    for point, fstype in mounts:
        if _inside(path, point) and (best is None or len(point) >= len(best[0])):
            best = (point, fstype)
    return best[1] if best else None


def is_network_fs(fstype: str | None) -> bool:
    """True for filesystem types whose changes inotify does not report."""
    return fstype is not None and (fstype in NETWORK_FS_TYPES or fstype.startswith("fuse"))


def network_paths(paths: list[str], mounts_file: str = "/proc/mounts") -> list[str]:
    """The paths (real paths) that sit on a network or FUSE filesystem, or have one mounted inside."""
    try:
        mounts = parse_mounts(Path(mounts_file).read_text())
    except OSError:
        return []
    remote_points = [point for point, fstype in mounts if is_network_fs(fstype)]
    found = []
    for path in paths:
        real = os.path.realpath(path)
        if is_network_fs(filesystem_of(real, mounts)) or any(_inside(point, real) for point in remote_points):
            found.append(path)
    return found


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")
