"""One download over HTTP: redirects checked by hand, resume with Range, SHA256 while streaming.

The file goes to its part (`part.PartFile`, `<name>.part` beside its final place). Bytes are
hashed as they are written (a resumed part is hashed once first), so nothing is read twice.
The CivitAI key is sent to CivitAI's own origin only, never to the storage a redirect points
at; a redirect from HTTPS to anything else is refused. Bytes are counted against what the
server said it would send (Content-Length, Content-Range): a short body is a dropped
connection, resumed, never a finished file. Every byte that arrived before a failure is kept.
Transient failures (a dropped connection, a 5xx, a 429) are retried, resuming from what is on
disk; only attempts that brought no new byte count against the limit. When the server says
how large the file is, the free space is checked against it before a byte is written.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import logging
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import urljoin, urlsplit

import aiohttp

from .. import workers
from ..civitai.ratelimit import DEFAULT_RETRY_AFTER_S, RateGate, parse_retry_after
from .part import PartFile

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5
WRITE_BLOCK = 1 << 20  # bytes gathered before one write and one hash in worker threads (still in the CPU's cache)
MAX_ATTEMPTS = 6  # attempts in a row that brought no new byte
FREE_SPACE_MARGIN = 64 * 1024 * 1024  # kept free on the models' filesystem beyond the file
SPACE_LOOK_EVERY = 16 * 1024 * 1024  # a file of no known size: room for this much more (and the margin) is looked for this often
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0)
MAX_RETRY_AFTER_S = 300.0
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
Progress = Callable[[int, int | None], None]
# Writing and hashing downloads: two threads for each download that may run at once (DOWNLOAD_CONCURRENCY <= 16).
_THREADS = workers.background_threads(32, "download")


class DownloadFailed(Exception):
    """A download that cannot succeed as things are; `code` for machines, the message for people."""

    def __init__(self, message: str, code: str, *, retryable: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Remote:
    """Where a file comes from, and who may see the key."""

    url: str
    api_key: str | None
    key_origin: str  # scheme://host[:port] of CivitAI: the only origin the key is sent to


def origin(url: str) -> str:
    """scheme://host[:port] of a URL, lower-cased."""
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{(parts.netloc or '').lower()}"


@dataclass(frozen=True, slots=True)
class Fetched:
    """A file downloaded whole: its SHA256 (hex), its size, and whether the server said how large it is."""

    sha256: str
    size: int
    sized: bool


async def fetch(
    session: aiohttp.ClientSession, source: Remote, part: PartFile, progress: Progress, gate: RateGate, limit: int | None = None
) -> Fetched:
    """Download into `part` (resuming what is there), never more than `limit` bytes (`too_long`:
    a server that announces or sends more is not sending the file asked for). With no limit and
    no length from the server, the filesystem's free space is looked at as the file grows.

    Every request passes the service's CivitAI rate-limit gate; a 429 closes it for all.
    """
    failures = 0
    furthest = await asyncio.to_thread(part.size)  # the most of the file ever on disk: progress is going past it
    while True:
        await gate.wait()
        try:
            return await _attempt(session, source, part, progress, limit)
        except DownloadFailed as exc:
            reached = await asyncio.to_thread(part.size)
            if exc.retryable and exc.code == "connection_lost" and reached > furthest:
                failures = 0  # it got further than ever: a server that closes every so often still gets there
            furthest = max(furthest, reached)
            if not exc.retryable or failures + 1 >= MAX_ATTEMPTS:
                raise
            if exc.code == "rate_limited":
                gate.limited(exc.retry_after or DEFAULT_RETRY_AFTER_S)
                delay = 0.0  # the gate holds this and every other CivitAI call
            else:
                delay = exc.retry_after if exc.retry_after is not None else BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
            logger.info("download of %s interrupted (%s); resuming in %.0f s", part.path.name, exc, max(delay, gate.remaining()))
            failures += 1
            await asyncio.sleep(delay)


async def _attempt(session: aiohttp.ClientSession, source: Remote, part: PartFile, progress: Progress, limit: int | None) -> Fetched:
    offset = await asyncio.to_thread(part.size)
    url = source.url
    for _hop in range(MAX_REDIRECTS + 1):
        headers = {"Accept-Encoding": "identity"}
        if source.api_key and origin(url) == source.key_origin:
            headers["Authorization"] = f"Bearer {source.api_key}"
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            async with session.get(url, headers=headers, allow_redirects=False) as response:
                if response.status in (301, 302, 303, 307, 308):
                    url = _next_hop(url, response.headers.get("Location"))
                    continue
                if response.status == 416 and offset:
                    await asyncio.to_thread(part.truncate, 0)  # the part does not fit what the server has: start over
                    raise DownloadFailed("the partial file did not match; starting over", "range_refused", retryable=True, retry_after=0)
                _check_status(response)
                try:
                    start, total = _start_and_total(response, offset)
                except DownloadFailed:
                    await asyncio.to_thread(part.truncate, 0)  # a range it cannot keep: start over from nothing
                    raise
                if total is not None and limit is not None and total > limit:
                    raise DownloadFailed(f"the server would send {total} bytes, more than the {limit} this file can be", "too_long")
                if total is not None:
                    await asyncio.to_thread(check_space, part, total, start)
                return await _stream(response, part, start, total, progress, limit)
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise DownloadFailed(f"the connection dropped ({type(exc).__name__})", "connection_lost", retryable=True) from None
    raise DownloadFailed(f"more than {MAX_REDIRECTS} redirects", "too_many_redirects")


def _next_hop(current: str, location: str | None) -> str:
    if not location:
        raise DownloadFailed("a redirect without a Location", "bad_redirect")
    target = urljoin(current, location)
    scheme = urlsplit(target).scheme.lower()
    if scheme not in ("http", "https"):
        raise DownloadFailed(f"a redirect to a {scheme or 'relative'} address was refused", "bad_redirect")
    if urlsplit(current).scheme.lower() == "https" and scheme != "https":
        raise DownloadFailed("a redirect from HTTPS to plain HTTP was refused", "insecure_redirect")
    return target


def _check_status(response: aiohttp.ClientResponse) -> None:
    status = response.status
    if status in (200, 206):
        return
    if status in (401, 403):
        raise DownloadFailed(
            "CivitAI refused the download: it needs a CivitAI API key (set CIVITAI_API_KEY), "
            "or the version is in early access or for members only",
            "civitai_key_required",
        )
    if status == 404:
        raise DownloadFailed("CivitAI has no file for this version", "not_found")
    if status == 429:
        raise DownloadFailed("CivitAI is limiting requests", "rate_limited", retryable=True, retry_after=_retry_after(response))
    if status >= 500:
        raise DownloadFailed(f"the server had an error (HTTP {status})", "upstream_error", retryable=True)
    raise DownloadFailed(f"the server answered HTTP {status}", "unexpected_status")


def check_space(part: PartFile, total: int, start: int | None = None) -> None:
    """Refuse before writing when the filesystem cannot take a file of `total` bytes written from
    `start` (the part's size when not given), and a margin."""
    free = shutil.disk_usage(part.path.parent).free
    needed = total - (part.size() if start is None else start) + FREE_SPACE_MARGIN
    if free < needed:
        raise DownloadFailed(f"not enough free space: {needed / 1e9:.2f} GB needed, {free / 1e9:.2f} GB free", "no_space")


def _retry_after(response: aiohttp.ClientResponse) -> float:
    return min(parse_retry_after(response.headers.get("Retry-After")), MAX_RETRY_AFTER_S)


def _start_and_total(response: aiohttp.ClientResponse, offset: int) -> tuple[int, int | None]:
    """Where the body starts in the file, and the file's full size when the server says."""
    if response.status == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if match is None or int(match.group(1)) != offset:
            raise DownloadFailed("the server resumed at another place; starting over", "bad_range", retryable=True, retry_after=0)
        total = None if match.group(3) == "*" else int(match.group(3))
        end, length = int(match.group(2)), response.content_length
        if (total is not None and end + 1 != total) or (length is not None and length != end + 1 - offset):
            raise DownloadFailed("the server's range and length do not agree; starting over", "bad_range", retryable=True, retry_after=0)
        return offset, total
    length = response.content_length
    return 0, length  # a 200 is the whole file, even when a range was asked for


@dataclass(slots=True)
class _Bounds:
    """What a body may bring: at most `limit` bytes; and with no size known at all (`unbounded`),
    room on the disk for the next SPACE_LOOK_EVERY and the margin, looked for that often."""

    part: PartFile
    limit: int | None
    unbounded: bool
    looked: int | None = None  # where the room was last looked for

    def passed(self, brought: int) -> bool:
        return self.limit is not None and brought > self.limit

    async def look_for_room(self, done: int) -> None:
        if self.unbounded and (self.looked is None or done - self.looked >= SPACE_LOOK_EVERY):
            await asyncio.to_thread(check_space, self.part, done + 2 * SPACE_LOOK_EVERY, done)  # this stretch and the next
            self.looked = done


async def _stream(
    response: aiohttp.ClientResponse, part: PartFile, start: int, total: int | None, progress: Progress, limit: int | None
) -> Fetched:
    hasher = hashlib.sha256()
    handle = part.handle
    await asyncio.to_thread(_hash_prefix, part, hasher, start)  # and cut the part there
    done = start
    bounds = _Bounds(part, limit, total is None and limit is None)
    await bounds.look_for_room(done)
    progress(done, total)
    chunks: list[bytes] = []
    gathered = 0
    # One block is written (one thread) and hashed (another) while the next arrives: file
    # writes and SHA256 both release the GIL, so the three overlap. Both threads run at a
    # lower CPU priority, so the map is answered first.
    loop = asyncio.get_running_loop()
    busy: tuple[asyncio.Future[None], ...] = ()
    try:
        try:
            # Chunks as they came off the socket: iter_any() joins everything buffered (up to
            # megabytes) into a new bytes on the event loop, which held it for milliseconds.
            async for chunk, _end_of_http_chunk in response.content.iter_chunks():
                if not chunk:
                    continue
                past_the_end = total is not None and done + gathered + len(chunk) >= total
                if past_the_end:  # never more than the file the server named: what follows is not of it
                    chunk = chunk[: total - done - gathered]  # type: ignore[operator]
                chunks.append(chunk)
                gathered += len(chunk)
                if bounds.passed(done + gathered):
                    chunks, gathered = [], 0  # what is past the limit is not written
                    raise DownloadFailed(f"the server sent more than the {limit} bytes this file can be", "too_long")
                if past_the_end:
                    break
                if gathered >= WRITE_BLOCK:
                    await asyncio.gather(*busy)
                    busy = (loop.run_in_executor(_THREADS, _write, handle, chunks), loop.run_in_executor(_THREADS, _hash, hasher, chunks))
                    done += gathered
                    chunks, gathered = [], 0
                    progress(done, total)
                    await bounds.look_for_room(done)
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
            for chunk in received_but_unread(response.content):
                if total is not None:
                    chunk = chunk[: max(0, total - done - gathered)]  # never past the file the server named
                chunks.append(chunk)
                gathered += len(chunk)
            raise
    finally:  # what arrived before a drop is good: keep it, so the resume starts after it
        await asyncio.gather(*busy)
        if chunks:
            await asyncio.gather(loop.run_in_executor(_THREADS, _write, handle, chunks), loop.run_in_executor(_THREADS, _hash, hasher, chunks))
            done += gathered
        await asyncio.to_thread(part.sync)
    if total is not None and done != total:
        raise DownloadFailed(f"the connection ended at {done} of {total} bytes", "connection_lost", retryable=True)
    progress(done, total if total is not None else done)
    return Fetched(hasher.hexdigest(), done, total is not None)


def received_but_unread(content: aiohttp.StreamReader) -> list[bytes]:
    """Bytes aiohttp had received but not handed out when the connection failed.

    Once a body fails, aiohttp's reader raises on every read, even with megabytes of good
    bytes still buffered (READ_BUFFER is 4 MiB): a server that closes every few megabytes
    would then lose them all, every time. They are taken from the reader's buffer, which is
    not public API: where it is missing, nothing is taken and the resume asks for them again."""
    buffer = getattr(content, "_buffer", None)
    if not buffer:
        return []
    received = list(buffer)
    offset = getattr(content, "_buffer_offset", 0)
    if offset and isinstance(offset, int):
        received[0] = received[0][offset:]
    buffer.clear()
    return [bytes(chunk) for chunk in received if chunk]


def _hash_prefix(part: PartFile, hasher: Any, length: int) -> None:
    """Hash the part's first `length` bytes and cut it there, ready to append."""
    handle = part.handle
    handle.seek(0)
    left = length
    while left:
        block = handle.read(min(WRITE_BLOCK, left))
        if not block:
            raise DownloadFailed("the partial file shrank while being resumed", "part_changed", retryable=True, retry_after=0)
        hasher.update(block)
        left -= len(block)
    part.truncate(length)


def _write(handle: BinaryIO, chunks: list[bytes]) -> None:
    start = handle.tell()
    handle.writelines(chunks)  # no joining: each chunk as it came
    handle.flush()
    # Start writing this block to disk now, without waiting: the fsync before the rename then
    # finds little left to do, instead of the whole file (about a second a 2 GB).
    start_writeback(handle.fileno(), start, handle.tell() - start)


def _hash(hasher: Any, chunks: list[bytes]) -> None:
    for chunk in chunks:
        hasher.update(chunk)


def _sync_file_range() -> Callable[[int, int, int], None] | None:
    """Linux's sync_file_range(SYNC_FILE_RANGE_WRITE) through libc, or None where there is none."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    function.restype = ctypes.c_int

    def start(fd: int, offset: int, length: int) -> None:
        function(fd, offset, length, SYNC_FILE_RANGE_WRITE)  # a failure only means the fsync does it all

    return start


SYNC_FILE_RANGE_WRITE = 2
_START_WRITEBACK = _sync_file_range() if sys.platform.startswith("linux") else None


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to begin writing a range to disk, without waiting for it (a no-op elsewhere)."""
    if _START_WRITEBACK is not None and length > 0:
        _START_WRITEBACK(fd, offset, length)


