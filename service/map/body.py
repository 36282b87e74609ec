"""A published map body: joined, sliced and gzipped on first demand, off the event loop when large."""

from __future__ import annotations

import asyncio
import itertools
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

JOIN_IN_THREAD_PARTS = 20_000  # a map body of more parts than this (~10,000 versions) is joined off the event loop
# A map body larger than this is never joined into one bytes: it is sent in slices, one for
# each chunk of its parts (`chunks.ChunkedParts`, about a mebibyte), each joined as it goes; a
# change rejoins only the slices of the chunks it touched.
KEEP_JOINED_BYTES = 8 * 1024 * 1024
# A body larger than this keeps no slices either: each is joined as it is sent or compressed,
# and let go: kept, they would hold every head of a huge map a second time.
KEEP_SLICES_BYTES = 64 * 1024 * 1024
GZIP_LEVEL = 6
FAST_GZIP_LEVEL = 1  # for bodies kept in slices (over KEEP_JOINED_BYTES): twice as fast, 10 % larger

Chunks = tuple[tuple[bytes, ...], ...]


class MapSnapshot:
    """One published answer: its tag, and its body and gzip variant made on first demand.

    Publishing keeps only the parts, in chunks (`ChunkedParts.chunks`: a copy of the chunks
    that changed, not of their bytes); the body is joined when a client needs it, once, in a
    worker thread when it is large. A burst of changes nobody fetched in between costs no join.
    """

    __slots__ = ("etag", "_parts", "_body", "_joining", "_gzip", "_sliced", "_cache")

    def __init__(self, chunks: Chunks, etag: str, cache: SliceCache | None = None) -> None:
        self.etag = etag
        self._parts: Chunks | None = chunks
        self._body: bytes | None = None
        self._joining: asyncio.Future[bytes] | None = None
        self._gzip: asyncio.Future[bytes] | None = None
        self._sliced: asyncio.Future[Sliced | None] | None = None
        self._cache = cache if cache is not None else SliceCache()

    @property
    def body(self) -> bytes:
        """The body, joined here if no one asked for it before."""
        if self._body is None:
            self._keep(_joined(self._parts or ()))
        assert self._body is not None
        return self._body

    def _keep(self, body: bytes) -> bytes:
        self._body, self._parts = body, None
        return body

    async def full_body(self) -> bytes:
        """The body; a large one joined in a worker thread, concurrent callers sharing the job."""
        if self._body is not None:
            return self._body
        if self._parts is not None and _count(self._parts) < JOIN_IN_THREAD_PARTS:
            return self.body
        if self._joining is None:
            parts = self._parts
            self._joining = asyncio.ensure_future(asyncio.to_thread(_joined, parts or ()))
        body = await asyncio.shield(self._joining)
        return self._body if self._body is not None else self._keep(body)

    @property
    def gzip_etag(self) -> str:
        """The tag of the gzip variant (a different representation, so a different tag)."""
        return gzip_etag(self.etag)

    async def sliced(self) -> Sliced | None:
        """A large body as the slices it is sent in (made once, in a worker thread, taking over
        the unchanged slices of the body before); None when the body is small enough to be
        kept whole (`full_body`)."""
        parts = self._parts
        if self._body is not None or parts is None or _count(parts) < JOIN_IN_THREAD_PARTS:
            return None
        if self._sliced is None:
            self._sliced = asyncio.ensure_future(self._slice(parts))
        return await asyncio.shield(self._sliced)

    async def _slice(self, parts: Chunks) -> Sliced | None:
        sliced = await asyncio.to_thread(slice_parts, parts, self._cache.latest)
        if sliced is not None:
            self._cache.latest = sliced if sliced.slices is not None else None
        return sliced

    async def gzip_body(self) -> bytes:
        """The body compressed once, in a worker thread; concurrent callers share one job."""
        if self._gzip is None:
            sliced = await self.sliced()
            pieces = sliced if sliced is not None else (await self.full_body(),)
            if self._gzip is None:
                self._gzip = asyncio.ensure_future(asyncio.to_thread(gzipped, pieces))
        if self._gzip.done():
            return self._gzip.result()
        return await asyncio.shield(self._gzip)


@dataclass(frozen=True, slots=True)
class Sliced:
    """A large map body as slices, one for each chunk of its parts, never as one bytes: kept
    (`slices`), or for a huge body (None) joined one at a time as they are read."""

    size: int
    chunks: Chunks
    slices: list[bytes] | None

    def __iter__(self) -> Iterator[bytes]:
        if self.slices is None:
            return map(b"".join, self.chunks)
        return iter(self.slices)


def _joined(chunks: Chunks) -> bytes:
    return b"".join(itertools.chain.from_iterable(chunks))


def _count(chunks: Chunks) -> int:
    return sum(map(len, chunks))


def gzipped(pieces: Iterable[bytes]) -> bytes:
    """A body given in pieces, gzipped a piece at a time (blocking: call it in a thread)."""
    level = FAST_GZIP_LEVEL if isinstance(pieces, Sliced) else GZIP_LEVEL  # a page waits for the first one
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: the gzip container
    out = [compressor.compress(piece) for piece in pieces]
    out.append(compressor.flush())
    return b"".join(out)


class SliceCache:
    """The slices of the latest large body, for the next one to take over the slices that did not change."""

    __slots__ = ("latest",)

    def __init__(self) -> None:
        self.latest: Sliced | None = None


def slice_parts(chunks: Chunks, before: Sliced | None) -> Sliced | None:
    """The body in slices, one for each chunk (blocking: call it in a thread); None when it is
    small enough to keep joined. Over KEEP_SLICES_BYTES the slices are not kept: each is
    joined when it is read.

    A chunk that is the same as `before`'s in its place (the very tuple, when no part of it
    was written since, else found equal part by part) is the same bytes: its slice is taken
    over without a copy. A change to a few versions joins a few slices of about a mebibyte,
    and a body still being sent shares all the others with the new one.
    """
    old_chunks, old_slices = (before.chunks, before.slices) if before is not None and before.slices is not None else ((), [])
    kept: list[bytes | None] = [
        old_slices[number] if number < len(old_chunks) and (old_chunks[number] is chunk or old_chunks[number] == chunk) else None
        for number, chunk in enumerate(chunks)
    ]
    size = sum(len(chunk_slice) if chunk_slice is not None else sum(map(len, chunk)) for chunk_slice, chunk in zip(kept, chunks))
    if size <= KEEP_JOINED_BYTES:
        return None
    if size > KEEP_SLICES_BYTES:
        return Sliced(size, chunks, None)
    slices = [chunk_slice if chunk_slice is not None else b"".join(chunk) for chunk_slice, chunk in zip(kept, chunks)]
    return Sliced(size, chunks, slices)


def gzip_etag(etag: str) -> str:
    """The tag of the gzip variant of the answer tagged `etag`."""
    return etag[:-1] + '-gz"'
