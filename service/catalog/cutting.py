"""Cutting a catalog's text: the first time whole, then against the last cut where it lies,
windows found unchanged taken over, only the stretch between them read and looked at."""


from __future__ import annotations

import bisect
import collections
import itertools
import os

from ..map.entry import ENTRY_VERSION, MapEntry
from .codec import (
    load_json,
)
from .frame import SKELETON_LIMIT, dumped_frame
from .layout import LAYOUT_PROBE, Unsplittable, layout_of
from .splice import absent_keys
from .text import (
    PIECE_FILE,
    PIECE_SHOWN,
    PIECE_UNUSABLE,
    PIECE_VERSION,
    Loaded,
    Piece,
    Recut,
    StaleText,
    Text,
    Window,
    checked_text,
    cut_region,
    ends_of,
    window_key,
)

FILE_BLOCK = 8 << 20  # a file is read and cut this much at a time: its text is never all in memory


def cut(raw: bytes, name: str, digest: str, before: Text | None) -> Text:
    """Cut a catalog's text into entries, reusing what `before` knows of unchanged chunks.

    Windows of `before` found unchanged at the start of the text, and at its end (shifted by
    the change in size), are taken over whole, chunks and all; only the text between them is
    split and looked at chunk by chunk. Raises Unsplittable when the text does not cut (read
    it whole: that also says precisely why a broken file is broken), CatalogFormatError when
    it is cut but not a catalog.
    """
    return _cut(_InMemory(raw), name, digest, before)


def cut_file(fd: int, size: int, name: str, digest: str, before: Text | None, *, recut: bool = True, given: list[Piece] | None = None) -> Text:
    """`cut` of the file open at `fd` (`size` bytes), read and cut FILE_BLOCK at a time (a
    longer block where one entry is longer): never the whole text in memory. StaleText when
    the file shrank while it was read. `recut=False`: cut it whole (a re-cut was tried).
    `given`: the pieces a worker process read from this text, in order (`text.cut_region`)."""
    return _cut(_OnDisk(fd, size), name, digest, before, recut, given)


def _cut(source: _InMemory | _OnDisk, name: str, digest: str, before: Text | None, recut: bool = True, given: list[Piece] | None = None) -> Text:
    head, _ = source.stretch(0, min(source.size, LAYOUT_PROBE))
    layout = layout_of(memoryview(head)[:LAYOUT_PROBE])
    del head
    similar: dict[int, Piece] | None = None
    if before is not None and before.layout != layout:  # re-formatted: no chunk is the same, most entries are
        similar = {}
        for piece in map(before.pieces.__getitem__, before.keys):  # in file order: the entry a version shows first
            if piece.content:
                similar.setdefault(piece.content, piece)
        before = None
    if recut and before is not None and before.windows:
        done = _recut(source, name, digest, before)
        if done is not None:
            return done[0]
    known = before.pieces if before is not None else {}
    found: dict[int, Piece] = {}  # pieces read from this text
    keys: list[int] = []
    windows: list[Window] = []
    position, block = 0, source.block
    while True:
        stop = min(source.size, position + block)
        data, base = source.stretch(position, stop)
        region = cut_region(data, position - base, stop - base, known, found, name, layout, len(keys), base, similar, given)
        del data
        keys += region.keys
        windows += region.windows
        if stop == source.size:
            break
        if region.keys:
            if position == 0:
                _check_structure_size(keys, known, found, region.end, source.size)
            position, block = region.end, source.block
        else:
            block *= 2  # no entry ends within the block: one is longer than it
    data, base = source.stretch(region.end, source.size)
    tail = data[region.end - base :]  # the whole text when nothing was cut (a slice of all of a bytes is the bytes)
    del data
    if given is not None and len(keys) != len(given):
        raise Unsplittable("the text has fewer chunks than the worker cut")
    pieces = dict(zip(keys, map(known.get, keys))) if known else {}
    pieces.update(found)
    return checked_text(Text(digest, source.size, keys, pieces, tail, tuple(windows), layout))


def _check_structure_size(keys: list[int], known: dict[int, Piece], found: dict[int, Piece], cut_bytes: int, size: int) -> None:
    """Unsplittable when the first block says the structure around all the entries will be far
    over what is checked (`SKELETON_LIMIT`): such a text is parsed whole anyway, so it is not
    cut to the end first."""
    structure = sum(len((found.get(key) or known[key]).prefix) + 1 for key in keys)
    if structure * size > 2 * SKELETON_LIMIT * cut_bytes:
        raise Unsplittable("the structure around the entries is too large to cut")


def recut_file(fd: int, size: int, name: str, digest: str, before: Text) -> tuple[Text, Recut] | None:
    """The cut of the file open at `fd` (`size` bytes), `before`'s windows taken over where they
    are found unchanged, reading no more of the file than the windows it checks and the stretch
    between them: the text is never all in memory. None when too little is known (cut the
    whole text); StaleText when the file shrank while it was read."""
    return _recut(_OnDisk(fd, size), name, digest, before)


class _InMemory:
    """A text to re-cut that is held whole."""

    def __init__(self, raw: bytes) -> None:
        self.raw, self.size, self._view = raw, len(raw), memoryview(raw)
        self.block = self.size  # all of it at once: it is in memory already

    def key(self, start: int, end: int) -> bytes:
        return window_key(self._view[start:end])

    def endswith(self, tail: bytes) -> bool:
        return self.raw.endswith(tail)

    def stretch(self, start: int, stop: int) -> tuple[bytes, int]:
        """Bytes that hold text[start:stop], and where the first of them is in the text."""
        return self.raw, 0


class _OnDisk:
    """A text to re-cut that is read from its file as needed, a window at a time, into one buffer."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd, self.size = fd, size
        self.block = FILE_BLOCK
        self._buffer = bytearray()

    def _read(self, start: int, end: int) -> memoryview:
        if len(self._buffer) < end - start:
            self._buffer = bytearray(end - start)
        view = memoryview(self._buffer)[: end - start]
        if os.preadv(self.fd, [view], start) != end - start:
            raise StaleText()
        return view

    def key(self, start: int, end: int) -> bytes:
        return window_key(self._read(start, end))

    def endswith(self, tail: bytes) -> bool:
        return len(tail) <= self.size and self._read(self.size - len(tail), self.size) == tail

    def stretch(self, start: int, stop: int) -> tuple[bytes, int]:
        data = os.pread(self.fd, stop - start, start)
        if len(data) != stop - start:
            raise StaleText()
        return data, start


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
    region = cut_region(data, at - base, stop - base, known, found, name, before.layout, kept, base)
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
    for key in absent_keys(set(old).difference(region.keys), keys):
        del pieces[key]
    replaced = list(map(known.__getitem__, old))
    new = list(map(pieces.__getitem__, region.keys))
    plain = tail == before.tail and _same_structure(replaced, new, kept, before.layout.plain)
    tail_windows = tuple(Window(w.start + delta, w.end + delta, w.first + moved, w.stop + moved, w.key) for w in windows[back:])
    text = Text(digest, size, keys, pieces, tail, (*windows[:head], *region.windows, *tail_windows), before.layout)
    text.__dict__.update(
        ends=before.ends[:kept] + region.ends + (ends_of(map(delta.__add__, before.ends[resumed:])) if delta else before.ends[resumed:]),
        versions=before.versions[:kept] + list(map(PIECE_VERSION, new)) + before.versions[resumed:],
        files=before.files[:kept] + list(map(PIECE_FILE, new)) + before.files[resumed:],
    )
    if "unusable" in before.__dict__:
        text.__dict__["unusable"] = before.unusable - sum(map(PIECE_UNUSABLE, replaced)) + sum(map(PIECE_UNUSABLE, new))
    if not plain:
        checked_text(text)
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
    plain = before.layout.plain
    for index, (was, now) in enumerate(zip(_between_marks(replaced, plain), _between_marks(new, plain))):
        anchor = position - 1 if index == 0 else position  # a chunk of the stretch's list
        if was != now:
            if anchor < 0:
                return None
            lists[bisect.bisect_right(ends, anchor)]["models"] += now - was
        position += was
    try:
        return dumped_frame(doc)
    except Unsplittable:
        return None


def _between_marks(pieces: list[Piece], plain: bytes) -> list[int]:
    """How many chunks come before the first mark, and from each mark to the next."""
    counts = [0]
    for piece in pieces:
        if piece.prefix != plain:
            counts.append(0)
        counts[-1] += 1
    return counts


def _same_structure(replaced: list[Piece], new: list[Piece], kept: int, plain: bytes) -> bool:
    """Whether chunks in place of `replaced` (from position `kept` on) leave the structure valid
    as it was: the structure between lists the same and in the same order, and only plain
    commas between entries come or go. Each such comma then follows an entry, as in any list
    (with kept > 0 the chunk before the stretch is an entry; at the very start the file's
    opening must come first on both sides), so the text parses as the one before did."""
    marks = [piece.prefix for piece in replaced if piece.prefix != plain]
    if marks != [piece.prefix for piece in new if piece.prefix != plain]:
        return False
    return kept > 0 or bool(replaced and new and replaced[0].prefix != plain and new[0].prefix != plain)


def load_text(raw: bytes, name: str, digest: str, before: Text | None) -> Loaded:
    """Cut the text and say what the map takes from it (Unsplittable: read it whole).

    With an earlier cut reading, also which versions may have moved: those of chunks that
    came or went, and every version shown by more than one entry (the entries may only have
    changed places, which changes the one shown: the first).
    """
    return loaded_of(cut(raw, name, digest, before), before)


def loaded_of(text: Text, before: Text | None) -> Loaded:
    """What the map takes from a cut text (see `load_text`)."""
    if before is not None and text.layout != before.layout:
        before = None  # every chunk is new: compare what the map shows instead (`moved_versions`)
    ordered = list(map(text.pieces.__getitem__, text.keys))
    text.work_out_columns(ordered)  # in the reading's thread, not by the next edit's re-cut
    entries = list(filter(None, map(PIECE_SHOWN, ordered)))
    entries.reverse()  # a version in several entries shows its first: the last one written wins
    shown = dict(zip(map(ENTRY_VERSION, entries), entries))
    unusable = text.__dict__.setdefault("unusable", sum(map(PIECE_UNUSABLE, ordered)))
    changed = None
    if before is not None:
        old, new = before.pieces, text.pieces
        moved = [old[key] for key in old.keys() - new.keys()] + [new[key] for key in new.keys() - old.keys()]
        changed = {piece.version for piece in moved if piece.version is not None}
        changed.update(piece.shown.version_id for piece in moved if piece.shown is not None)
        if len(shown) != len(entries):  # entries that only changed places can change which one a version shows
            changed.update(version for version, count in collections.Counter(map(ENTRY_VERSION, entries)).items() if count > 1)
    return Loaded(text.digest, shown, unusable, text, changed)


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

