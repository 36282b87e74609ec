"""Download jobs: a queue in order, a bounded number running, progress in the map, nothing left on failure.

A job downloads one catalogued file from CivitAI into `<MODELS_DIR>/<dest>/<file>`. It waits
in line (at most DOWNLOAD_CONCURRENCY run at once, the rest in the order asked), checks the
free space, streams to `<file>.part`, verifies the SHA256 against the entry's `hash`, and only
then renames the part into place, never over an existing file. The map shows `queued`, then
`downloading` with bytes (updated about once a second), then `present`; a failure takes the
version back to `missing` and is kept in the job list with its reason. A cancelled or failed
job removes its part, except after a dropped connection the service could not recover from,
where the part is kept so the next request resumes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from ..civitai.ratelimit import RateGate
from ..errors import Conflict, Invalid, NotFound
from ..fileops import RENAME_NOREPLACE, fsync_folder, rename_with
from ..filenames import check_file_name, check_relative_folder
from ..index import MapEntry, Transfer
from ..library import Library
from .fetch import DownloadFailed, Source, fetch, origin

logger = logging.getLogger(__name__)

PART_SUFFIX = ".part"
PROGRESS_INTERVAL_S = 1.0
FREE_SPACE_MARGIN = 64 * 1024 * 1024
KEEP_FINISHED = 200
USER_AGENT = "comfy-catalog-service downloader"
READ_BUFFER = 4 << 20  # aiohttp reads 64 KiB at a time by default: far too little for multi-GB files


@dataclass(slots=True)
class Job:
    """One download, as `GET /api/admin/downloads` shows it."""

    id: str
    file: str
    dest: str
    version_id: int
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

    @property
    def active(self) -> bool:
        """True while queued or running."""
        return self.state in ("queued", "downloading", "verifying")

    @property
    def part(self) -> Path:
        """The partial file beside the target."""
        return self.target.with_name(self.target.name + PART_SUFFIX)

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


class DownloadManager:
    """Owns the download jobs and their HTTP session; lives from start-up to shutdown."""

    def __init__(
        self,
        library: Library,
        models_dir: Path,
        civitai_base_url: str,
        civitai_api_key: str | None,
        *,
        concurrency: int,
        enabled: bool,
        gate: RateGate,
    ) -> None:
        self.library = library
        self.models_dir = models_dir
        self.base_url = civitai_base_url.rstrip("/")
        self.api_key = civitai_api_key
        self.enabled = enabled
        self.gate = gate
        self.jobs: dict[str, Job] = {}
        self._slots = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        """Create the session: no total timeout (files are large), but a bounded wait per read."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=60)
        self._session = aiohttp.ClientSession(
            timeout=timeout, auto_decompress=False, headers={"User-Agent": USER_AGENT}, read_bufsize=READ_BUFFER
        )

    async def close(self) -> None:
        """Stop every job (their parts stay, to be resumed) and close the session."""
        tasks = [job.task for job in self.jobs.values() if job.task is not None and not job.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def start(self, file: str) -> dict[str, Any]:
        """Queue a download of the catalogued file with that name; answer at once."""
        if not self.enabled:
            raise Conflict("Downloads are switched off here (DOWNLOADS=off); the models folder is read-only for this service.", code="downloads_off")
        check_file_name(file)
        for job in self.jobs.values():
            if job.file == file and job.active:
                return {"status": job.state if job.state != "verifying" else "downloading", "file": file, "job": job.id}
        entry = self._catalogued(file)
        if self.library.presence.is_present(entry.file, entry.folder):
            return {"status": "already_present", "file": file}
        target = self._target(entry)
        job = Job(secrets.token_hex(6), file, entry.dest, entry.version_id, target, entry.sha256, total=entry.size)
        self.jobs[job.id] = job
        self._forget_old()
        self._show(job)
        job.task = asyncio.create_task(self._run(job), name=f"download {file}")
        logger.info("download of %s (version %d) queued", file, entry.version_id)
        return {"status": "queued", "file": file, "job": job.id}

    def listing(self) -> list[dict[str, Any]]:
        """Every job, newest first."""
        return [job.view() for job in sorted(self.jobs.values(), key=lambda job: job.created_at, reverse=True)]

    async def cancel(self, job_id: str) -> dict[str, Any]:
        """Stop a job and remove its partial file; a finished job is only forgotten."""
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"There is no download job {job_id!r}.", code="no_such_job")
        if not job.active:
            del self.jobs[job_id]
            return {"status": "removed", "job": job_id}
        job.state = "cancelled"
        if job.task is not None:
            job.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job.task
        await asyncio.to_thread(job.part.unlink, missing_ok=True)
        job.finished_at = time.time()
        self._show(job)
        logger.info("download of %s cancelled", job.file)
        return {"status": "cancelled", "job": job_id}

    def _catalogued(self, file: str) -> MapEntry:
        index = self.library.index
        for version_id in index.versions_of_file(file):
            entry = index.entry(version_id)
            if entry is not None:
                return entry
        raise NotFound(f"{file!r} is in neither catalog; add it first.", code="not_in_catalog")

    def _target(self, entry: MapEntry) -> Path:
        folder = check_relative_folder(entry.dest)
        target = (self.models_dir / folder / check_file_name(entry.file)).absolute()
        if not target.is_relative_to(self.models_dir.absolute()):
            raise Invalid(f"{entry.dest!r} would leave the models folder.", code="unsafe_folder")
        return target

    async def _run(self, job: Job) -> None:
        try:
            async with self._slots:
                if job.state == "cancelled":
                    return
                job.state, job.started_at = "downloading", time.time()
                self._show(job)
                await self._download(job)
        except asyncio.CancelledError:
            if job.state != "cancelled":  # shutdown: keep the part for the next start to resume
                job.state, job.error = "failed", "the service stopped; ask again to resume"
            raise
        # The part file is removed before the job says "failed", and the map is told in the same
        # step (below): a client that sees the failure never sees the map still downloading.
        except DownloadFailed as exc:
            if exc.code not in ("connection_lost", "rate_limited", "upstream_error"):
                await asyncio.to_thread(job.part.unlink, missing_ok=True)
            job.state, job.error, job.error_code = "failed", str(exc), exc.code
            logger.warning("download of %s failed: %s", job.file, exc)
        except OSError as exc:
            await asyncio.to_thread(job.part.unlink, missing_ok=True)
            job.state, job.error, job.error_code = "failed", f"the file could not be written ({exc.strerror})", "write_failed"
            logger.warning("download of %s failed: %s", job.file, job.error)
        except Exception:
            logger.exception("download of %s failed", job.file)
            await asyncio.to_thread(job.part.unlink, missing_ok=True)
            job.state, job.error, job.error_code = "failed", "an internal error; the log says more", "internal_error"
        finally:
            if job._pending_show is not None:
                job._pending_show.cancel()
                job._pending_show = None
            job.finished_at = job.finished_at or time.time()
            if job.state in ("downloading", "verifying"):
                job.state = "failed"
            self._show(job)

    async def _download(self, job: Job) -> None:
        assert self._session is not None
        await asyncio.to_thread(job.target.parent.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(self._check_space, job)
        source = Source(f"{self.base_url}/api/download/models/{job.version_id}", self.api_key, origin(self.base_url))
        sha256, size = await fetch(self._session, source, job.part, lambda done, total: self._progress(job, done, total), self.gate)
        job.state = "verifying"
        if job.expected_sha256 is not None and sha256 != job.expected_sha256:
            await asyncio.to_thread(job.part.unlink, missing_ok=True)
            raise DownloadFailed(
                f"the downloaded file's SHA256 {sha256[:12]}… is not the catalog's {job.expected_sha256[:12]}…; nothing was kept",
                "hash_mismatch",
            )
        await asyncio.to_thread(_place, job.part, job.target)
        job.state, job.bytes, job.total, job.finished_at = "done", size, size, time.time()
        await self.library.paths_changed([str(job.target)])  # present now, not when the watcher gets there
        logger.info("downloaded %s (%d bytes) into %s", job.file, size, job.dest)

    def _check_space(self, job: Job) -> None:
        if job.total is None:
            return
        have = job.part.stat().st_size if job.part.exists() else 0
        free = shutil.disk_usage(job.target.parent).free
        needed = job.total - have + FREE_SPACE_MARGIN
        if free < needed:
            raise DownloadFailed(
                f"not enough free space: {needed / 1e9:.2f} GB needed, {free / 1e9:.2f} GB free", "no_space"
            )

    def _progress(self, job: Job, done: int, total: int | None) -> None:
        now = time.monotonic()
        mark_time, mark_bytes = job._speed_mark
        if total is not None:
            job.total = total
        job.bytes = done
        if now - mark_time >= PROGRESS_INTERVAL_S:
            if mark_time:
                job.speed = (done - mark_bytes) / (now - mark_time)
            job._speed_mark = (now, done)
            self._show(job)
        elif job._pending_show is None:  # throttled: show the latest bytes once the interval is up
            delay = PROGRESS_INTERVAL_S - (now - mark_time)
            job._pending_show = asyncio.get_running_loop().call_later(delay, self._show_pending, job)

    def _show_pending(self, job: Job) -> None:
        job._pending_show = None
        if job.state in ("downloading", "verifying"):
            self._progress(job, job.bytes, job.total)

    def _show(self, job: Job) -> None:
        folder = self.library.index.entry(job.version_id)
        logical = folder.folder if folder is not None else job.dest
        if job.state == "queued":
            transfer: Transfer | None = Transfer("queued")
        elif job.state in ("downloading", "verifying"):
            transfer = Transfer("downloading", job.bytes, job.total)
        else:
            transfer = None
        self.library.index.set_transfer(job.file, logical, transfer)

    def _forget_old(self) -> None:
        finished = sorted((job for job in self.jobs.values() if not job.active), key=lambda job: job.created_at)
        for job in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self.jobs[job.id]


def _place(part: Path, target: Path) -> None:
    """Rename the verified part into place, never over a file that is already there."""
    if not rename_with(part, target, RENAME_NOREPLACE):
        if target.exists():
            part.unlink(missing_ok=True)
            raise DownloadFailed(f"{target.name} appeared on disk meanwhile; the download was not kept", "already_present")
        os.rename(part, target)
    fsync_folder(target.parent)
