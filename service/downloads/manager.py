"""Download jobs: a queue in order, a bounded number running, progress in the map, nothing left on failure.

A job downloads one catalogued file from CivitAI into `<MODELS_DIR>/<dest>/<file>`. It waits
in line (at most DOWNLOAD_CONCURRENCY run at once, the rest in the order asked), checks the
free space, streams to its part (`part.PartFile`: never through a link, locked against a
second process), verifies the SHA256, and only then renames the part into place, never over an
existing file. The SHA256 is the entry's `hash`; an entry without one takes CivitAI's for the
version's file before the download starts, and gets it written into the catalog once the file
is verified. The map shows `queued`, then `downloading` with bytes (updated about once a
second), then `present`; a failure takes the version back to `missing` with `dl_error` (and the
part's `partial_bytes` when it is kept) in the same step, and is kept in the job list with
its reason. A cancelled or failed job removes its part, except after a dropped
connection the service could not recover from, where the part is kept so the next request
resumes it. Once a verified file is being placed, a cancel no longer stops it: the answer says
the download had finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp

from .. import PROGRAM, __version__
from ..civitai import CivitaiClient
from ..civitai.ratelimit import RateGate
from ..disk.folders import canonical_folder
from ..disk.names import check_file_name, check_relative_folder
from ..disk.writable import MAX_FOLDERS_TOLD, identity, unwritable_folders
from ..errors import Conflict, Invalid, NotFound
from ..library.library import Library
from ..map.entry import MapEntry
from ..map.status import Transfer
from .fetch import DownloadFailed, Remote, check_space, fetch, origin
from .huggingface import is_file_url, published_sha256
from .job import Job
from .opening import open_part, written_elsewhere
from .part import PartFile, PartRefused, remove_unheld_part
from .verify import civitai_sha256, size_limit, verify

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 1.0
KEEP_FINISHED = 200
USER_AGENT = f"{PROGRAM}/{__version__} downloader"
READ_BUFFER = 4 << 20  # aiohttp reads 64 KiB at a time by default: far too little for multi-GB files
# Failures after which the part stays, to be resumed (or because it is not this download's to delete).
RESUMABLE = frozenset(
    {"connection_lost", "rate_limited", "upstream_error", "downloading_elsewhere", "part_not_a_file", "part_changed", "unverifiable", "bad_range"}
)
NOT_OUR_PART = frozenset({"downloading_elsewhere", "part_not_a_file"})  # failures where the part is another's
RecordHash = Callable[[int, str, str], Awaitable[object]]  # (version id, file, SHA256): write a verified hash into the catalog


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
        civitai: CivitaiClient | None = None,
        record_hash: RecordHash | None = None,
        placed: Callable[[int, str], None] | None = None,
        huggingface_url: str = "https://huggingface.co",
    ) -> None:
        self.library = library
        self.models_dir = models_dir
        self.base_url = civitai_base_url.rstrip("/")
        self.api_key = civitai_api_key
        self.enabled = enabled
        self.gate = gate
        self.civitai = civitai  # asked for a file's SHA256 when its entry has none
        self.record_hash = record_hash
        self.placed = placed or (lambda version_id, path: None)  # told of each file placed (its preview is fetched)
        self.huggingface_url = huggingface_url
        self.jobs: dict[str, Job] = {}
        self._removing: dict[str, int] = {}  # file names whose entries are being removed (see `removing`)
        self._slots = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        """Create the session: no total timeout (files are large), but a bounded wait per read.
        With downloads on, say at once which model folders this service cannot write into."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=60)
        self._session = aiohttp.ClientSession(
            timeout=timeout, auto_decompress=False, headers={"User-Agent": USER_AGENT}, read_bufsize=READ_BUFFER
        )
        if self.enabled:
            blocked = await asyncio.to_thread(unwritable_folders, self.models_dir)
            for folder in blocked[:MAX_FOLDERS_TOLD]:
                logger.warning("%s", folder.advice())
            if len(blocked) > MAX_FOLDERS_TOLD:
                logger.warning("%d more model folders are not writable by uid:gid %s either", len(blocked) - MAX_FOLDERS_TOLD, identity())

    async def close(self) -> None:
        """Stop every job (their parts stay, to be resumed) and close the session."""
        tasks = [job.task for job in self.jobs.values() if job.task is not None and not job.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def start(self, file: str, version_id: int | None = None) -> dict[str, Any]:
        """Queue a download of the catalogued file with that name (of that version, when given:
        two catalogued files may share a name in different folders); answer at once."""
        self._check_enabled()
        check_file_name(file, downloaded=True)
        if file in self._removing:
            raise Conflict(f"{file!r} is being removed from its catalog; it is not downloaded.", code="being_removed")
        entry = self._catalogued(file, version_id)
        target = self._target(entry)
        running = self._running(target)
        if running is not None:
            return running
        if self.library.presence.is_present(entry.file, entry.folder):
            return {"status": "already_present", "file": file}
        job = Job(secrets.token_hex(6), file, entry.dest, entry.version_id, target, entry.sha256, total=entry.size)
        logger.info("download of %s (version %d) queued", file, entry.version_id)
        return self._queue(job)

    def _check_enabled(self) -> None:
        if not self.enabled:
            raise Conflict("Downloads are switched off here (DOWNLOADS=off); the models folder is read-only for this service.", code="downloads_off")

    @contextlib.contextmanager
    def removing(self, file: str) -> Iterator[None]:
        """Hold off downloads of a file while its entry is removed; Conflict when a job of this
        service is downloading it now (removing the entry would take the row, and its Cancel,
        out of the map while the file still lands). Both checks run on the event loop, so a
        download asked for while the remove waits for the catalogs is refused too."""
        for job in self.jobs.values():
            if job.file == file and job.active:
                raise Conflict(f"{file!r} is being downloaded (job {job.id}); cancel the download first, then remove it.", code="download_active")
        self._removing[file] = self._removing.get(file, 0) + 1
        try:
            yield
        finally:
            self._removing[file] -= 1
            if not self._removing[file]:
                del self._removing[file]

    def _running(self, target: Path) -> dict[str, Any] | None:
        """The answer for a job already on its way to that place, if there is one."""
        for job in self.jobs.values():
            if job.target == target and job.active:
                return {"status": job.state if job.state != "verifying" else "downloading", "file": job.file, "job": job.id}
        return None

    def _queue(self, job: Job) -> dict[str, Any]:
        self.jobs[job.id] = job
        self._forget_old()
        self._show(job)
        job.task = asyncio.create_task(self._run(job), name=f"download {job.file}")
        return {"status": "queued", "file": job.file, "job": job.id}

    def listing(self) -> list[dict[str, Any]]:
        """Every job, newest first."""
        return [job.view() for job in sorted(self.jobs.values(), key=lambda job: job.created_at, reverse=True)]

    async def cancel(self, job_id: str) -> dict[str, Any]:
        """Stop a job and remove its partial file; a finished job is only forgotten. A job whose
        verified file is being placed finishes: the answer then says how it ended."""
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"There is no download job {job_id!r}.", code="no_such_job")
        if job.committed and job.task is not None and not job.task.done():
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.shield(job.task)
        if not job.active:
            if job.committed:  # the cancel came too late: it says so, and the job stays listed
                return {"status": job.state, "job": job_id, "detail": "The download had already finished; nothing was cancelled."}
            del self.jobs[job_id]
            return {"status": "removed", "job": job_id}
        job.state = "cancelled"
        if job.task is not None:
            job.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job.task
        if await asyncio.to_thread(remove_unheld_part, job.part):  # a part left from before this job, if nobody holds it
            await self._tell_map_of_part(job.part)
        job.finished_at = time.time()
        self._show(job)
        logger.info("download of %s cancelled", job.file)
        return {"status": "cancelled", "job": job_id}

    def start_url(self, url: str, folder: str, file: str) -> dict[str, Any]:
        """Queue a download of a file from Hugging Face into a model folder (a workflow named it);
        its bytes are verified by the SHA256 Hugging Face publishes. Answers at once."""
        self._check_enabled()
        if not is_file_url(url, self.huggingface_url):
            raise Invalid("Only files on Hugging Face (…/resolve/<revision>/<path>) are downloaded by URL.", code="unsafe_url")
        check_file_name(file, downloaded=True)
        target = (self.models_dir / check_relative_folder(folder) / file).absolute()
        if not target.is_relative_to(self.models_dir.absolute()):
            raise Invalid(f"{folder!r} would leave the models folder.", code="unsafe_folder")
        running = self._running(target)
        if running is not None:
            return running
        if self.library.presence.is_present(file, canonical_folder(folder)):
            return {"status": "already_present", "file": file}
        logger.info("download of %s from Hugging Face queued", file)
        return self._queue(Job(secrets.token_hex(6), file, folder, None, target, None, url=url))

    def _catalogued(self, file: str, version_id: int | None = None) -> MapEntry:
        index = self.library.index
        for candidate in index.versions_of_file(file):
            entry = index.entry(candidate)
            if entry is not None and version_id in (None, candidate):
                return entry
        raise NotFound(f"{file!r} is in neither catalog; add it first.", code="not_in_catalog")

    def _target(self, entry: MapEntry) -> Path:
        folder = check_relative_folder(entry.dest)
        target = (self.models_dir / folder / check_file_name(entry.file, downloaded=True)).absolute()
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
                job.state, job.error, job.error_code = "failed", "the service stopped; ask again to resume", "service_stopped"
            raise
        # The part file is removed (by `_fill`) before the job says "failed", and the map is told in
        # the same step (below): a client that sees the failure never sees the map still downloading.
        except DownloadFailed as exc:
            job.state, job.error, job.error_code = "failed", str(exc), exc.code
            logger.warning("download of %s failed: %s", job.file, exc)
        except OSError as exc:
            job.state, job.error_code = "failed", "write_failed"
            job.error = f"could not write into the models folder {job.dest!r} ({exc.strerror or exc}; this service runs as uid:gid {identity()})"
            logger.warning("download of %s failed: could not write into %s (%s)", job.file, job.target.parent, exc)
        except Exception:
            logger.exception("download of %s failed", job.file)
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
        hash_from_civitai = False
        if job.url is not None:
            job.expected_sha256, job.total = await published_sha256(self._session, job.url)
        elif job.expected_sha256 is None:
            job.expected_sha256 = await civitai_sha256(self.civitai, job.version_id, job.file)
            hash_from_civitai = job.expected_sha256 is not None
        if await written_elsewhere(job.part, self.library.index.parts.stale_s):
            raise DownloadFailed(f"{job.part.name} is being written by another program; it is left to it", "downloading_elsewhere")
        part = await open_part(job)
        try:
            sha256, size = await self._fill(job, part)
        finally:
            await asyncio.to_thread(part.close)
        await self.library.paths_changed([str(job.target)])  # present now, not when the watcher gets there
        logger.info("downloaded %s (%d bytes) into %s", job.file, size, job.dest)
        if hash_from_civitai and self.record_hash is not None:
            try:
                await self.record_hash(job.version_id, job.file, sha256)
            except Exception as exc:  # the file is good and in place; the catalog learns its hash another time
                logger.warning("the verified SHA256 of %s could not be written into the catalog: %s", job.file, exc)
        # Last: a client that sees the job done sees the file present, and its hash in the catalog.
        job.state, job.bytes, job.total, job.finished_at = "done", size, size, time.time()
        if job.version_id is not None:
            self.placed(job.version_id, str(job.target))

    async def _fill(self, job: Job, part: PartFile) -> tuple[str, int]:
        """Download into the part, verify it, place it; the part goes unless it can be resumed."""
        assert self._session is not None
        keep, placed, kept_after_failure = True, False, False
        try:
            if job.total is not None:
                await asyncio.to_thread(check_space, part, job.total)
            if job.url is not None:  # Hugging Face: no key goes there
                source = Remote(job.url, None, origin(job.url))
            else:
                source = Remote(f"{self.base_url}/api/download/models/{job.version_id}", self.api_key, origin(self.base_url))
            catalog_size = job.total
            fetched = await fetch(
                self._session, source, part, lambda done, total: self._progress(job, done, total), self.gate, size_limit(catalog_size)
            )
            job.state = "verifying"
            verify(fetched, job.expected_sha256, catalog_size)
            job.committed = True
            placing = asyncio.ensure_future(asyncio.to_thread(part.place, job.target))
            try:
                placed = await asyncio.shield(placing)
            except asyncio.CancelledError:  # at shutdown: the rename goes on in its thread; the part is closed after it
                with contextlib.suppress(Exception):
                    placed = await asyncio.shield(placing)
                raise
            if not placed:
                raise DownloadFailed(f"{job.target.name} appeared on disk meanwhile; the download was not kept", "already_present")
            return fetched.sha256, fetched.size
        except PartRefused as exc:
            raise DownloadFailed(str(exc), exc.code) from None
        except DownloadFailed as exc:
            keep = kept_after_failure = exc.code in RESUMABLE
            raise
        except asyncio.CancelledError:
            keep = job.state != "cancelled"  # at shutdown the part stays, to be resumed
            raise
        except BaseException:
            keep = False
            raise
        finally:
            if not keep and not placed:
                await asyncio.to_thread(part.remove)
                await self._tell_map_of_part(part.path)
            elif kept_after_failure:
                await self._tell_map_of_part(part.path)  # its bytes, in the map with the failure

    async def _tell_map_of_part(self, path: Path) -> None:
        """Tell the map at once what became of a part: gone when this service removed it, its
        bytes when a failure left it. The watcher's event comes a moment later."""
        try:
            await self.library.paths_changed([str(path)])
        except Exception:
            logger.exception("the map could not be told about %s; the watcher will", path.name)

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
        folder = self.library.index.entry(job.version_id) if job.version_id is not None else None
        logical = folder.folder if folder is not None else canonical_folder(job.dest)
        index = self.library.index
        if job.state == "queued":
            index.set_transfer(job.file, logical, Transfer("queued"))
        elif job.state in ("downloading", "verifying"):
            index.set_transfer(job.file, logical, Transfer("downloading", job.bytes, job.total))
        elif job.state in ("failed", "cancelled"):
            failed = job.state == "failed"
            code = (job.error_code or "download_failed") if failed else None
            index.job_ended(job.file, logical, code, job.error if failed else None, wrote_part=code not in NOT_OUR_PART)
        else:
            index.set_transfer(job.file, logical, None)

    def _forget_old(self) -> None:
        finished = sorted((job for job in self.jobs.values() if not job.active), key=lambda job: job.created_at)
        for job in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self.jobs[job.id]
