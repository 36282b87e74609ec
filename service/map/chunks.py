"""The map body's parts in chunks, so that publishing a copy costs the chunks that changed.

A published body must not change while it is sent, and the layout changes under it with every
status that moves. Copying every part at each publish costs the whole map (three parts a
version: at a million versions, about a tenth of a second of the event loop for each file
that lands). Parts here are written through `ChunkedParts`, which notes the chunks each write
touches; `chunks()` copies only those, and hands back the same tuple object for every chunk
left alone, which the body's slices take over without comparing a byte (`body.slice_parts`).
"""

from __future__ import annotations

CHUNK_PARTS = 3 * 4096  # parts in a chunk: about a mebibyte of map body, three parts a version


class ChunkedParts:
    """A list of body parts that knows which chunks of CHUNK_PARTS changed since it was last copied."""

    __slots__ = ("items", "_chunks", "_dirty")

    def __init__(self, items: list[bytes]) -> None:
        self.items = items  # the parts, in order: read freely; write through this object
        self._chunks: list[tuple[bytes, ...]] = []
        self._dirty: set[int] | None = None  # the chunks written since the last copy (None: all of them)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, at: int) -> bytes:
        return self.items[at]

    def __setitem__(self, at: int, part: bytes) -> None:
        items = self.items
        items[at] = part
        if self._dirty is not None:
            self._dirty.add((at if at >= 0 else at + len(items)) // CHUNK_PARTS)

    def insert(self, at: int, parts: list[bytes]) -> None:
        """Insert parts before position `at` (counted from the end when negative): every chunk
        from there on holds other parts now."""
        items = self.items
        at = max(0, at if at >= 0 else at + len(items))  # as a list's slice would place them
        items[at:at] = parts
        if self._dirty is not None:
            self._dirty.update(range(at // CHUNK_PARTS, (len(items) - 1) // CHUNK_PARTS + 1))

    def chunks(self) -> tuple[tuple[bytes, ...], ...]:
        """The parts as they are now, in chunks of CHUNK_PARTS that never change: a chunk not
        written since the last call is the very tuple that call returned."""
        items, chunks, size = self.items, self._chunks, CHUNK_PARTS
        count = -(-len(items) // size)
        del chunks[count:]
        dirty = range(count) if self._dirty is None else sorted(self._dirty.union(range(len(chunks), count)))
        for number in dirty:
            if number < count:
                chunk = tuple(items[number * size : (number + 1) * size])
                if number < len(chunks):
                    chunks[number] = chunk
                else:
                    chunks.append(chunk)
        self._dirty = set()
        return tuple(chunks)
