"""A catalog read as text cut at its entries, so that a change costs what changed, not the file.

Nearly every catalog is written with two-space indents (this service, orjson's and Python's
`indent=2`): each entry of a category's "models" list then ends with a line of eight spaces
and "}". Cut there, the text falls into chunks of one entry each, with the structure before
it. A chunk's key is its hash. A reading keeps what each key's chunk holds (the entry as
the map shows it, its version, its file, the structure before it), so the next reading
parses only chunks it has not seen, and the map is told only about versions that moved.

Nothing is taken on trust. The structure, with every entry replaced by a 0, is parsed as
JSON and must hold exactly one 0 for each entry, all of them in categories' "models"
lists; each new entry must parse as an object on its own. Both true, the whole text is
valid JSON with those entries in those places. A text that does not cut this way
(minified, tabs, other indents, an entry that is not an object) raises `Unsplittable`
and is read whole, as before.

Chunk keys are Python's 64-bit keyed hash of the chunk's bytes: two different chunks of
one run sharing a key is a 1-in-10^9 event at 100,000 entries, and cannot be forced from
outside (the key is random per process).
"""

from __future__ import annotations

import bisect
import collections
import functools
import hashlib
import itertools
import operator
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from ..map.entry import UNUSABLE, MapEntry, shown_entry
from .codec import (
    ENTRY_NEXT,
    CatalogFormatError,
    CatalogUnwritable,
    Verbatim,
    check_shape,
    load_json,
    serialize_catalog,
)
from .document import Doc, version_id_of

END = b"\n        }"  # the last line of an entry of a models list
OPEN = b"\n        {\n"  # its first line
LEAD = len(OPEN) - 2  # from where OPEN is found to the entry's "{"
PLAIN = b",\n        "  # the structure between two entries of one list, as written here
WINDOW = 1 << 20  # cut at most this much text per C call: the event loop gets the GIL between
SKELETON_LIMIT = 8 << 20  # structure beyond this is not a catalog worth cutting: read whole


class Unsplittable(Exception):
    """The text does not cut into entries this way; read it whole."""


@dataclass(frozen=True, slots=True)
class Piece:
    """What one chunk of text holds: the structure before its entry, and the entry."""

    prefix: bytes  # the text between the previous entry's end and this entry's "{"
    length: int  # of the whole chunk (prefix and entry, without END)
    version: int | None  # the entry's version id, as plans look for it
    file: str | None  # the entry's file, as plans look for it
    shown: MapEntry | None  # the entry as the map shows it
    unusable: bool = False  # left out of the map: an id that is not an id


@dataclass(frozen=True, slots=True)
class Window:
    """A stretch of a text that ends where an entry does, and the hash of its bytes: found
    again unchanged in the next reading, its chunks are taken over without being looked at."""

    start: int
    end: int  # just after the END of its last chunk
    first: int  # the position of its first chunk
    stop: int  # and of the chunk after its last
    key: bytes  # `_window_key` of its bytes


def _window_key(data: memoryview | bytes) -> bytes:
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

    @functools.cached_property
    def frame(self) -> bytes:
        """The structure a plan edits: the document as JSON with each models list replaced by
        how many entries it holds. A cut, a re-cut and the save that wrote the text know it at
        once; when the text it was re-cut from did not, it is worked out on first use
        (Unsplittable when it is too large)."""
        return _checked_frame(self.pieces, self.keys, self.tail)

    @functools.cached_property
    def unusable(self) -> int:
        """How many entries the map leaves out for an id that is not an id."""
        return sum(map(_UNUSABLE, map(self.pieces.__getitem__, self.keys)))

    @functools.cached_property
    def ends(self) -> list[int]:
        """Where each chunk's END ends in the text (C-speed: no Python loop over entries)."""
        lengths = map(operator.attrgetter("length"), map(self.pieces.__getitem__, self.keys))
        return [end + len(END) * (position + 1) for position, end in enumerate(itertools.accumulate(lengths))]

    @functools.cached_property
    def versions(self) -> list[int | None]:
        """Each chunk's entry's version, in file order."""
        return list(map(_PIECE_VERSION, map(self.pieces.__getitem__, self.keys)))

    @functools.cached_property
    def files(self) -> list[str | None]:
        """Each chunk's entry's file, in file order."""
        return list(map(_PIECE_FILE, map(self.pieces.__getitem__, self.keys)))

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
        return end - len(END) - self.pieces[self.keys[position]].length, end

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


def cut(raw: bytes, name: str, digest: str, before: Text | None) -> Text:
    """Cut a catalog's text into entries, reusing what `before` knows of unchanged chunks.

    Windows of `before` found unchanged at the start of the text, and at its end (shifted by
    the change in size), are taken over whole, chunks and all; only the text between them is
    split and looked at chunk by chunk. Raises Unsplittable when the text does not cut (read
    it whole: that also says precisely why a broken file is broken), CatalogFormatError when
    it is cut but not a catalog.
    """
    if before is not None and before.windows:
        done = _recut(_InMemory(raw), name, digest, before)
        if done is not None:
            return done[0]
    known = before.pieces if before is not None else {}
    found: dict[int, Piece] = {}  # pieces read from this text
    region = _cut_region(raw, 0, len(raw), known, found, name)
    keys = region.keys
    tail = raw[region.end :] if region.end else raw
    pieces = dict(zip(keys, map(known.get, keys))) if known else {}
    pieces.update(found)
    return _checked(Text(digest, len(raw), keys, pieces, tail, tuple(region.windows)))


def recut_file(fd: int, size: int, name: str, digest: str, before: Text) -> tuple[Text, Recut] | None:
    """The cut of the file open at `fd` (`size` bytes), `before`'s windows taken over where they
    are found unchanged, reading no more of the file than the windows it checks and the stretch
    between them: the text is never all in memory. None when too little is known (cut the
    whole text); StaleText when the file shrank while it was read."""
    return _recut(_OnDisk(fd, size), name, digest, before)


@dataclass(frozen=True, slots=True)
class Recut:
    """What a re-cut replaced: from position `kept` on, `before`'s chunks `old` by the chunks `new`."""

    kept: int
    old: list[int]
    new: list[int]


class _InMemory:
    """A text to re-cut that is held whole."""

    def __init__(self, raw: bytes) -> None:
        self.raw, self.size, self._view = raw, len(raw), memoryview(raw)

    def key(self, start: int, end: int) -> bytes:
        return _window_key(self._view[start:end])

    def endswith(self, tail: bytes) -> bool:
        return self.raw.endswith(tail)

    def stretch(self, start: int, stop: int) -> tuple[bytes, int]:
        """Bytes that hold text[start:stop], and where the first of them is in the text."""
        return self.raw, 0


class _OnDisk:
    """A text to re-cut that is read from its file as needed, a window at a time, into one buffer."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd, self.size = fd, size
        self._buffer = bytearray()

    def _read(self, start: int, end: int) -> memoryview:
        if len(self._buffer) < end - start:
            self._buffer = bytearray(end - start)
        view = memoryview(self._buffer)[: end - start]
        if os.preadv(self.fd, [view], start) != end - start:
            raise StaleText()
        return view

    def key(self, start: int, end: int) -> bytes:
        return _window_key(self._read(start, end))

    def endswith(self, tail: bytes) -> bool:
        return len(tail) <= self.size and self._read(self.size - len(tail), self.size) == tail

    def stretch(self, start: int, stop: int) -> tuple[bytes, int]:
        data = os.pread(self.fd, stop - start, start)
        if len(data) != stop - start:
            raise StaleText()
        return data, start


@dataclass(slots=True)
class _Region:
    """Chunks cut from a stretch of text: their keys, where each ends, the windows, where it stopped."""

    keys: list[int]
    ends: list[int]
    windows: list[Window]
    end: int


def _cut_region(
    raw: bytes, start: int, stop: int, known: dict[int, Piece], found: dict[int, Piece], name: str, first: int = 0, base: int = 0
) -> _Region:
    """Cut raw[start:stop] into chunks, a window at a time, reading the pieces `known` lacks into
    `found`. `raw` holds the text from position `base` on: the region's positions are the text's."""
    view = memoryview(raw)
    region = _Region([], [], [], start + base)
    prefixes: dict[bytes, bytes] = {PLAIN: PLAIN}  # one object for each distinct structure
    for at, end, chunks in _windows(raw, start, stop):
        window = list(map(hash, chunks))
        if not known.keys() >= set(window):  # the usual window has nothing new (set operations run in C)
            for key, chunk in zip(window, chunks):
                if key not in known and key not in found:
                    found[key] = _read_piece(chunk, name, prefixes)
        count = len(region.keys) + first
        region.windows.append(Window(at + base, end + base, count, count + len(window), _window_key(view[at:end])))
        region.ends += map(operator.add, itertools.accumulate(map(len, chunks)), range(at + base + len(END), end + base + len(END), len(END)))
        region.keys += window
        region.end = end + base
    return region


def _recut(source: _InMemory | _OnDisk, name: str, digest: str, before: Text) -> tuple[Text, Recut] | None:
    """The cut of a text that kept `before`'s windows at its start and end; None when too little
    of it is known to be worth it, or the stretch between does not cut on its own.

    When the structure around the entries is found unchanged but for how many entries its
    lists hold (`_same_structure`), it is valid as `before`'s was: it is not parsed again, and
    its frame is `before`'s with the counts moved (`_recounted`)."""
    size, windows = source.size, before.windows
    delta = size - before.size
    head = 0  # windows found unchanged at the start
    at = 0  # where they end
    while head < len(windows) and (w := windows[head]).start == at and w.end <= size and source.key(w.start, w.end) == w.key:
        at = w.end
        head += 1
    back = len(windows)  # windows from here on found unchanged at the end
    tail = before.tail
    if size - len(tail) >= at and source.endswith(tail):
        edge = before.size - len(tail)  # where the next window down must end (in before)
        while back > head and (w := windows[back - 1]).end == edge and w.start + delta >= at and source.key(w.start + delta, w.end + delta) == w.key:
            edge = w.start
            back -= 1
    if head == 0 and back == len(windows):
        return None
    kept = windows[head - 1].stop if head else 0  # chunks kept from the start
    resumed = windows[back].first if back < len(windows) else len(before.keys)  # and from here to the end
    stop = windows[back].start + delta if back < len(windows) else size
    data, base = source.stretch(at, stop)
    found: dict[int, Piece] = {}
    known = before.pieces
    region = _cut_region(data, at - base, stop - base, known, found, name, kept, base)
    if back < len(windows):
        if region.end != stop and not (stop == at and not region.keys):
            return None  # the changed stretch does not end where an entry does
    else:
        tail = data[region.end - base :]
    del data
    moved = len(region.keys) - (resumed - kept)
    old = before.keys[kept:resumed]
    keys = before.keys[:kept] + region.keys + before.keys[resumed:]
    pieces = dict(known)
    pieces.update(found)
    for key in _absent(set(old).difference(region.keys), keys):
        del pieces[key]
    replaced = list(map(known.__getitem__, old))
    new = list(map(pieces.__getitem__, region.keys))
    plain = tail == before.tail and _same_structure(replaced, new, kept)
    tail_windows = tuple(Window(w.start + delta, w.end + delta, w.first + moved, w.stop + moved, w.key) for w in windows[back:])
    text = Text(digest, size, keys, pieces, tail, (*windows[:head], *region.windows, *tail_windows))
    text.__dict__.update(
        ends=before.ends[:kept] + region.ends + ([*map(delta.__add__, before.ends[resumed:])] if delta else before.ends[resumed:]),
        versions=before.versions[:kept] + list(map(_PIECE_VERSION, new)) + before.versions[resumed:],
        files=before.files[:kept] + list(map(_PIECE_FILE, new)) + before.files[resumed:],
    )
    if "unusable" in before.__dict__:
        text.__dict__["unusable"] = before.unusable - sum(map(_UNUSABLE, replaced)) + sum(map(_UNUSABLE, new))
    if not plain:
        _checked(text)
    elif (frame := _recounted(before, kept, replaced, new)) is not None:
        text.__dict__["frame"] = frame
    return text, Recut(kept, old, region.keys)


def _recounted(before: Text, kept: int, replaced: list[Piece], new: list[Piece]) -> bytes | None:
    """`before`'s frame, its lists' counts moved by a re-cut that kept the structure
    (`_same_structure`); None when `before` has not worked its frame out either.

    Marks (chunks whose prefix is not a plain comma) are the same, in the same order, on both
    sides. The chunks from a mark to the next are in the mark's list; those before the first
    mark follow the entry before the stretch, in its list. So each stretch between marks
    changes only its own list's count."""
    frame = before.__dict__.get("frame")
    if frame is None:
        return None
    doc = load_json(frame)
    lists = [category for category in doc.get("categories", []) if isinstance(category.get("models"), int)]
    ends = list(itertools.accumulate(category["models"] for category in lists))  # where each list ends, in chunks
    position = kept
    for index, (was, now) in enumerate(zip(_between_marks(replaced), _between_marks(new))):
        anchor = position - 1 if index == 0 else position  # a chunk of the stretch's list
        if was != now:
            if anchor < 0:
                return None
            lists[bisect.bisect_right(ends, anchor)]["models"] += now - was
        position += was
    try:
        return _dumped(doc)
    except Unsplittable:
        return None


def _between_marks(pieces: list[Piece]) -> list[int]:
    """How many chunks come before the first mark, and from each mark to the next."""
    counts = [0]
    for piece in pieces:
        if piece.prefix != PLAIN:
            counts.append(0)
        counts[-1] += 1
    return counts


def _same_structure(replaced: list[Piece], new: list[Piece], kept: int) -> bool:
    """Whether chunks in place of `replaced` (from position `kept` on) leave the structure valid
    as it was: the structure between lists the same and in the same order, and only plain
    commas between entries come or go. Each such comma then follows an entry, as in any list
    (with kept > 0 the chunk before the stretch is an entry; at the very start the file's
    opening must come first on both sides), so the text parses as the one before did."""
    marks = [piece.prefix for piece in replaced if piece.prefix != PLAIN]
    if marks != [piece.prefix for piece in new if piece.prefix != PLAIN]:
        return False
    return kept > 0 or bool(replaced and new and replaced[0].prefix != PLAIN and new[0].prefix != PLAIN)


def _skeleton(pieces: dict[int, Piece], keys: list[int], tail: bytes) -> bytes:
    parts = list(map(_PREFIX, map(pieces.__getitem__, keys)))  # C speed: no Python loop over entries
    if sum(map(len, parts)) + len(keys) + len(tail) > SKELETON_LIMIT:
        raise Unsplittable("the structure around the entries is too large to cut")
    parts.append(tail)
    return b"0".join(parts)


def _checked(text: Text) -> Text:
    text.__dict__["frame"] = _checked_frame(text.pieces, text.keys, text.tail)
    return text


def _checked_frame(pieces: dict[int, Piece], keys: list[int], tail: bytes) -> bytes:
    """The text's `Text.frame`, once the text with each entry replaced by 0 is found to parse
    as a catalog holding exactly one 0 for each entry, all in models lists."""
    doc = _parse_skeleton(_skeleton(pieces, keys, tail))
    found = 0
    for category in doc.get("categories", []):
        models = category.get("models", [])
        for item in models:
            if type(item) is not int or item != 0:
                raise Unsplittable("a models list holds something that is not a cut entry")
        found += len(models)
    if found != len(keys):
        raise Unsplittable("an entry was cut somewhere other than a models list")
    return _frame(doc, len)


def _frame(doc: Doc, count: Any) -> bytes:
    """The document as JSON with each models list replaced by `count(list)` (read it back with
    `load_json`). Unsplittable when it cannot be written back unchanged."""
    framed = dict(doc)
    if isinstance(categories := doc.get("categories"), list):
        framed["categories"] = [
            {**category, "models": count(models)} if isinstance(models := category.get("models"), list) else category
            for category in categories
        ]
    return _dumped(framed)


def _dumped(frame: Doc) -> bytes:
    try:
        return orjson.dumps(frame)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits, or deep nesting, around the entries
        try:
            return serialize_catalog(frame)
        except CatalogUnwritable:
            raise Unsplittable("the structure around the entries cannot be written back unchanged") from None


def _windows(raw: bytes, start: int, stop: int) -> Iterator[tuple[int, int, list[bytes]]]:
    """The chunks of raw[start:stop], a window at a time (each window one C call, about a
    millisecond of GIL): where the window starts, where its last END ends, its chunks."""
    position = start
    while position < stop:
        end = raw.rfind(END, position, min(position + WINDOW, stop))
        if end < 0:
            end = raw.find(END, position + WINDOW - len(END), stop)
            if end < 0:
                return
        yield position, end + len(END), raw[position:end].split(END)
        position = end + len(END)


def _read_piece(chunk: bytes, name: str, prefixes: dict[bytes, bytes]) -> Piece:
    lead = chunk.rfind(OPEN)
    if lead < 0:
        raise Unsplittable("a chunk has no entry")
    lead += LEAD
    try:
        entry = load_json(chunk[lead:] + END)
    except CatalogFormatError:
        raise Unsplittable("an entry does not parse on its own") from None
    if not isinstance(entry, dict):
        raise Unsplittable("an entry is not an object")
    prefix = chunk[:lead]
    prefix = prefixes.setdefault(prefix, prefix)
    shown = shown_entry(entry, name)
    file = entry.get("file")
    return Piece(
        prefix,
        _LENGTHS.setdefault(len(chunk), len(chunk)),  # one int object per length: 2.8 MB fewer at 100,000 entries
        version_id_of(entry),
        file if isinstance(file, str) else None,
        None if shown is UNUSABLE else shown,
        shown is UNUSABLE,
    )


def _parse_skeleton(skeleton: bytes) -> Doc:
    try:
        doc = load_json(skeleton)
        check_shape(doc)
    except CatalogFormatError as exc:
        raise Unsplittable(str(exc)) from None
    return doc


def load_text(raw: bytes, name: str, digest: str, before: Text | None) -> Loaded:
    """Cut the text and say what the map takes from it (Unsplittable: read it whole).

    With an earlier cut reading, also which versions may have moved: those of chunks that
    came or went, and every version shown by more than one entry (the entries may only have
    changed places, which changes the one shown: the first).
    """
    text = cut(raw, name, digest, before)
    ordered = list(map(text.pieces.__getitem__, text.keys))
    entries = list(filter(None, map(_SHOWN, ordered)))
    entries.reverse()  # a version in several entries shows its first: the last one written wins
    shown = dict(zip(map(_VERSION, entries), entries))
    unusable = text.__dict__.setdefault("unusable", sum(map(_UNUSABLE, ordered)))
    changed = None
    if before is not None:
        old, new = before.pieces, text.pieces
        moved = [old[key] for key in old.keys() - new.keys()] + [new[key] for key in new.keys() - old.keys()]
        changed = {piece.version for piece in moved if piece.version is not None}
        changed.update(piece.shown.version_id for piece in moved if piece.shown is not None)
        if len(shown) != len(entries):  # entries that only changed places can change which one a version shows
            changed.update(version for version, count in collections.Counter(map(_VERSION, entries)).items() if count > 1)
    return Loaded(digest, shown, unusable, text, changed)


def load_recut(text: Text, recut: Recut, before: Text, shown: dict[int, MapEntry], dirty: set[int]) -> Loaded:
    """What the map takes from a re-cut, worked out from the chunks it replaced alone.

    `shown` is how the map shows the versions of `before` (its first entry of each), except
    for `dirty` ones, which this service changed since. Only versions with a chunk replaced,
    or dirty, can be shown otherwise now: each is looked up in the text again (its first entry
    in file order), and every other version keeps the entry it has.
    """
    old, new = recut.old, recut.new
    if len(old) + len(new) > 64:  # a window or more re-split: most of its chunks are the ones it had
        common = set(old).intersection(new)
        if [key for key in old if key in common] == [key for key in new if key in common]:  # none changed places
            old, new = [key for key in old if key not in common], [key for key in new if key not in common]
    replaced = [*map(before.pieces.__getitem__, old), *map(text.pieces.__getitem__, new)]
    changed = {piece.version for piece in replaced if piece.version is not None}
    changed.update(piece.shown.version_id for piece in replaced if piece.shown is not None)
    changed |= dirty
    now = dict(shown)
    for version in changed:
        now.pop(version, None)
    if changed:
        pieces, keys = text.pieces, text.keys
        for at in sorted(text.positions(text.versions, changed)):
            entry = pieces[keys[at]].shown
            if entry is not None and entry.version_id in changed:
                now.setdefault(entry.version_id, entry)
    return Loaded(text.digest, now, text.unusable, text, changed, partial=True)


_LENGTHS: dict[int, int] = {}
_SHOWN = operator.attrgetter("shown")
_PIECE_VERSION = operator.attrgetter("version")
_PIECE_FILE = operator.attrgetter("file")
_VERSION = operator.attrgetter("version_id")
_UNUSABLE = operator.attrgetter("unusable")
_PREFIX = operator.attrgetter("prefix")


class StaleText(Exception):
    """The file no longer holds the text that was cut: read it again."""


@dataclass(frozen=True, slots=True)
class Spliced:
    """A document for a plan to edit, cut from a file: every entry of the versions and files
    it asked about parsed, every run of other entries a Verbatim range of the file."""

    doc: Doc
    versions: frozenset[int]  # every version with a parsed entry (a plan can see all of its entries)


def spliced_doc(fd: int, text: Text, versions: set[int], files: set[str]) -> Spliced:
    """The document a plan edits, read from the file `text` was cut from (an open descriptor).

    Every entry of those versions and of those files is parsed, and every entry of a version
    that one of those files holds, so a plan that finds an entry by its file sees the other
    entries of its version too. StaleText when a chunk read back is not the one that was cut.
    """
    positions = text.positions(text.files, files) if files else set()
    wanted_versions = set(versions)
    wanted_versions.update(version for at in positions if (version := text.versions[at]) is not None)
    if wanted_versions:
        positions |= text.positions(text.versions, wanted_versions)
    doc = load_json(text.frame)
    wanted = sorted(positions)
    cursor = 0  # into wanted
    position = 0
    for category in doc.get("categories", []):
        count = category.get("models")
        if not count:
            if count == 0:
                category["models"] = []
            continue
        stop = position + count
        items: list[Any] = []
        run_from = position
        while True:
            at = wanted[cursor] if cursor < len(wanted) and wanted[cursor] < stop else stop
            if at > run_from:
                items.append(Verbatim(text.entry_span(run_from)[0], text.entry_span(at - 1)[1]))
            if at == stop:
                break
            items.append(_read_entry(fd, text, at))
            cursor += 1
            run_from = at + 1
        category["models"] = items
        position = stop
    return Spliced(doc, frozenset(wanted_versions))


def _read_entry(fd: int, text: Text, position: int) -> dict[str, Any]:
    start, end = text.chunk_span(position)
    key = text.keys[position]
    piece = text.pieces[key]
    data = os.pread(fd, end - start, start)
    if len(data) != end - start or not data.endswith(END) or hash(data[: -len(END)]) != key:
        raise StaleText()
    entry = load_json(data[len(piece.prefix) :])
    if not isinstance(entry, dict):  # it was one when cut: this is not that text
        raise StaleText()
    return entry


def spliced_shown(spliced: Spliced, name: str) -> dict[int, MapEntry | None]:
    """After a plan: how the map shows each version it could see or added, None where no entry
    of it is shown any more. Only parsed entries are looked at: no run holds those versions."""
    found: dict[int, MapEntry | None] = dict.fromkeys(spliced.versions)
    seen: set[int] = set()
    for category in spliced.doc.get("categories", []):
        for entry in category.get("models", []):
            if not isinstance(entry, dict):
                continue
            version = version_id_of(entry)
            if version is None or version in seen:
                continue
            shown = shown_entry(entry, name)
            if shown is None or shown is UNUSABLE:
                found.setdefault(version, None)
                continue
            seen.add(version)
            found[version] = shown
    return found


def derive_text(outline: list[Any], doc: Doc, before: Text, fd: int, digest: str, size: int, name: str) -> Text | None:
    """The cut of a file just written from a spliced document `doc`, worked out from the
    writer's outline (see `write_catalog`) and the cut it was spliced from, without reading it back.

    Runs keep their chunks; the first chunk of each run gets the structure written before it,
    and each entry written anew is read as a cut would read it. None when the written text
    would not cut the same way (then the next reading cuts it)."""
    if not outline or outline[0] is None:
        return None
    keys: list[int] = []
    versions: list[int | None] = []
    files: list[str | None] = []
    ends: list[int] = []
    found: dict[int, Piece] = {}  # pieces of chunks written anew
    written: set[int] = set()  # their keys, and those of chunks found again
    runs: dict[Verbatim, tuple[int, int]] = {}  # the chunks of `before` each run holds: first, stop
    known = before.pieces
    prefixes: dict[bytes, bytes] = {PLAIN: PLAIN}
    structure: list[bytes] = []
    offset = 0  # where the last chunk's END ends in the written text
    windows: list[Window] | None = [] if before.windows else None

    def add(chunk: bytes) -> None:
        nonlocal offset
        key = hash(chunk)
        piece = known.get(key) or found.get(key)
        if piece is None:
            piece = found[key] = _read_piece(chunk, name, prefixes)
        written.add(key)
        if windows is not None:  # a chunk written anew is a window of its own
            windows.append(Window(offset, offset + len(chunk) + len(END), len(keys), len(keys) + 1, _window_key(chunk + END)))
        keys.append(key)
        versions.append(piece.version)
        files.append(piece.file)
        offset += len(chunk) + len(END)
        ends.append(offset)
        structure.clear()

    def carry(first: int, stop: int, shift: int, moved: int) -> None:
        """The windows of chunks first..stop of `before`, now `shift` bytes and `moved` places
        on: those wholly inside taken over, the stretches left at either side hashed anew."""
        assert windows is not None
        cursor = first
        for window in before.windows:
            if window.first < first or window.stop > stop:
                continue
            if window.first > cursor:
                windows.append(_read_window(fd, before, cursor, window.first, shift, moved))
            windows.append(Window(window.start + shift, window.end + shift, window.first + moved, window.stop + moved, window.key))
            cursor = window.stop
        if cursor < stop:
            windows.append(_read_window(fd, before, cursor, stop, shift, moved))

    entry_next = False
    try:
        for item in outline:
            if item is ENTRY_NEXT:
                entry_next = True
            elif isinstance(item, Verbatim):
                old_ends = before.ends
                first = bisect.bisect_right(old_ends, item.start)  # the entry whose "{" the run starts at
                last = bisect.bisect_left(old_ends, item.end)
                if last >= len(old_ends) or old_ends[last] != item.end or first > last or before.entry_span(first)[0] != item.start:
                    return None
                start, end = before.entry_span(first)
                runs[item] = (first, last + 1)
                add(b"".join(structure) + os.pread(fd, end - start - len(END), start))
                # The rest of the run is carried over column by column (slices: C speed).
                carried = slice(first + 1, last + 1)
                keys += before.keys[carried]
                versions += before.versions[carried]
                files += before.files[carried]
                shift = offset - old_ends[first]
                if windows is not None and last > first:
                    carry(first + 1, last + 1, shift, len(keys) - (last - first) - first - 1)
                ends += map(shift.__add__, old_ends[carried]) if shift else old_ends[carried]
                offset = old_ends[last] + shift
            elif entry_next:
                if not item.endswith(END):
                    return None
                add(b"".join(structure) + item[: -len(END)])
                entry_next = False
            else:
                structure.append(item)
    except (Unsplittable, StaleText):
        return None
    tail = b"".join(structure)
    if offset + len(tail) != size:
        return None
    pieces = dict(known)
    pieces.update(found)
    for key in _left_out(before, sorted(runs.values()), keys, written):
        del pieces[key]
    try:
        frame = _frame(doc, lambda models: sum(runs[item][1] - runs[item][0] if isinstance(item, Verbatim) else 1 for item in models))
    except Unsplittable:
        return None
    text = Text(digest, size, keys, pieces, tail, tuple(windows or ()))
    text.__dict__.update(ends=ends, versions=versions, files=files, frame=frame)  # what the cached properties would work out
    return text


def _left_out(before: Text, runs: list[tuple[int, int]], keys: list[int], written: set[int]) -> set[int] | list[int]:
    """The keys of `before` that a text of `keys` no longer holds. Runs carry their chunks over,
    so only the few chunks outside them (the plan's, and each run's first, `written` again
    when it is found again) can be gone: no set of every key is built for an add."""
    outside: list[int] = []
    at = 0
    for first, stop in runs:  # a run's first chunk is written again, with the structure before it
        outside += before.keys[at : first + 1]
        at = max(at, stop)
    outside += before.keys[at:]
    return _absent(set(outside) - written, keys)


def _absent(gone: set[int], keys: list[int]) -> set[int] | list[int]:
    """Those of `gone` that `keys` does not hold: a scan of `keys` for each of a few (two scans
    cost about what one set of all the keys does), one set for more."""
    if len(gone) > 2:
        return gone - set(keys)
    return [key for key in gone if key not in keys]


def _read_window(fd: int, before: Text, first: int, stop: int, shift: int, moved: int) -> Window:
    """A window over chunks first..stop of `before` (first > 0), hashed from the file it was cut from."""
    start, end = before.ends[first - 1], before.ends[stop - 1]
    data = os.pread(fd, end - start, start)
    if len(data) != end - start:
        raise StaleText()
    return Window(start + shift, end + shift, first + moved, stop + moved, _window_key(data))


