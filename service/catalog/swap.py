"""The last step of a save: the new file swapped in place of the catalog, and undone when another
program saved in between. Blocking: runs in the save's worker thread, under the catalog's lock.

On Linux the swap is `renameat2(RENAME_EXCHANGE)`: it hands back the file it displaced, so a
save by another program that landed between the last check and the swap is seen, put back,
and the change applied again on top of it. Where the filesystem refuses the flag, the check
alone guards (a save landing in that window of microseconds can then be lost).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from ..disk.files import RENAME_EXCHANGE, RENAME_NOREPLACE, file_stamp, rename_with
from .codec import file_digest

logger = logging.getLogger(__name__)

QUIET_NS = 50_000_000  # by the filesystem's clock: a file untouched this long is "quiet" (see `swap_in`)


class StaleRead(Exception):
    """The file changed between our read and our replace; the change must be applied again."""


def swap_in(
    path: Path,
    temp: str,
    written: str,
    expected: str | None,
    identity: tuple[int, int] | None,
    seen: tuple[int, int, int] | None = None,
    quiet: bool = False,
) -> None:
    """Put the temp file (whose content has the digest `written`) in place of the file that was
    read (`expected`, `identity`, `seen`); StaleRead when that would lose a save made meanwhile.

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
    QUIET_NS by the filesystem's own clock (`is_quiet`): a write since then has a later mtime,
    and the copy hashed every byte after that moment. The displaced file's size and mtime,
    unchanged, then say what its hash would, and a large catalog is not read a third time.
    The margin is for writes whose mtime moves before their bytes land (a write(2) is
    stamped as it starts): one stalled that long, or a program writing through a shared
    mapping (later stores to a dirty page do not move the mtime), could go unseen. Either
    can write into the file after any swap too, which no check here can see.
    """
    if expected is None:  # the file did not exist: create it only if it still does not
        if not rename_with(temp, path, RENAME_NOREPLACE):
            if current_digest(path) is not None:
                raise StaleRead()
            os.replace(temp, path)
        return
    path_bytes, temp_path = os.fsencode(path), os.fsencode(temp)  # encoded before: nothing but syscalls in the windows below
    mine = os.stat(temp_path)
    if identity is not None and stat_of(path, seen) != (identity, seen):  # last, cheapest look: keeps the race window tiny
        raise StaleRead()
    if not rename_with(temp_path, path_bytes, RENAME_EXCHANGE):
        if seen is not None and current_digest(path) != expected:
            raise StaleRead()
        os.replace(temp, path)
        return
    # From here until a give-back, our file is what others read: the stamp is looked at first
    # (a syscall), so a save seen by it is given back at once; only an unchanged stamp costs a hash.
    displaced = os.stat(temp_path)
    same_file = (displaced.st_dev, displaced.st_ino) == identity
    if same_file and seen is not None and (displaced.st_size, displaced.st_mtime_ns) != seen[:2]:
        same_file = False
    if same_file and ((quiet and seen is not None) or digest_or_none(temp) == expected):
        return
    # Another program saved between our check and our swap: give its file back, then the
    # change is applied again on top of it.
    give_back(path, temp_path, path_bytes, mine, written)
    raise StaleRead()


def give_back(path: Path, temp_path: bytes, path_bytes: bytes, mine: os.stat_result, written: str) -> None:
    """Swap the other program's save back in place of ours. When ours was written over or
    replaced in the moment it was shown (the other program saved again), that save is the
    newest and stays; the one it followed is kept beside it as a conflict copy, since it may
    hold an edit the newest lacks (if the newest was made from ours)."""
    name = path.stem
    if not rename_with(temp_path, path_bytes, RENAME_EXCHANGE):
        logger.warning("%s.json was saved by another program at the same moment as this service; check it", name)
        return
    back = os.stat(temp_path)
    ours = (back.st_dev, back.st_ino, back.st_size, back.st_mtime_ns) == (mine.st_dev, mine.st_ino, mine.st_size, mine.st_mtime_ns)
    if ours and mine.st_mtime_ns % 1_000_000_000 == 0:  # times in whole seconds: a save in place can keep the stamp
        ours = digest_or_none(temp_path) == written
    if ours:
        logger.debug("%s.json was saved by another program just now; applying the change again on top of it", name)
        return
    if rename_with(temp_path, path_bytes, RENAME_EXCHANGE):  # the newest save back in place; the one before it is at temp
        keep_conflict_copy(path, temp_path)


def keep_conflict_copy(path: Path, temp_path: bytes) -> None:
    """Keep the file at `temp_path` beside the catalog as `<name>.conflict-<time>`, and say so."""
    aside = path.with_name(f"{path.name}.conflict-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 1_000_000:06d}")
    try:
        os.link(temp_path, aside, follow_symlinks=False)
    except OSError:
        try:  # no hard links here (another filesystem, a limit): a copy, then
            shutil.copyfile(temp_path, aside, follow_symlinks=False)
        except OSError as exc:
            logger.error("%s.json: a save by another program could not be kept beside it (%s); it may be lost", path.stem, exc.strerror)
            return
    logger.warning(
        "%s.json was saved twice by another program while this service saved it; the newest save is kept, the one "
        "before it is in %s (compare the two if an edit is missing)",
        path.stem,
        aside.name,
    )


def is_quiet(lock_fd: int | None, seen: tuple[int, int, int] | None, identity: tuple[int, int] | None) -> bool:
    """Whether the last change `seen` records is QUIET_NS old by the filesystem's clock: the
    held lock file (on the same filesystem) is touched and its times read back. The
    filesystem's own clock and granularity are used, not ours, so a server whose clock
    is off, or times kept in whole seconds, cannot make a file look quiet early. A
    change's ctime cannot be set by anyone, so an mtime set ahead (a copy that kept its
    times) only delays it."""
    if seen is None or identity is None or lock_fd is None:
        return False
    try:
        os.utime(lock_fd)
        now = os.fstat(lock_fd)
    except OSError:
        return False
    return now.st_dev == identity[0] and max(now.st_mtime_ns, now.st_ctime_ns) - max(seen[1], seen[2]) >= QUIET_NS


def stat_of(path: Path, seen: tuple[int, int, int] | None) -> tuple[tuple[int, int] | None, tuple[int, int, int] | None]:
    """Which file is at the path, and (when `seen` is compared) its size, mtime and ctime."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None, None
    return (stat.st_dev, stat.st_ino), (file_stamp(stat) if seen is not None else None)


def current_digest(path: Path) -> str | None:
    """The digest of what is at the catalog's path now (None: nothing)."""
    return digest_or_none(path)


def digest_or_none(path: str | Path | bytes) -> str | None:
    """The `digest` of a file's content, read in blocks (never the whole file in memory)."""
    try:
        with open(path, "rb") as handle:
            return file_digest(handle)
    except FileNotFoundError:
        return None
