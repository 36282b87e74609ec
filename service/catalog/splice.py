"""A spliced document: the entries a plan asks about parsed, every other run of entries left as
bytes of the file, and the cut of what a save writes worked out without reading it back."""


from __future__ import annotations

import bisect
import os
from dataclasses import dataclass
from typing import Any

from ..map.entry import UNUSABLE, MapEntry, shown_entry
from .codec import (
    ENTRY_NEXT,
    Verbatim,
    load_json,
)
from .document import Doc, version_id_of
from .frame import frame_of
from .layout import NATIVE
from .text import (
    Piece,
    StaleText,
    Text,
    Unsplittable,
    Window,
    ends_of,
    read_piece,
    window_key,
)


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
    end_mark = text.layout.end
    if len(data) != end - start or not data.endswith(end_mark) or hash(data[: -len(end_mark)]) != key:
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
    if not outline or outline[0] is None or before.layout != NATIVE:  # runs of another layout: the next reading cuts it
        return None
    derivation = _Derivation(before, fd, name)
    entry_next = False
    try:
        for item in outline:
            if item is ENTRY_NEXT:
                entry_next = True
            elif isinstance(item, Verbatim):
                if not derivation.take_run(item):
                    return None
            elif entry_next:
                if not item.endswith(NATIVE.end):
                    return None
                derivation.add(b"".join(derivation.structure) + item[: -len(NATIVE.end)])
                entry_next = False
            else:
                derivation.structure.append(item)
        return derivation.text(doc, digest, size)
    except (Unsplittable, StaleText):
        return None


class _Derivation:
    """The columns of a derived cut, filled as the outline is walked (see `derive_text`)."""

    def __init__(self, before: Text, fd: int, name: str) -> None:
        self.before, self.fd, self.name = before, fd, name
        self.keys: list[int] = []
        self.versions: list[int | None] = []
        self.files: list[str | None] = []
        self.ends = ends_of()
        self.found: dict[int, Piece] = {}  # pieces of chunks written anew
        self.written: set[int] = set()  # their keys, and those of chunks found again
        self.runs: dict[Verbatim, tuple[int, int]] = {}  # the chunks of `before` each run holds: first, stop
        self.prefixes: dict[bytes, bytes] = {NATIVE.plain: NATIVE.plain}
        self.structure: list[bytes] = []
        self.offset = 0  # where the last chunk's END ends in the written text
        self.windows: list[Window] | None = [] if before.windows else None

    def add(self, chunk: bytes) -> None:
        """One chunk written: looked up (or read) as a cut would, its window of its own."""
        key = hash(chunk)
        piece = self.before.pieces.get(key) or self.found.get(key)
        if piece is None:
            piece = self.found[key] = read_piece(chunk, self.name, self.prefixes)
        self.written.add(key)
        if self.windows is not None:  # a chunk written anew is a window of its own
            self.windows.append(Window(self.offset, self.offset + len(chunk) + len(NATIVE.end), len(self.keys), len(self.keys) + 1, window_key(chunk + NATIVE.end)))
        self.keys.append(key)
        self.versions.append(piece.version)
        self.files.append(piece.file)
        self.offset += len(chunk) + len(NATIVE.end)
        self.ends.append(self.offset)
        self.structure.clear()

    def take_run(self, item: Verbatim) -> bool:
        """A run copied from `before`: its first chunk read again with the structure before it,
        the rest carried over column by column (slices: C speed). False when it does not fit."""
        before = self.before
        old_ends = before.ends
        first = bisect.bisect_right(old_ends, item.start)  # the entry whose "{" the run starts at
        last = bisect.bisect_left(old_ends, item.end)
        if last >= len(old_ends) or old_ends[last] != item.end or first > last or before.entry_span(first)[0] != item.start:
            return False
        start, end = before.entry_span(first)
        self.runs[item] = (first, last + 1)
        self.add(b"".join(self.structure) + os.pread(self.fd, end - start - len(NATIVE.end), start))
        carried = slice(first + 1, last + 1)
        self.keys += before.keys[carried]
        self.versions += before.versions[carried]
        self.files += before.files[carried]
        shift = self.offset - old_ends[first]
        if self.windows is not None and last > first:
            self.carry(first + 1, last + 1, shift, len(self.keys) - (last - first) - first - 1)
        self.ends.extend(map(shift.__add__, old_ends[carried]) if shift else old_ends[carried])
        self.offset = old_ends[last] + shift
        return True

    def carry(self, first: int, stop: int, shift: int, moved: int) -> None:
        """The windows of chunks first..stop of `before`, now `shift` bytes and `moved` places
        on: those wholly inside taken over, the stretches left at either side hashed anew."""
        assert self.windows is not None
        cursor = first
        for window in self.before.windows:
            if window.first < first or window.stop > stop:
                continue
            if window.first > cursor:
                self.windows.append(_read_window(self.fd, self.before, cursor, window.first, shift, moved))
            self.windows.append(Window(window.start + shift, window.end + shift, window.first + moved, window.stop + moved, window.key))
            cursor = window.stop
        if cursor < stop:
            self.windows.append(_read_window(self.fd, self.before, cursor, stop, shift, moved))

    def text(self, doc: Doc, digest: str, size: int) -> Text | None:
        """The derived cut, once the outline is walked; None when it is not the file's."""
        tail = b"".join(self.structure)
        if self.offset + len(tail) != size:
            return None
        pieces = dict(self.before.pieces)
        pieces.update(self.found)
        for key in _left_out(self.before, sorted(self.runs.values()), self.keys, self.written):
            del pieces[key]
        runs = self.runs
        frame = frame_of(doc, lambda models: sum(runs[item][1] - runs[item][0] if isinstance(item, Verbatim) else 1 for item in models))
        text = Text(digest, size, self.keys, pieces, tail, tuple(self.windows or ()))
        text.__dict__.update(ends=self.ends, versions=self.versions, files=self.files, frame=frame)  # what the cached properties would work out
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
    return absent_keys(set(outside) - written, keys)


def absent_keys(gone: set[int], keys: list[int]) -> set[int] | list[int]:
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
    return Window(start + shift, end + shift, first + moved, stop + moved, window_key(data))
