"""What the hasher is doing, for /ready and the log; and the files it identified."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ..civitai.lookup import Identity
from .store import FileKey

logger = logging.getLogger(__name__)

REPORT_S = 10.0  # progress in the log this often while hashing

@dataclass(slots=True)
class HashProgress:
    """What the hasher is doing, for /ready and the log."""

    state: str = "starting"  # starting, hashing, identifying, idle, off
    files_on_disk: int = 0
    files_hashed: int = 0  # with a known SHA256, this run or an earlier one
    files_to_hash: int = 0
    bytes_to_hash: int = 0
    bytes_hashed: int = 0  # this pass
    rate_mb_s: float | None = None
    seconds_left: float | None = None
    identified: int = 0  # files CivitAI named a version for
    unknown: int = 0  # files CivitAI does not know
    waiting_for_lookup: int = 0
    civitai_calls: int = 0
    hashed_this_run: int = 0
    identified_by_sidecar: int = 0  # files known by a sidecar's word until they are hashed
    sidecars_caught: int = 0  # sidecars whose SHA256 the bytes proved wrong, this run
    last_error: str | None = None

    def report(self, started: float, done: int, reported: float) -> float:
        """Update the rate and time left with `done` bytes hashed since `started`; log them every
        REPORT_S (since `reported`). Returns when they were last logged."""
        self.bytes_hashed = done
        now = time.monotonic()
        elapsed = now - started
        if elapsed > 0.5 and done:
            rate = done / elapsed
            self.rate_mb_s = rate / 1e6
            self.seconds_left = max(0.0, self.bytes_to_hash - done) / rate
        if now - reported < REPORT_S:
            return reported
        logger.info(
            "hashing model files: %d left, %.1f of %.1f GB, %.0f MB/s, about %s left",
            self.files_to_hash,
            done / 1e9,
            self.bytes_to_hash / 1e9,
            self.rate_mb_s or 0.0,
            duration(self.seconds_left),
        )
        return now

    def count(
        self, files_on_disk: int, by_path: Mapping[str, str], by_hash: Mapping[str, Collection[str]], identities: Mapping[str, Identity], hinted: int
    ) -> None:
        """Count the files on disk, hashed, identified (by their bytes or, until hashed, by a
        sidecar's word: `hinted`) and unknown to CivitAI."""
        self.files_on_disk = files_on_disk
        self.files_hashed = len(by_path) - hinted
        self.identified_by_sidecar = hinted
        identified = unknown = 0
        for sha256, paths in by_hash.items():
            identity = identities.get(sha256)
            if identity is not None:
                if identity.known:
                    identified += len(paths)
                else:
                    unknown += len(paths)
        self.identified, self.unknown = identified, unknown

    def not_identified(self) -> dict[str, int]:
        """Files on disk not identified yet, by why: waiting to be hashed, waiting for CivitAI, unknown to it."""
        return {
            "waiting_to_be_hashed": max(0, self.files_on_disk - self.files_hashed - self.identified_by_sidecar),
            "waiting_for_civitai": self.waiting_for_lookup,
            "unknown_to_civitai": self.unknown,
        }

    def as_json(self) -> dict[str, Any]:
        """The progress as /ready shows it."""
        answer = asdict(self)
        if answer["rate_mb_s"] is not None:
            answer["rate_mb_s"] = round(answer["rate_mb_s"], 1)
        if answer["seconds_left"] is not None:
            answer["seconds_left"] = round(answer["seconds_left"])
        return answer


@dataclass(frozen=True, slots=True)
class OnDisk:
    """A complete model file identified by its SHA256 as a CivitAI version."""

    path: str
    folder: str  # logical, as a catalog's `dest` would say it
    file: str
    identity: Identity


def stat_all(paths: list[str]) -> tuple[list[FileKey], set[str]]:
    """Keys of the files that are there and hold something, and the paths that do not (an empty
    file is no model: a placeholder, or a download that has not started)."""
    keys: list[FileKey] = []
    gone: set[str] = set()
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:
            gone.add(path)
            continue
        if stat.st_size:
            keys.append(FileKey.of(path, stat))
        else:
            gone.add(path)
    return keys, gone


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "an unknown time"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
