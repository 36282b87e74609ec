"""One download job, as `GET /api/admin/downloads` shows it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .part import part_path


@dataclass(slots=True)
class Job:
    """One download, as `GET /api/admin/downloads` shows it."""

    id: str
    file: str
    dest: str
    version_id: int | None  # None: a file from elsewhere than CivitAI (`url`)
    target: Path
    expected_sha256: str | None
    state: str = "queued"  # queued, downloading, verifying, done, failed, cancelled
    bytes: int = 0
    total: int | None = None
    error: str | None = None
    error_code: str | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    _speed_mark: tuple[float, int] = (0.0, 0)
    _pending_show: asyncio.TimerHandle | None = field(default=None, repr=False)
    speed: float = 0.0  # bytes per second, over the last second or so
    committed: bool = False  # verified and being placed: a cancel can no longer stop it
    url: str | None = None  # a file from Hugging Face: fetched from here, with no key, and verified by its published SHA256

    @property
    def active(self) -> bool:
        """True while queued or running."""
        return self.state in ("queued", "downloading", "verifying")

    @property
    def part(self) -> Path:
        """The partial file beside the target."""
        return part_path(self.target)

    def view(self) -> dict[str, Any]:
        """The job as the API answers it."""
        return {
            "job": self.id,
            "file": self.file,
            "dest": self.dest,
            "version_id": self.version_id,
            "state": self.state,
            "bytes": self.bytes,
            "total": self.total,
            "speed": round(self.speed),
            "error": self.error,
            "error_code": self.error_code,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


