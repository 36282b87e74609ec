"""Whether this process can write where downloads land, and what to tell a person when it cannot.

The usual cause is Docker: a bind-mounted models folder that did not exist is created owned by
root, and a ComfyUI image that runs as root creates its subfolders as root too, so a service
running as an ordinary user can read every model but write none.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

MAX_FOLDERS_TOLD = 10


@dataclass(frozen=True, slots=True)
class Unwritable:
    """A folder this process cannot create files in: who owns it, and its mode."""

    path: str
    uid: int
    gid: int
    mode: int

    def advice(self) -> str:
        """One log line: the folder, who the service runs as, and the fix."""
        me = identity()
        return (
            f"downloads into {self.path} will fail: this service runs as uid:gid {me} and cannot write there "
            f"(owner {self.uid}:{self.gid}, mode {stat.S_IMODE(self.mode):04o}). Fix: give the folder to {me} "
            f"(`sudo chown {me} {self.path}` on the host, for the folder that is mounted there), or run the "
            f"service as its owner (PUID={self.uid} PGID={self.gid} in .env under docker compose)."
        )


def identity() -> str:
    """`uid:gid` of this process."""
    return f"{os.getuid()}:{os.getgid()}"


def unwritable_folders(root: Path) -> list[Unwritable]:
    """The models folder and its folders one level down (where downloads land, or their parents)
    that this process cannot create files in; nothing for a root that is not there (that is
    logged where the folders are read). Blocking: call it in a thread."""
    found: list[Unwritable] = []
    try:
        with os.scandir(root) as listing:
            folders = [root, *sorted(Path(entry.path) for entry in listing if entry.is_dir())]
    except OSError:
        return found
    for folder in folders:
        if not os.access(folder, os.W_OK | os.X_OK):
            try:
                info = folder.stat()
            except OSError:
                continue
            found.append(Unwritable(str(folder), info.st_uid, info.st_gid, info.st_mode))
    return found
