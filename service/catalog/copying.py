"""Copying runs of a catalog out of the file it was read from, hashing every byte as read and as
written, so a save can prove that what it copied is what it planned on. Blocking: runs in the
save's worker thread, with one helper thread that hashes beside it."""

from __future__ import annotations

import functools
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO


class SourceChanged(Exception):
    """The file a document's runs come from is not the one they were cut from."""


COPY_BLOCK = 1 << 20


class Source:
    """The file a document with Verbatim runs was cut from, read once from start to end.

    Runs are copied out of it in order; every byte of it, copied or not, is hashed on the
    way, so `finish` says what the file held while the copy was taken (compare it with the
    digest the document was cut from: the bytes copied are those bytes)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.position = 0
        self.hasher = hashlib.sha256()
        self._buffer = memoryview(bytearray(COPY_BLOCK))

    def copy(self, start: int, end: int, handle: BinaryIO, hasher: Any) -> None:
        """Write the file's bytes start..end to `handle`, hashing them into `hasher` too."""
        if start < self.position:
            raise SourceChanged("runs out of order")
        self._pass(start)
        self._pass(end, handle, hasher)

    def finish(self) -> str:
        """Read the rest of the file; the digest of all of it."""
        while self._read(COPY_BLOCK):
            pass
        return self.hasher.hexdigest()

    def whole(self) -> bytes:
        """All of the file's bytes (hashed too, from where the copy had got to): the fallback."""
        self.position, self.hasher = 0, hashlib.sha256()
        parts = []
        while block := self._read(COPY_BLOCK):
            parts.append(bytes(block))
        return b"".join(parts)

    def _pass(self, end: int, handle: BinaryIO | None = None, hasher: Any = None) -> None:
        while self.position < end:
            if handle is None:
                block = self._read(min(COPY_BLOCK, end - self.position))
            else:  # a copied block is hashed twice (as read, as written): on two cores at once
                block = self._read(min(COPY_BLOCK, end - self.position), hashed=False)
                read_hashed = _beside().submit(self.hasher.update, block)
                try:
                    hasher.update(block)
                    handle.write(block)
                finally:
                    read_hashed.result()  # before the buffer is read into again, whatever happened
            if not block:
                raise SourceChanged("the file is shorter than it was")

    def _read(self, size: int, hashed: bool = True) -> memoryview:
        count = os.preadv(self.fd, [self._buffer[:size]], self.position)
        block = self._buffer[:count]
        if hashed:
            self.hasher.update(block)
        self.position += count
        return block


@functools.cache
def _beside() -> ThreadPoolExecutor:
    """One thread that hashes beside the one copying (hashlib lets go of the GIL for blocks)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="catalog-hash")


os.register_at_fork(after_in_child=_beside.cache_clear)  # a forked child has the executor but not its thread
