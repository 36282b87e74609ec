"""The in-memory civitai-map: built from both catalogs and the presence of files on disk.

Each catalog entry is serialized once, when its catalog is (re)loaded, into a fragment
that stops just before its status. The map body is the join of those fragments with
`present"}` or `missing"}` after each, so a file event patches a few slots and joins
bytes; nothing is serialized again. Every published answer is an immutable `MapSnapshot`
swapped in with one assignment; handlers only ever read the current one.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import zlib
import secrets
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from dataclasses import dataclass, field

import orjson

from ..catalog.document import Doc, canonical_folder, iter_entries, version_id_of
from ..disk.known import KnownHashes
from ..disk.presence import Presence

PRESENT = b'present"}'
MISSING = b'missing"}'
QUEUED = b'queued"}'
DOWNLOADING = b'downloading"'
UNAVAILABLE = b'unavailable"}'  # missing, and a root that could hold it is offline
PRESENT_MISMATCH = b'present","hash_mismatch":true}'  # on disk, but not the bytes the entry's `hash` names
PROGRESS_INTERVAL_S = 1.0
JOIN_IN_THREAD_PARTS = 20_000  # a map body of more parts than this (~10,000 versions) is joined off the event loop
# A map body larger than this is never joined into one bytes: it is sent in slices of about
# SEND_SLICE, each joined from the parts as it goes. At 100,000 entries that spares 21 MB kept
# for the body, and 21 MB more each time a change lands while an older body is still being sent.
KEEP_JOINED_BYTES = 8 * 1024 * 1024
SEND_SLICE = 256 * 1024
_OPEN = b'{"by_version":{'
_MIDDLE = b'},"by_model":'
_CLOSE = b"}"
GZIP_LEVEL = 6

Changes = dict[int, str | None]  # version id -> its status ("present", "downloading", ...), or None when it left the map
Listener = Callable[[str, Changes], None]


@dataclass(frozen=True, slots=True)
class Transfer:
    """A file on its way into a folder: queued, or downloading with bytes so far of a total (if known)."""

    state: str  # "queued" or "downloading"
    done: int = 0
    total: int | None = None

    def slot(self) -> bytes:
        """The end of a map entry: its status, and the progress the extension shows."""
        if self.state == "queued":
            return QUEUED
        total = b"null" if self.total is None else b"%d" % self.total
        return b'downloading","dl_bytes":%d,"dl_total":%s}' % (self.done, total)


@dataclass(frozen=True, slots=True)
class MapEntry:
    """One catalog entry as the map shows it, pre-serialized up to its status."""

    version_id: int
    model_id: int | None
    file: str
    folder: str  # canonical logical folder, for presence
    catalog: str  # "models" or "loras"; "" for a file identified on disk that no catalog lists
    head: bytes
    dest: str = ""  # the folder as the catalog writes it, for downloads
    sha256: str | None = None  # the entry's `hash`, when it is a SHA256
    size: int | None = None  # bytes, from `size_gb` (CivitAI's sizeKB / 1,000,000)


@dataclass(slots=True)
class CatalogEntries:
    """What the map takes from one catalog, and how many entries it had to leave out for unusable ids."""

    entries: list[MapEntry]
    unusable_ids: int = 0

    def __reduce__(self) -> tuple[object, ...]:
        # Sent back from a worker process as plain tuples: pickling 100,000 dataclass objects
        # one by one costs several times more, on both sides.
        rows = [(e.version_id, e.model_id, e.file, e.folder, e.catalog, e.head, e.dest, e.sha256, e.size) for e in self.entries]
        return (_entries_from_rows, (rows, self.unusable_ids))


def _entries_from_rows(rows: list[tuple[Any, ...]], unusable_ids: int) -> CatalogEntries:
    return CatalogEntries([MapEntry(*row) for row in rows], unusable_ids)


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


class _Unusable:
    """An entry left out of the map because an id is set but is not an id (counted, kept in the file)."""

    def __repr__(self) -> str:
        return "UNUSABLE"


UNUSABLE: Any = _Unusable()


def shown_entry(entry: dict[str, Any], catalog: str) -> MapEntry | None:
    """One catalog entry as the map shows it; None when the map does not show it (no version id,
    file or folder), UNUSABLE when an id is set but is not one ("²", -1, 2**70) or its name is
    not showable (a lone surrogate)."""
    raw_version, raw_model = entry.get("civitai_version_id"), entry.get("civitai_model_id")
    version_id = _exact_id(raw_version)
    model_id = _exact_id(raw_model)
    if (version_id is None and raw_version is not None) or (model_id is None and raw_model is not None):
        return UNUSABLE
    file, dest = entry.get("file"), entry.get("dest")
    if version_id is None or not isinstance(file, str) or not file or not isinstance(dest, str):
        return None
    view = {
        "file": file,
        "dest": dest,
        "name": entry.get("name") if isinstance(entry.get("name"), str) else file,
        "base_model": entry.get("base_model") if isinstance(entry.get("base_model"), str) else None,
        "civitai_model_id": model_id,
        "catalog": catalog,
    }
    try:
        head = b'"%d":' % version_id + orjson.dumps(view)[:-1] + b',"status":"'
    except orjson.JSONEncodeError:  # a lone surrogate in a name: not showable, left as it is in the file
        return UNUSABLE
    return MapEntry(version_id, model_id, file, sys.intern(canonical_folder(dest)), catalog, head, sys.intern(dest), _sha256(entry), _size(entry))


def disk_entry(version_id: int, model_id: int | None, file: str, folder: str, name: str, base_model: str | None, sha256: str) -> MapEntry:
    """A version identified on disk by its SHA256 that no catalog lists: `catalog: null`, always present."""
    view = {"file": file, "dest": folder, "name": name, "base_model": base_model, "civitai_model_id": model_id, "catalog": None}
    head = b'"%d":' % version_id + orjson.dumps(view)[:-1] + b',"status":"'
    return MapEntry(version_id, model_id, file, sys.intern(folder), "", head, folder, sha256, None)


_HEX_DIGITS = "0123456789abcdefABCDEF"
_MAX_ID = 2**63 - 1


def _exact_id(value: object) -> int | None:
    # The common case (a JSON integer) first, without a call: this runs for every entry.
    if type(value) is int:
        return value if 0 < value <= _MAX_ID else None
    return version_id_of({"civitai_version_id": value}) if value is not None else None


def _sha256(entry: dict[str, object]) -> str | None:
    value = entry.get("hash")
    if isinstance(value, str) and len(value) == 64 and not value.strip(_HEX_DIGITS):  # a regex is 8x slower, 70k times
        return value.lower()
    return None


def _size(entry: dict[str, object]) -> int | None:
    value = entry.get("size_gb")
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1e6:
        return round(value * 1_000_000_000)
    return None


@dataclass(slots=True)
class Layout:
    """The merged map of both catalogs, with one status slot per version."""

    entries: dict[int, MapEntry]
    parts: list[bytes]
    slots: dict[int, int]
    by_file: dict[str, Versions]
    by_model: dict[int, list[int]]
    by_sha256: dict[str, Versions] = field(default_factory=dict)  # catalogued versions by their entry's `hash`
    catalogued_models: dict[int, list[int]] | None = None  # by_model without versions only on disk (None: the same)
    # Worked out beside the layout it was built to follow (in a worker thread, not on the loop):
    # that layout, and the versions whose entries are new or not the same as in it.
    previous: Layout | None = None
    changed: set[int] | None = None
    holes: int = 0  # parts of versions that left, blanked in place (a re-lay drops them)

    def unlink(self, version_id: int, entry: MapEntry) -> None:
        """Take a version out of the lookups (not out of `parts`)."""
        _unlink(self.by_file, entry.file, version_id)
        if entry.model_id is not None:
            _drop(self.by_model, entry.model_id, version_id)
            if self.catalogued_models is not None:
                _drop(self.catalogued_models, entry.model_id, version_id)
        if entry.catalog and entry.sha256 is not None:
            _unlink(self.by_sha256, entry.sha256, version_id)

    def link(self, version_id: int, entry: MapEntry) -> None:
        """Put a version into the lookups, each list kept in ascending order."""
        _link(self.by_file, entry.file, version_id)
        if entry.model_id is not None:
            if not entry.catalog and self.catalogued_models is None:  # the first version only on disk
                self.catalogued_models = {m: list(versions) for m, versions in self.by_model.items()}
            bisect.insort(self.by_model.setdefault(entry.model_id, []), version_id)
            if entry.catalog and self.catalogued_models is not None:
                bisect.insort(self.catalogued_models.setdefault(entry.model_id, []), version_id)
        if entry.catalog and entry.sha256 is not None:
            _link(self.by_sha256, entry.sha256, version_id)

    def append(self, version_id: int, head: bytes) -> int:
        """Add a version's parts at the end of by_version; the index of its status."""
        parts = self.parts
        parts[-3:-3] = [b"," if self.entries else b"", head, MISSING]
        slot = len(parts) - 4
        self.slots[version_id] = slot
        return slot

    def blank(self, version_id: int) -> None:
        """Blank a version's parts; if it was the first shown, the next one loses its comma."""
        parts = self.parts
        slot = self.slots.pop(version_id)
        first = parts[slot - 2] == b""
        parts[slot - 2] = parts[slot - 1] = parts[slot] = b""
        self.holes += 1
        if first:
            for at in range(slot + 2, len(parts) - 3, 3):  # the next version's head
                if parts[at]:
                    parts[at - 1] = b""
                    break


def build_layout(catalogs: Iterable[Iterable[MapEntry]], previous: Layout | None = None) -> Layout:
    """Merge catalogs in order of precedence: a version already placed is not replaced.

    Pass loras first: an entry in both files is a promote cut short, and loras.json is
    where it was going. With `previous`, also say which versions changed since it, so that
    swapping the layout in costs the event loop work for those alone.

    Each version takes three parts: the comma before it (none for the first), its head and
    its status; `slots` points at the status. The body ends with by_model and its frame.
    """
    entries: dict[int, MapEntry] = {}
    for catalog in catalogs:
        for entry in catalog:
            entries.setdefault(entry.version_id, entry)
    parts: list[bytes] = [_OPEN]
    slots: dict[int, int] = {}
    by_file: dict[str, Versions] = {}
    by_model: dict[int, list[int]] = {}
    by_sha256: dict[str, Versions] = {}
    disk_only = False
    for version_id in sorted(entries):
        entry = entries[version_id]
        parts.append(b"," if len(parts) > 1 else b"")
        parts.append(entry.head)
        slots[version_id] = len(parts)
        parts.append(MISSING)
        _link(by_file, entry.file, version_id)
        if entry.model_id is not None:
            by_model.setdefault(entry.model_id, []).append(version_id)
        if not entry.catalog:
            disk_only = True
        elif entry.sha256 is not None:
            _link(by_sha256, entry.sha256, version_id)
    parts += [_MIDDLE, orjson.dumps(by_model, option=orjson.OPT_NON_STR_KEYS), _CLOSE]
    catalogued_models = None
    if disk_only:
        catalogued_models = {m: kept for m, versions in by_model.items() if (kept := [v for v in versions if entries[v].catalog])}
    layout = Layout(entries, parts, slots, by_file, by_model, by_sha256, catalogued_models)
    if previous is not None:
        before = previous.entries
        layout.previous = previous
        layout.changed = {v for v, entry in entries.items() if (old := before.get(v)) is None or not same_entry(old, entry)}
    return layout


# A lookup's value: the one version a key has (nearly always), or the ascending list of several.
# A bare int where there is one spares a list per key: 12 MB at 100,000 entries, by file and by hash.
Versions = int | list[int]


def versions_in(index: dict[Any, Versions], key: Any) -> tuple[int, ...] | list[int]:
    """The versions a lookup has under a key, ascending (empty when none)."""
    found = index.get(key)
    if found is None:
        return ()
    return (found,) if type(found) is int else found  # type: ignore[return-value]


def _link(index: dict[Any, Versions], key: Any, version_id: int) -> None:
    found = index.get(key)
    if found is None:
        index[key] = version_id
    elif type(found) is int:
        if found != version_id:
            index[key] = [found, version_id] if found < version_id else [version_id, found]
    elif version_id not in found:  # type: ignore[operator]
        bisect.insort(found, version_id)  # type: ignore[arg-type]


def _unlink(index: dict[Any, Versions], key: Any, version_id: int) -> None:
    found = index.get(key)
    if found is None:
        return
    if type(found) is int:
        if found == version_id:
            del index[key]
    elif version_id in found:  # type: ignore[operator]
        found.remove(version_id)  # type: ignore[union-attr]
        if len(found) == 1:  # type: ignore[arg-type]
            index[key] = found[0]  # type: ignore[index]


def _drop(index: dict[Any, list[int]], key: Any, version_id: int) -> None:
    versions = index.get(key)
    if versions is not None and version_id in versions:
        versions.remove(version_id)
        if not versions:
            del index[key]


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
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: the gzip container
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
    few slices of 256 KiB, and a body still being sent shares all the others with the new one.
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


class CivitaiIndex:
    """The live map. Owned by the event loop; every method runs there and never blocks."""

    def __init__(self, presence: Presence, hashes: KnownHashes | None = None) -> None:
        self.presence = presence
        self.hashes = hashes if hashes is not None else KnownHashes()
        self._relinked: dict[str, set[int]] = {}  # file name on disk -> versions found there under another name
        self._boot = secrets.token_hex(4)
        self._generation = 0
        self._layout = build_layout([])
        self._status: dict[int, bytes] = {}  # version id -> the bytes in its status slot
        self._transfers: dict[str, dict[str, Transfer]] = {}  # file name -> logical folder -> transfer
        self._progress_shown: dict[int, float] = {}
        self._deferred: set[str] = set()
        self._deferred_handle: asyncio.TimerHandle | None = None
        self._slices = SliceCache()  # the latest large body's slices, which the next one takes over where unchanged
        self.snapshot = MapSnapshot(tuple(self._layout.parts), self._etag(), self._slices)
        self.listeners: list[Listener] = []  # told (etag, changes) after every publish

    def __len__(self) -> int:
        return len(self._layout.entries)

    @property
    def layout(self) -> Layout:
        """The layout shown now (read-only: build the next one against it)."""
        return self._layout

    def entry(self, version_id: int) -> MapEntry | None:
        """The map entry of a catalogued version (not of one only identified on disk)."""
        entry = self._layout.entries.get(version_id)
        return entry if entry is not None and entry.catalog else None

    def shown(self, version_id: int) -> MapEntry | None:
        """The map entry of a version, catalogued or only identified on disk."""
        return self._layout.entries.get(version_id)

    def catalogued_models(self) -> dict[int, list[int]]:
        """Every catalogued CivitAI model id with its catalogued version ids (read-only)."""
        layout = self._layout
        return layout.by_model if layout.catalogued_models is None else layout.catalogued_models

    def versions_of_file(self, file: str) -> tuple[int, ...]:
        """The catalogued versions whose file has that name."""
        entries = self._layout.entries
        return tuple(v for v in versions_in(self._layout.by_file, file) if entries[v].catalog)

    def set_layout(self, layout: Layout) -> bool:
        """Swap in a new layout and fill every status; publish when the body changed.

        An entry the old layout had unchanged keeps its status (every event since kept it
        current). When the layout was built against the current one (`build_layout(...,
        previous=)`, in a worker thread), the loop works out statuses only for what changed.
        """
        old_layout, old_status = self._layout, self._status
        old_entries = old_layout.entries
        self._layout = layout
        self._status = status = {}
        changes: Changes = {}
        parts, slots, entries = layout.parts, layout.slots, layout.entries
        changed = layout.changed if layout.previous is old_layout else None
        layout.previous = layout.changed = None  # keep no older layout alive
        if changed is not None:
            for version_id, slot in old_status.items():
                if version_id in entries and version_id not in changed:
                    status[version_id] = slot
                    if slot is not MISSING:
                        parts[slots[version_id]] = slot
            todo: Iterable[int] = changed
        else:
            todo = entries
        for version_id in todo:
            entry = entries[version_id]
            old = old_entries.get(version_id)
            slot = old_status.get(version_id) if old is not None and same_entry(old, entry) else None
            if slot is None:
                slot = self._slot(entry)
                if old is None or old.head != entry.head or old_status.get(version_id) != slot:
                    changes[version_id] = status_name(slot)
            status[version_id] = slot
            if slot is not MISSING:
                parts[slots[version_id]] = slot
        for version_id in old_entries.keys() - entries.keys():
            changes[version_id] = None
        return self._publish(changes)

    def update(self, shown: dict[int, MapEntry | None]) -> bool:
        """Splice versions into the layout in place: a changed entry's head replaced, a new
        version appended, one that left blanked (None). Costs the versions given, not the map;
        publish when the body changed. `holes` says when a re-lay would be worth it."""
        layout = self._layout
        entries, parts, status = layout.entries, layout.parts, self._status
        changes: Changes = {}
        models_moved = False
        for version_id, new in shown.items():
            old = entries.get(version_id)
            if new is None:
                if old is None:
                    continue
                layout.unlink(version_id, old)
                layout.blank(version_id)
                del entries[version_id]
                status.pop(version_id, None)
                self._progress_shown.pop(version_id, None)
                changes[version_id] = None
                models_moved |= old.model_id is not None
                continue
            if old is not None and same_entry(old, new):
                continue
            if old is None:
                slot = layout.append(version_id, new.head)
            else:
                layout.unlink(version_id, old)
                slot = layout.slots[version_id]
                parts[slot - 1] = new.head
            layout.link(version_id, new)
            models_moved |= old is None or old.model_id != new.model_id or (new.model_id is not None and old.catalog != new.catalog)
            entries[version_id] = new
            before = status.get(version_id)
            slot_bytes = self._slot(new)
            status[version_id] = parts[slot] = slot_bytes
            if old is None or old.head != new.head or before != slot_bytes:
                changes[version_id] = status_name(slot_bytes)
        if models_moved:
            parts[-2] = orjson.dumps(layout.by_model, option=orjson.OPT_NON_STR_KEYS)
        return self._publish(changes)

    def files_changed(self, names: Iterable[str]) -> bool:
        """Re-check the versions whose file names changed on disk; publish when any status moved."""
        layout = self._layout
        changes: Changes = {}
        deferred: set[str] = set()
        for name in names:
            for version_id in (*versions_in(layout.by_file, name), *self._relinked.get(name, ())):
                if not self._recheck(version_id, changes):
                    deferred.add(name)
        if deferred:
            self._later(deferred)
        return self._publish(changes)

    def hashes_changed(self, paths: Iterable[str], hashes: Iterable[str], versions: Iterable[int] = ()) -> bool:
        """Re-check what new facts about bytes on disk can move: versions whose file has one of those
        names, whose entry's `hash` is one of those hashes, or which were identified anew."""
        changes: Changes = {}
        wanted = set(versions)
        for path in paths:
            name = os.path.basename(path)
            wanted.update(versions_in(self._layout.by_file, name), self._relinked.get(name, ()))
        for sha256 in hashes:
            wanted.update(versions_in(self._layout.by_sha256, sha256))
        for version_id in wanted:
            self._recheck(version_id, changes, throttle=False)
        return self._publish(changes)

    def refresh(self) -> bool:
        """Re-check every version (a root went offline or came back)."""
        changes: Changes = {}
        for version_id in self._layout.entries:
            self._recheck(version_id, changes, throttle=False)
        return self._publish(changes)

    def _recheck(self, version_id: int, changes: Changes, *, throttle: bool = True) -> bool:
        """Work out one version's status again and note a change; False when held back by the throttle."""
        layout = self._layout
        entry = layout.entries.get(version_id)
        if entry is None:
            return True
        slot = self._slot(entry)
        old = self._status.get(version_id)
        if slot != old:
            if throttle and self._too_soon(version_id, old, slot):
                return False
            self._status[version_id] = slot
            layout.parts[layout.slots[version_id]] = slot
            changes[version_id] = status_name(slot)
        return True

    def set_transfer(self, file: str, folder: str, transfer: Transfer | None) -> bool:
        """Say that a file is on its way into a logical folder (None: no longer); publish if a status moved."""
        places = self._transfers.setdefault(file, {})
        if transfer is None:
            places.pop(folder, None)
        else:
            places[folder] = transfer
        if not places:
            del self._transfers[file]
        return self.files_changed((file,))

    def status(self, version_id: int) -> bytes | None:
        """The status slot of a catalogued version (PRESENT, MISSING, ...), None when not in the map."""
        return self._status.get(version_id) if version_id in self._layout.entries else None

    def _slot(self, entry: MapEntry) -> bytes:
        presence = self.presence
        if presence.is_present(entry.file, entry.folder):
            if entry.sha256 is not None and entry.catalog and self.hashes.by_path:
                hashes = {self.hashes.by_path.get(path) for path in presence.paths_of(entry.file, entry.folder)}
                if None not in hashes and entry.sha256 not in hashes:  # every copy hashed, none is the entry's
                    return PRESENT_MISMATCH
            return PRESENT
        places = self._transfers.get(entry.file)
        if places:
            prefix = entry.folder + "/"
            for folder, transfer in places.items():
                if folder == entry.folder or folder.startswith(prefix):
                    return transfer.slot()
        elsewhere = presence.downloading(entry.file, entry.folder)  # another program's download
        if elsewhere is not None:
            return Transfer("downloading", elsewhere, entry.size).slot()
        relinked = self._found_elsewhere(entry)
        if relinked is not None:
            return relinked
        if presence.offline and presence.could_be_offline(entry.folder):
            return UNAVAILABLE
        return MISSING

    def _found_elsewhere(self, entry: MapEntry) -> bytes | None:
        """The slot of a catalogued version whose file is on disk under another name or folder:
        the same SHA256 as its entry's `hash`, or a file CivitAI names as this version."""
        hashes = self.hashes
        if not hashes.by_path or not entry.catalog:
            return None
        paths = sorted(hashes.by_hash.get(entry.sha256, ())) if entry.sha256 is not None else []
        paths += hashes.paths_of_version(entry.version_id)
        for path in paths:
            logical = self.presence.logical_of(path)
            if logical is not None:
                name = os.path.basename(path)
                local_file = f"{logical}/{name}" if logical else name
                try:
                    shown = orjson.dumps(local_file)
                except orjson.JSONEncodeError:  # a name that is not UTF-8: JSON cannot say where it is
                    continue
                self._relinked.setdefault(name, set()).add(entry.version_id)
                return b'present","local_file":' + shown + b"}"
        return None

    def _too_soon(self, version_id: int, old: bytes | None, new: bytes) -> bool:
        """Progress alone moves the map at most once a second per download, not once per chunk."""
        if old is None or not (old.startswith(DOWNLOADING) and new.startswith(DOWNLOADING)):
            return False
        now = time.monotonic()
        if now - self._progress_shown.get(version_id, 0.0) >= PROGRESS_INTERVAL_S:
            self._progress_shown[version_id] = now
            return False
        return True

    def _later(self, names: set[str]) -> None:
        self._deferred |= names
        if self._deferred_handle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._deferred_handle = loop.call_later(PROGRESS_INTERVAL_S, self._flush_deferred)

    def _flush_deferred(self) -> None:
        names, self._deferred, self._deferred_handle = self._deferred, set(), None
        self.files_changed(names)

    def point_answer(self, version_ids: Iterable[int] = (), model_ids: Iterable[int] = ()) -> bytes:
        """The map restricted to some versions and to every version of some models."""
        layout = self._layout
        wanted = {v for v in version_ids if v in layout.entries}
        for model_id in model_ids:
            wanted.update(layout.by_model.get(model_id, ()))
        fragments = [layout.entries[v].head + self._status.get(v, MISSING) for v in sorted(wanted)]
        by_model: dict[int, list[int]] = {}
        for version_id in sorted(wanted):
            model_id = layout.entries[version_id].model_id
            if model_id is not None:
                by_model.setdefault(model_id, []).append(version_id)
        return _OPEN + b",".join(fragments) + _MIDDLE + orjson.dumps(by_model, option=orjson.OPT_NON_STR_KEYS) + _CLOSE

    def _publish(self, changes: Changes) -> bool:
        # No version added, removed, re-described or re-statused: the body cannot differ.
        if not changes:
            return False
        self._generation += 1
        self.snapshot = MapSnapshot(tuple(self._layout.parts), self._etag(), self._slices)
        for listener in self.listeners:
            listener(self.snapshot.etag, changes)
        return True

    def _etag(self) -> str:
        return f'"{self._boot}-{self._generation}"'


def same_entry(old: MapEntry, new: MapEntry) -> bool:
    """True when an entry is shown, and its status worked out, exactly as before. Cheaper than
    the dataclass's ==, which builds two tuples: this runs for every entry of a re-laid map."""
    return old is new or (
        old.head == new.head and old.folder == new.folder and old.sha256 == new.sha256 and old.size == new.size and old.catalog == new.catalog
    )


def gzip_etag(etag: str) -> str:
    """The tag of the gzip variant of the answer tagged `etag`."""
    return etag[:-1] + '-gz"'


def status_name(slot: bytes) -> str:
    """The status a slot says: "present", "missing", "queued" or "downloading". One str object
    per status, shared by every version that has it (a fresh str each was 5.6 MB at 100,000 entries)."""
    name = slot[: slot.index(b'"')]
    known = _STATUS_NAMES.get(name)
    if known is None:
        known = _STATUS_NAMES[name] = name.decode()
    return known


_STATUS_NAMES: dict[bytes, str] = {}
