"""The map's layout: every shown version's head and status slot in one list of byte parts, and
the lookups by file, model and SHA256. Built whole in a worker thread, or spliced in place by
the index for a few versions."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from .bymodel import MODEL_BUCKETS, ByModel
from .chunks import ChunkedParts
from .entry import (
    ENTRY_CATALOG,
    ENTRY_FILE,
    ENTRY_HEAD,
    ENTRY_MODEL,
    ENTRY_SHA256,
    ENTRY_VERSION,
    MapEntry,
    same_entry,
)
from .status import MISSING

OPEN = b'{"by_version":{'
MIDDLE = b'},"by_model":'
CLOSE = b"}"
TAIL = MODEL_BUCKETS + 2  # the body's parts after the last version: `},"by_model":{`, the buckets, `}}`


@dataclass(slots=True)
class Layout:
    """The merged map of both catalogs, with one status slot per version."""

    entries: dict[int, MapEntry]
    parts: ChunkedParts
    slots: dict[int, int]
    by_file: dict[str, Versions]
    models: ByModel  # by_model, and the body's parts that say it
    by_sha256: dict[str, Versions] = field(default_factory=dict)  # catalogued versions by their entry's `hash`
    catalogued_models: dict[int, list[int]] | None = None  # by_model without versions only on disk (None: the same)
    # Worked out beside the layout it was built to follow (in a worker thread, not on the loop):
    # that layout, and the versions whose entries are new or not the same as in it.
    previous: Layout | None = None
    changed: set[int] | None = None
    holes: int = 0  # parts of versions that left, blanked in place (a re-lay drops them)

    def status_of(self, version_id: int) -> bytes | None:
        """The bytes in a version's status slot, None when it is not in the layout."""
        at = self.slots.get(version_id)
        return None if at is None else self.parts.items[at]

    @property
    def by_model(self) -> dict[int, list[int]]:
        """Every model's versions, ascending."""
        return self.models.versions

    def unlink(self, version_id: int, entry: MapEntry) -> None:
        """Take a version out of the lookups (not out of `parts`)."""
        _unlink(self.by_file, entry.file, version_id)
        if entry.model_id is not None:
            self.models.drop(entry.model_id, version_id)
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
            self.models.add(entry.model_id, version_id)
            if entry.catalog and self.catalogued_models is not None:
                bisect.insort(self.catalogued_models.setdefault(entry.model_id, []), version_id)
        if entry.catalog and entry.sha256 is not None:
            _link(self.by_sha256, entry.sha256, version_id)

    def append(self, version_id: int, head: bytes) -> int:
        """Add a version's parts at the end of by_version; the index of its status."""
        parts = self.parts
        parts.insert(-TAIL, [b"," if self.entries else b"", head, MISSING])
        slot = len(parts) - TAIL - 1
        self.slots[version_id] = slot
        return slot

    def write_models(self) -> None:
        """Write the buckets of by_model that changed into the body's parts."""
        base = len(self.parts) - 1 - MODEL_BUCKETS
        for number, part in self.models.changed_parts().items():
            self.parts[base + number] = part

    def blank(self, version_id: int) -> None:
        """Blank a version's parts; if it was the first shown, the next one loses its comma."""
        parts = self.parts
        slot = self.slots.pop(version_id)
        first = parts[slot - 2] == b""
        parts[slot - 2] = parts[slot - 1] = parts[slot] = b""
        self.holes += 1
        if first:
            for at in range(slot + 2, len(parts) - TAIL, 3):  # the next version's head
                if parts.items[at]:
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
    # Column at a time, each a C loop: a loop over versions in Python pays the interpreter for
    # each thing it does, for every version.
    order = sorted(entries)
    ordered = list(map(entries.__getitem__, order))
    parts: list[bytes] = [OPEN]
    parts += itertools.chain.from_iterable(zip(itertools.repeat(b","), map(ENTRY_HEAD, ordered), itertools.repeat(MISSING)))
    if ordered:
        parts[1] = b""  # no comma before the first
    slots = dict(zip(order, range(3, 3 * len(order) + 1, 3)))
    by_file = _lookup(map(ENTRY_FILE, ordered), order)
    by_model: dict[int, list[int]] = {}
    for model_id, version_id in zip(map(ENTRY_MODEL, ordered), order):
        if model_id is not None:
            by_model.setdefault(model_id, []).append(version_id)
    disk_only = not all(map(ENTRY_CATALOG, ordered))
    hashed = [entry for entry in ordered if entry.sha256 is not None and entry.catalog]
    by_sha256 = _lookup(map(ENTRY_SHA256, hashed), list(map(ENTRY_VERSION, hashed)))
    models = ByModel(by_model)
    parts += [MIDDLE + b"{", *models.parts(), CLOSE + CLOSE]
    catalogued_models = None
    if disk_only:
        catalogued_models = {m: kept for m, versions in by_model.items() if (kept := [v for v in versions if entries[v].catalog])}
    layout = Layout(entries, ChunkedParts(parts), slots, by_file, models, by_sha256, catalogued_models)
    if previous is not None:
        before = previous.entries
        layout.previous = previous
        layout.changed = {v for v, entry in entries.items() if (old := before.get(v)) is None or not same_entry(old, entry)}
    return layout


# A lookup's value: the one version a key has (nearly always), or the ascending list of several.
# A bare int where there is one spares a list per key, by file and by hash.
Versions = int | list[int]


def versions_in(index: dict[Any, Versions], key: Any) -> tuple[int, ...] | list[int]:
    """The versions a lookup has under a key, ascending (empty when none)."""
    found = index.get(key)
    if found is None:
        return ()
    return (found,) if type(found) is int else found  # type: ignore[return-value]


def _lookup(keys: Iterable[Any], versions: list[int]) -> dict[Any, Versions]:
    """A lookup of these versions (ascending) by their keys: built in C, the first version of
    each key kept; only versions that share a key with an earlier one are linked one by one."""
    keys = list(keys)
    index: dict[Any, Versions] = dict(zip(reversed(keys), reversed(versions)))
    if len(index) < len(keys):  # some keys have several versions
        for key, version_id in zip(keys, versions):
            if index[key] != version_id:
                _link(index, key, version_id)
    return index


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


def point_body(layout: Layout, version_ids: Iterable[int], model_ids: Iterable[int]) -> bytes:
    """The map restricted to some versions and to every version of some models."""
    wanted = {v for v in version_ids if v in layout.entries}
    for model_id in model_ids:
        wanted.update(layout.by_model.get(model_id, ()))
    items, slots, ordered = layout.parts.items, layout.slots, sorted(wanted)
    fragments = [layout.entries[v].head + items[slots[v]] for v in ordered]
    by_model: dict[int, list[int]] = {}
    for version_id in ordered:
        model_id = layout.entries[version_id].model_id
        if model_id is not None:
            by_model.setdefault(model_id, []).append(version_id)
    return OPEN + b",".join(fragments) + MIDDLE + orjson.dumps(by_model, option=orjson.OPT_NON_STR_KEYS) + CLOSE


def files_by_stem(files: list[str], stems: set[str]) -> dict[str, list[str]]:
    """The file names whose stem (the name without its last extension), lowercased, is wanted."""
    found: dict[str, list[str]] = {}
    for name in files:  # file names, never paths
        stem = (name.rpartition(".")[0] or name).lower()
        if stem in stems:
            found.setdefault(stem, []).append(name)
    return found
