"""A published map body: joined, sliced and gzipped on first demand, off the event loop when large."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

JOIN_IN_THREAD_PARTS = 20_000  # a map body of more parts than this (~10,000 versions) is joined off the event loop
# A map body larger than this is never joined into one bytes: it is sent in slices of about
# SEND_SLICE, each joined from the parts as it goes; a change rejoins only the slices it touched.
KEEP_JOINED_BYTES = 8 * 1024 * 1024
SEND_SLICE = 1024 * 1024  # each is one write to the socket (see http/views.py, STREAM_CHUNK)
GZIP_LEVEL = 6
FAST_GZIP_LEVEL = 1  # for bodies kept in slices (over KEEP_JOINED_BYTES): twice as fast, 10 % larger


class MapSnapshot:
    """One published answer: its tag, and its body and gzip variant made on first demand.

    Publishing keeps only the parts (a copy of their list, not of their bytes); the body is
    joined when a client needs it, once, in a worker thread when it is large. A burst of
    changes nobody fetched in between costs no join at all.
    """

    __slots__ = ("etag", "_parts", "_body", "_joining", "_gzip", "_sliced", "_cache")

    def __init__(self, parts: tuple[bytes, ...], etag: str, cache: SliceCache | None = None) -> None:
        self.etag = etag
        self._parts: tuple[bytes, ...] | None = parts
        self._body: bytes | None = None
        self._joining: asyncio.Future[bytes] | None = None
        self._gzip: asyncio.Future[bytes] | None = None
        self._sliced: asyncio.Future[Sliced | None] | None = None
        self._cache = cache if cache is not None else SliceCache()

    @property
    def body(self) -> bytes:
        """The body, joined here if no one asked for it before."""
        if self._body is None:
            self._keep(b"".join(self._parts or ()))
        assert self._body is not None
        return self._body

    def _keep(self, body: bytes) -> bytes:
        self._body, self._parts = body, None
        return body

    async def full_body(self) -> bytes:
        """The body; a large one joined in a worker thread, concurrent callers sharing the job."""
        if self._body is not None:
            return self._body
        if self._parts is not None and len(self._parts) < JOIN_IN_THREAD_PARTS:
            return self.body
        if self._joining is None:
            parts = self._parts
            self._joining = asyncio.ensure_future(asyncio.to_thread(b"".join, parts or ()))
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
        if self._body is not None or parts is None or len(parts) < JOIN_IN_THREAD_PARTS:
            return None
        if self._sliced is None:
            self._sliced = asyncio.ensure_future(self._slice(parts))
        return await asyncio.shield(self._sliced)

    async def _slice(self, parts: tuple[bytes, ...]) -> Sliced | None:
        sliced = await asyncio.to_thread(slice_parts, parts, self._cache.latest)
        if sliced is not None:
            self._cache.latest = sliced
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
    """A large map body kept as slices of about SEND_SLICE bytes, never as one bytes: `cuts`
    says where in the parts each slice starts (and where the last ends)."""

    size: int
    parts: tuple[bytes, ...]
    cuts: list[int]
    slices: list[bytes]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.slices)


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


def slice_parts(parts: tuple[bytes, ...], before: Sliced | None) -> Sliced | None:
    """The body in slices (blocking: call it in a thread); None when it is small enough to keep joined.

    Slices start where `before`'s did, so a slice whose parts are all the same objects as in
    `before` is the same bytes, taken over without a copy: a change to a few versions joins a
    few slices of a mebibyte, and a body still being sent shares all the others with the new one.
    """
    size = sum(map(len, parts))
    if size <= KEEP_JOINED_BYTES:
        return None
    count = len(parts)
    if before is not None and len(before.cuts) > 1 and before.cuts[-1] <= count:
        cuts = before.cuts[:-1]  # the last slice holds the tail (by_model), and what was appended before it
    else:
        cuts, before = [0], None
    total, mark = 0, SEND_SLICE
    for at, length in enumerate(map(len, parts[cuts[-1] :]), cuts[-1] + 1):
        total += length
        if total >= mark and at < count:
            cuts.append(at)
            mark = total + SEND_SLICE
    cuts.append(count)
    slices: list[bytes] = []
    old = before or Sliced(0, (), [0], [])
    for number, (start, stop) in enumerate(zip(cuts, cuts[1:])):
        if number < len(old.slices) and old.cuts[number + 1] == stop and parts[start:stop] == old.parts[start:stop]:
            slices.append(old.slices[number])  # the same objects (compared by identity first, at C speed): the same bytes
        else:
            slices.append(b"".join(parts[start:stop]))
    return Sliced(size, parts, cuts, slices)


def gzip_etag(etag: str) -> str:
    """The tag of the gzip variant of the answer tagged `etag`."""
    return etag[:-1] + '-gz"'
