"""A catalog read as text cut at its entries, so that a change costs what changed, not the file.

The text is cut where each entry of a category's "models" list ends, in whatever layout it
is written (`layout.py`: indented any way, or on one line): it falls into chunks of one
entry each, with the structure before it. A chunk's key is its hash. A reading keeps what
each key's chunk holds (the entry as the map shows it, its version, its file, the structure
before it), so the next reading parses only chunks it has not seen, and the map is told
only about versions that moved.

Nothing is taken on trust: each new entry must parse as an object on its own, and the
structure around the entries is checked as a whole (`frame.py`). A text that does not cut
this way (an entry that is not an object, entries laid out two ways) raises `Unsplittable`
and is read whole.

Chunk keys are Python's 64-bit keyed hash of the chunk's bytes: two different chunks of
one run sharing a key is a 1-in-10^9 event at 100,000 entries, and cannot be forced from
outside (the key is random per process).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import operator
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from ..map.entry import (
    UNUSABLE,
    MapEntry,
    shown_entry,
)
from .codec import (
    CatalogFormatError,
    load_json,
    plain_numbers,
)
from .document import version_id_of
from .frame import checked_frame
from .layout import NATIVE, Layout, Unsplittable, entry_lead, inline_entries

WINDOW = 1 << 20  # cut at most this much text per C call: the event loop gets the GIL between


@dataclass(slots=True)
class Piece:
    """What one chunk of text holds: the structure before its entry, and the entry.

    Never changed once made, but not a frozen dataclass: one is made for every entry of every
    reading, and a frozen one's `__init__` (a call of `object.__setattr__` per field) costs
    four times as much."""

    prefix: bytes  # the text between the previous entry's end and this entry's "{"
    length: int  # of the whole chunk (prefix and entry, without END)
    version: int | None  # the entry's version id, as plans look for it
    file: str | None  # the entry's file, as plans look for it
    shown: MapEntry | None  # the entry as the map shows it
    unusable: bool = False  # left out of the map: an id that is not an id
    content: int = 0  # the hash of the entry as orjson writes it (0: none), whatever its layout


@dataclass(frozen=True, slots=True)
class Window:
    """A stretch of a text that ends where an entry does, and the hash of its bytes: found
    again unchanged in the next reading, its chunks are taken over without being looked at."""

    start: int
    end: int  # just after the END of its last chunk
    first: int  # the position of its first chunk
    stop: int  # and of the chunk after its last
    key: bytes  # `window_key` of its bytes


# Where each chunk's END ends in the text, in file order: 8 bytes each, where a list holds a
# pointer and an int object of 32 bytes (40 MB at a million entries).
Ends = array


def ends_of(values: Iterable[int] = ()) -> Ends:
    return array("q", values)


def window_key(data: memoryview | bytes) -> bytes:
    # SHA-256: as fast as Python's hash here (SHA extensions), and it lets go of the GIL.
    return hashlib.sha256(data).digest()


@dataclass(frozen=True)
class Text:
    """One reading of a catalog's text: its chunks in order, what each holds, and the structure.

    Immutable once cut, so a transaction in a worker thread may plan against it while the
    event loop goes on; the lookups a plan needs are worked out on first use and kept.
    """

    digest: str
    size: int
    keys: list[int]  # chunk keys, in file order
    pieces: dict[int, Piece]  # every key of `keys`
    tail: bytes  # after the last entry
    windows: tuple[Window, ...] = ()  # in order; gaps where nothing is known of the bytes
    layout: Layout = NATIVE

    @functools.cached_property
    def frame(self) -> bytes:
        """The structure a plan edits: the document as JSON with each models list replaced by
        how many entries it holds. A cut, a re-cut and the save that wrote the text know it at
        once; when the text it was re-cut from did not, it is worked out on first use
        (Unsplittable when it is too large)."""
        return checked_frame(self.pieces, self.keys, self.tail)

    @functools.cached_property
    def unusable(self) -> int:
        """How many entries the map leaves out for an id that is not an id."""
        return sum(map(PIECE_UNUSABLE, map(self.pieces.__getitem__, self.keys)))

    @functools.cached_property
    def ends(self) -> Ends:
        """Where each chunk's END ends in the text (C-speed: no Python loop over entries)."""
        return self._ends_of(map(self.pieces.__getitem__, self.keys))

    def _ends_of(self, ordered: Iterable[Piece]) -> Ends:
        step = len(self.layout.end)
        return ends_of(map(operator.add, itertools.accumulate(map(PIECE_LENGTH, ordered)), itertools.count(step, step)))

    def work_out_columns(self, ordered: list[Piece]) -> None:
        """`ends`, `versions` and `files` from the pieces in file order, looked up once for all three."""
        known = self.__dict__
        if "ends" not in known:
            known["ends"] = self._ends_of(ordered)
        if "versions" not in known:
            known["versions"] = list(map(PIECE_VERSION, ordered))
        if "files" not in known:
            known["files"] = list(map(PIECE_FILE, ordered))

    @functools.cached_property
    def versions(self) -> list[int | None]:
        """Each chunk's entry's version, in file order."""
        return list(map(PIECE_VERSION, map(self.pieces.__getitem__, self.keys)))

    @functools.cached_property
    def files(self) -> list[str | None]:
        """Each chunk's entry's file, in file order."""
        return list(map(PIECE_FILE, map(self.pieces.__getitem__, self.keys)))

    def positions(self, column: list[Any], values: set[Any]) -> set[int]:
        """Where a column holds one of the values: a scan in C per value when there are few,
        one pass otherwise."""
        if len(values) > 32:
            return {at for at, value in enumerate(column) if value in values}
        found: set[int] = set()
        for value in values:
            at = -1
            while True:
                try:
                    at = column.index(value, at + 1)
                except ValueError:
                    break
                found.add(at)
        return found

    def chunk_span(self, position: int) -> tuple[int, int]:
        """Where the chunk at this position is: from the end of the entry before to the end of its own "}"."""
        end = self.ends[position]
        return end - len(self.layout.end) - self.pieces[self.keys[position]].length, end

    def entry_span(self, position: int) -> tuple[int, int]:
        """Where the entry at this position is in the text: from its "{" to the end of its "}"."""
        start, end = self.chunk_span(position)
        return start + len(self.pieces[self.keys[position]].prefix), end


@dataclass(frozen=True, slots=True)
class Loaded:
    """What the map takes from one reading of a catalog: its first entry of each version, how
    many entries it left out, and the cut text when there is one (None: read whole)."""

    digest: str
    shown: dict[int, MapEntry]
    unusable: int
    text: Text | None
    changed: set[int] | None = None  # versions whose shown entry may differ from the reading before (None: any)
    partial: bool = False  # only the stretch that changed was read: no large allocation to give back


class StaleText(Exception):
    """The file no longer holds the text that was cut: read it again."""


@dataclass(frozen=True, slots=True)
class Recut:
    """What a re-cut replaced: from position `kept` on, `before`'s chunks `old` by the chunks `new`."""

    kept: int
    old: list[int]
    new: list[int]


@dataclass(slots=True)
class _Region:
    """Chunks cut from a stretch of text: their keys, where each ends, the windows, where it stopped."""

    keys: list[int]
    ends: Ends
    windows: list[Window]
    end: int


def cut_region(
    raw: bytes, start: int, stop: int, known: dict[int, Piece], found: dict[int, Piece], name: str,
    layout: Layout, first: int = 0, base: int = 0, similar: dict[int, Piece] | None = None, given: list[Piece] | None = None,
) -> _Region:
    """Cut raw[start:stop] into chunks, a window at a time, reading the pieces `known` lacks into
    `found` (entries `similar` holds taken from it: `read_piece`), or taking them from `given`,
    the pieces of the whole text in order as a worker process read them. `raw` holds the text
    from position `base` on: the region's positions are the text's."""
    view = memoryview(raw)
    region = _Region([], ends_of(), [], start + base)
    prefixes: dict[bytes, bytes] = {layout.plain: layout.plain}  # one object for each distinct structure
    step = len(layout.end)
    for at, end, chunks in _windows(raw, start, stop, layout):
        window = list(map(hash, chunks))
        count = len(region.keys) + first
        if given is not None:
            _take_given(window, chunks, found, given, count)
        elif not known.keys() >= set(window):  # the usual window has nothing new (set operations run in C)
            exact = plain_numbers(view[at:end])  # once for the window, not for each of its entries
            for key, chunk in zip(window, chunks):
                if key not in known and key not in found:
                    found[key] = read_piece(chunk, name, prefixes, layout, exact, similar)
        region.windows.append(Window(at + base, end + base, count, count + len(window), window_key(view[at:end])))
        region.ends.extend(map(operator.add, itertools.accumulate(map(len, chunks)), range(at + base + step, end + base + step, step)))
        region.keys += window
        region.end = end + base
    return region


def _take_given(window: list[int], chunks: list[bytes], found: dict[int, Piece], given: list[Piece], first: int) -> None:
    """The pieces of a window's chunks, by their place in the text; Unsplittable when a chunk
    is not the one the worker cut there (another length: the text is not the one it read)."""
    if first + len(chunks) > len(given):
        raise Unsplittable("the text has more chunks than the worker cut")
    for at, (key, chunk) in enumerate(zip(window, chunks), first):
        piece = given[at]
        if piece.length != len(chunk):
            raise Unsplittable("a chunk is not the one the worker cut")
        found.setdefault(key, piece)


def checked_text(text: Text) -> Text:
    text.__dict__["frame"] = checked_frame(text.pieces, text.keys, text.tail)
    return text


def _windows(raw: bytes, start: int, stop: int, layout: Layout) -> Iterator[tuple[int, int, list[bytes]]]:
    """The chunks of raw[start:stop], a window at a time (each window of an indented text one C
    call, about a millisecond of GIL): where the window starts, where its last chunk's end mark
    ends, its chunks."""
    if layout.inline:
        yield from _inline_windows(raw, start, stop)
        return
    end_mark = layout.end
    position = start
    while position < stop:
        end = raw.rfind(end_mark, position, min(position + WINDOW, stop))
        if end < 0:
            end = raw.find(end_mark, position + WINDOW - len(end_mark), stop)
            if end < 0:
                return
        yield position, end + len(end_mark), raw[position:end].split(end_mark)
        position = end + len(end_mark)


def _inline_windows(raw: bytes, start: int, stop: int) -> Iterator[tuple[int, int, list[bytes]]]:
    """`_windows` of a text on one line: its entries found by scanning, gathered into windows."""
    at, chunks = start, []
    for chunk_start, end in inline_entries(raw, start, stop):
        chunks.append(raw[chunk_start : end - 1])  # without the entry's "}", its end mark
        if end - at >= WINDOW:
            yield at, end, chunks
            at, chunks = end, []
    if chunks:
        yield at, at + sum(map(len, chunks)) + len(chunks), chunks


def read_piece(
    chunk: bytes, name: str, prefixes: dict[bytes, bytes], layout: Layout = NATIVE, plain: bool = False, similar: dict[int, Piece] | None = None
) -> Piece:
    """What a chunk holds (Unsplittable when it holds no entry). `plain`: its text is known to
    hold no number orjson would read otherwise than the standard library (`plain_numbers`).
    `similar`: pieces of another cut by their `content`; an entry found there is shown as it
    was (the same objects), not worked out again."""
    lead = entry_lead(chunk) if layout.inline else chunk.rfind(layout.open)
    if lead < 0:
        raise Unsplittable("a chunk has no entry")
    lead += layout.lead
    try:
        entry = orjson.loads(chunk[lead:] + layout.end) if plain else load_json(chunk[lead:] + layout.end)
    except (CatalogFormatError, orjson.JSONDecodeError):
        raise Unsplittable("an entry does not parse on its own") from None
    if not isinstance(entry, dict):
        raise Unsplittable("an entry is not an object")
    prefix = chunk[:lead]
    prefix = prefixes.setdefault(prefix, prefix)
    length = shared_length(len(chunk))
    try:
        content = hash(orjson.dumps(entry)) or 1
    except orjson.JSONEncodeError:  # an integer beyond 64 bits: never taken for another
        content = 0
    if similar and content and (same := similar.get(content)) is not None:
        return Piece(prefix, length, same.version, same.file, same.shown, same.unusable, content)
    shown = shown_entry(entry, name)
    file = entry.get("file")
    return Piece(
        prefix,
        length,
        version_id_of(entry),
        file if isinstance(file, str) else None,
        None if shown is UNUSABLE else shown,
        shown is UNUSABLE,
        content,
    )


_LENGTHS: dict[int, int] = {}


def shared_length(length: int) -> int:
    """The one int object of this value that every piece of this length holds."""
    return _LENGTHS.setdefault(length, length)

PIECE_SHOWN = operator.attrgetter("shown")
PIECE_VERSION = operator.attrgetter("version")
PIECE_FILE = operator.attrgetter("file")
PIECE_LENGTH = operator.attrgetter("length")
PIECE_UNUSABLE = operator.attrgetter("unusable")
