"""Reading a catalog file into what the map shows of it: cut at its entries against the last
cut where it can be (only what changed is parsed), whole otherwise (in a worker process when
huge). Blocking: runs in worker threads."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from .. import workers
from ..disk.files import file_stamp
from ..map.entry import (
    UNUSABLE,
    CatalogEntries,
    EntryRow,
    MapEntry,
    entry_row,
    shown_entry,
)
from .codec import CatalogFormatError, digest, file_digest, parse_catalog
from .cutting import cut_file, load_recut, loaded_of, recut_file
from .document import Doc, iter_entries
from .rows import CutRows, piece_row, pieces_of_rows
from .text import Loaded, StaleText, Text, Unsplittable


@dataclass(frozen=True, slots=True)
class CatalogReading:
    digest: str
    loaded: Loaded | None  # None: nothing new (or an error)
    error: str | None
    unparsable: bool = False  # worth reading again: a program may be writing it in place


# A catalog that does not parse may be half-written by a program that saves in place: read
# it again, backing off, for about this long before calling it unparsable.
UNPARSABLE_RETRY_S = (0.02, 0.05, 0.1, 0.2, 0.3, 0.35)
# One that keeps changing while it does not parse is read again for as long as it changes, up
# to this long: a program saving in place many times a second leaves it half-written most of the time.
UNPARSABLE_WHILE_CHANGING_S = 10.0


def read_catalog_rows(
    path: Path, name: str, known_digest: str | None
) -> tuple[str, tuple[list[EntryRow], int] | None, str | None, bool]:
    """A whole catalog read and parsed (a worker process's job), as plain tuples: cheap to send back."""
    with workers.collector_paused():  # the process ends with the reading: nothing to set aside
        reading = read_catalog(path, name, known_digest, None, whole=True)
    rows = None
    if reading.loaded is not None:
        rows = (list(map(entry_row, reading.loaded.shown.values())), reading.loaded.unusable)
    return reading.digest, rows, reading.error, reading.unparsable


def cut_rows(path: Path, name: str) -> CutRows | None:
    """A worker process's job: cut a catalog and send its pieces back (None when it does not cut
    or cannot be read: it is then read as any other)."""
    with workers.collector_paused():  # the process ends with the reading: nothing in it is worth collecting
        reading = read_cut(path, name, None, None)
    text = reading.loaded.text if reading is not None and reading.loaded is not None else None
    if text is None:
        return None
    prefixes: dict[bytes, int] = {}
    rows = [piece_row(piece, prefixes) for piece in map(text.pieces.__getitem__, text.keys)]
    return CutRows(reading.digest, list(prefixes), rows)


class TooBigToParseHere(Exception):
    """The catalog does not cut into entries and is too big to parse whole in this process."""


def read_catalog(
    path: Path,
    name: str,
    known_digest: str | None,
    before: Text | None,
    *,
    whole: bool = False,
    shown: dict[int, MapEntry] | None = None,
    dirty: set[int] | None = None,
    cut: CutRows | None = None,
) -> CatalogReading:
    """Read a catalog file when its content is new to us: cut into entries, parsing only those
    `before` does not know; one that does not cut is parsed whole (TooBigToParseHere when that
    needs a worker process).

    The file is read in place first (`read_cut`): with `shown`, how the map shows `before` (and
    the `dirty` versions it shows otherwise), re-cut where it can be, so that only what changed
    is read into memory and looked at; else cut a block at a time. It is read into memory whole
    only when it does not cut. `cut`: the pieces a worker process cut this file into (used
    only when they are of the very text read here)."""
    if not whole:
        reading = read_cut(path, name, known_digest, before, shown, dirty, cut)
        if reading is not None:
            return reading
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return CatalogReading("", None, "the file is missing")
    except OSError as exc:
        return CatalogReading("", None, f"the file cannot be read ({exc.strerror})")
    content_digest = digest(raw)
    if content_digest == known_digest:
        return CatalogReading(content_digest, None, None)
    if not whole and len(raw) > workers.PROCESS_BYTES:  # it did not cut
        raise TooBigToParseHere()
    try:
        doc = parse_catalog(raw)
    except CatalogFormatError as exc:
        return CatalogReading(content_digest, None, str(exc), unparsable=True)
    del raw
    return CatalogReading(content_digest, whole_reading(content_digest, extract_entries(doc, name)), None)


def read_changes(path: Path, name: str, known_digest: str | None, before: Text, shown: dict[int, MapEntry], dirty: set[int]) -> CatalogReading | None:
    """A catalog re-cut against its last cut where it lies: its digest in one pass a block at a
    time, then the windows of `before` checked and only the stretch between them read and cut.
    An edit then costs its own chunks and two passes of hashing, with no copy of the whole text
    in memory. None when it must be read otherwise: too much changed, the file changed while
    it was read, or it cannot be opened."""
    return _read_in_place(path, name, known_digest, before, shown, dirty, cut_whole=False)


def read_cut(
    path: Path,
    name: str,
    known_digest: str | None,
    before: Text | None,
    shown: dict[int, MapEntry] | None = None,
    dirty: set[int] | None = None,
    cut: CutRows | None = None,
) -> CatalogReading | None:
    """`read_changes` where it can be, else the file cut whole a block at a time (`cut_file`):
    either way its digest is taken once and the text is never all in memory. None when it must
    be parsed whole instead: it does not cut, it changed while it was read, or it cannot be
    opened (the whole read says why)."""
    return _read_in_place(path, name, known_digest, before, shown, dirty or set(), cut_whole=True, cut=cut)


def _read_in_place(
    path: Path,
    name: str,
    known_digest: str | None,
    before: Text | None,
    shown: dict[int, MapEntry] | None,
    dirty: set[int],
    *,
    cut_whole: bool,
    cut: CutRows | None = None,
) -> CatalogReading | None:
    if not cut_whole and (before is None or not before.windows):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        stat = os.fstat(fd)
        with open(fd, "rb", closefd=False) as handle:
            content_digest = file_digest(handle)
        if content_digest == known_digest:
            return CatalogReading(content_digest, None, None)
        loaded = None
        if before is not None and before.windows and shown is not None:
            try:
                done = recut_file(fd, stat.st_size, name, content_digest, before)
            except (Unsplittable, StaleText, CatalogFormatError):
                done = None
            if done is not None:
                loaded = load_recut(done[0], done[1], before, shown, dirty)
        if loaded is None and cut is not None and cut.digest == content_digest and before is None:  # the worker's pieces are of this text
            with contextlib.suppress(Unsplittable, StaleText, CatalogFormatError):
                given = pieces_of_rows(cut.prefixes, cut.rows)
                loaded = loaded_of(cut_file(fd, stat.st_size, name, content_digest, None, recut=False, given=given), None)
        if loaded is None and cut_whole:
            try:
                loaded = loaded_of(cut_file(fd, stat.st_size, name, content_digest, before, recut=False), before)
            except (Unsplittable, StaleText, CatalogFormatError):
                return None
        if loaded is None or file_stamp(os.fstat(fd)) != file_stamp(stat):
            return None
        return CatalogReading(content_digest, loaded, None)
    except OSError:
        return None
    finally:
        os.close(fd)


def whole_reading(content_digest: str, found: CatalogEntries) -> Loaded:
    """A catalog read whole: the first entry of each version, no cut text."""
    shown: dict[int, MapEntry] = {}
    for entry in found.entries:
        shown.setdefault(entry.version_id, entry)
    return Loaded(content_digest, shown, found.unusable_ids, None)


def extract_entries(doc: Doc, catalog: str) -> CatalogEntries:
    """Map entries of one catalog: entries with a CivitAI version id, a file and a folder.

    An entry whose version or model id is set but is not an id ("²", -1, 2**70) is left out
    and counted; it stays in the file untouched, like every entry the map does not show.
    """
    entries: list[MapEntry] = []
    unusable = 0
    for _category, entry in iter_entries(doc):
        shown = shown_entry(entry, catalog)
        if shown is UNUSABLE:
            unusable += 1
        elif shown is not None:
            entries.append(shown)
    return CatalogEntries(entries, unusable)
