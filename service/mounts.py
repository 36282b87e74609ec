"""Which folders sit on filesystems where inotify events never arrive (NFS, CIFS, FUSE, 9p, virtiofs)."""

from __future__ import annotations

import os
from pathlib import Path

NETWORK_FS_TYPES = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "lustre", "gpfs", "beegfs", "davfs", "afs",
     # Docker Desktop shares host folders through these; changes made on the host send no inotify event
     "virtiofs", "fakeowner"}
)


def parse_mounts(text: str) -> list[tuple[str, str]]:
    """(mount point, filesystem type) pairs from the text of /proc/mounts."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            point = fields[1].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
            mounts.append((point, fields[2]))
    return mounts


def filesystem_of(path: str, mounts: list[tuple[str, str]]) -> str | None:
    """The filesystem type of the deepest mount holding a path."""
    best: tuple[str, str] | None = None
    for point, fstype in mounts:
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best[0])):
            best = (point, fstype)
    return best[1] if best else None


def is_network_fs(fstype: str | None) -> bool:
    """True for filesystem types whose changes inotify does not report."""
    return fstype is not None and (fstype in NETWORK_FS_TYPES or fstype.startswith("fuse"))


def network_paths(paths: list[str], mounts_file: str = "/proc/mounts") -> list[str]:
    """The paths (real paths) that sit on a network or FUSE filesystem."""
    try:
        mounts = parse_mounts(Path(mounts_file).read_text())
    except OSError:
        return []
    return [p for p in paths if is_network_fs(filesystem_of(os.path.realpath(p), mounts))]
