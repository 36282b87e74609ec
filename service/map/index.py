"""The live map: built from both catalogs and the presence of files on disk.

Every published answer is an immutable `MapSnapshot` swapped in with one assignment; handlers
only ever read the current one. A file event patches a few status slots of the layout and
publishes; nothing is serialized again.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Iterable

import orjson

from ..disk.known import ByPath, KnownHashes
from ..disk.presence import Presence
from .body import MapSnapshot, SliceCache
from .entry import MapEntry, same_entry
from .layout import Layout, build_layout, files_by_stem, point_body, versions_in
from .parts import Parts
from .previous import Previous
from .status import (
    DOWNLOADING,
    MISSING,
    PRESENT,
    PRESENT_MISMATCH,
    UNAVAILABLE,
    Changes,
    Listener,
    Status,
    Transfer,
    status_of,
)
from .status import slot as status_slot

PROGRESS_INTERVAL_S = 1.0
PREVIEW_PATH = b"/api/admin/models/preview/"  # + version id: where this service serves a version's preview


class CivitaiIndex:
    """The live map. Owned by the event loop; every method runs there and never blocks."""

    def __init__(self, presence: Presence, hashes: KnownHashes | None = None) -> None:
        self.presence = presence
        self.parts = Parts(lambda file: self.files_changed((file,)))
        self.hashes = hashes if hashes is not None else KnownHashes()
        self._relinked: dict[str, set[int]] = {}  # file name on disk -> versions found there under another name
        self._boot = secrets.token_hex(4)
        self._generation = 0
        self._layout = build_layout([])
        self._transfers: dict[str, dict[str, Transfer]] = {}  # file name -> logical folder -> transfer
        self._progress_shown: dict[int, float] = {}
        self._deferred: set[str] = set()
        self._deferred_handle: asyncio.TimerHandle | None = None
        self._slices = SliceCache()  # the latest large body's slices, which the next one takes over where unchanged
        self.snapshot = MapSnapshot(self._layout.parts.chunks(), self._etag(), self._slices)
        self.listeners: list[Listener] = []  # told (etag, changes) after every publish
        self._previous = Previous()  # what the changed versions showed before, while listeners are told
        self.previews: ByPath[str] = ByPath()  # physical path of a model file -> the preview image beside it

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

    def was(self, version_id: int) -> tuple[Status | None, MapEntry | None]:
        """For a listener, while it is told of changes: the status and entry a version had
        before them (None, None: it was not in the map)."""
        before = self._previous.of(version_id)
        slot, entry = before if before is not None else (self._layout.status_of(version_id), self._layout.entries.get(version_id))
        return (status_of(slot) if slot is not None else None), entry

    def catalogued_models(self) -> dict[int, list[int]]:
        """Every catalogued CivitAI model id with its catalogued version ids (read-only)."""
        layout = self._layout
        return layout.by_model if layout.catalogued_models is None else layout.catalogued_models

    def versions_of_file(self, file: str) -> tuple[int, ...]:
        """The catalogued versions whose file has that name."""
        entries = self._layout.entries
        return tuple(v for v in versions_in(self._layout.by_file, file) if entries[v].catalog)

    async def versions_by_stem(self, stems: set[str]) -> dict[str, int]:
        """The version whose file is named by each stem (`name` for `name.safetensors`), ignoring
        case; a catalogued version before one only identified on disk, then the lowest id. The
        names are copied on the loop and matched in a worker thread."""
        wanted = {stem.lower() for stem in stems}
        files = list(self._layout.by_file)
        matches = await asyncio.to_thread(files_by_stem, files, wanted)
        found: dict[str, int] = {}
        for stem, names in matches.items():
            versions = [v for name in names for v in versions_in(self._layout.by_file, name) if v in self._layout.entries]
            if versions:
                found[stem] = min(versions, key=lambda v: (not self._layout.entries[v].catalog, v))
        return found

    def set_layout(self, layout: Layout, *, afresh: bool = False) -> bool:
        """Swap in a new layout and fill every status; publish when the body changed.

        An entry the old layout had unchanged keeps its status (every event since kept it
        current), unless `afresh`. When the layout was built against the current one
        (`build_layout(..., previous=)`, in a worker thread), the loop works out statuses only
        for what changed.
        """
        old_layout = self._layout
        old_entries, old_slots, old_parts = old_layout.entries, old_layout.slots, old_layout.parts.items
        self._previous.note_layout(old_layout)
        self._layout = layout
        changes: Changes = {}
        parts, slots, entries = layout.parts.items, layout.slots, layout.entries  # a new layout's chunks are all unpublished
        changed = layout.changed if layout.previous is old_layout and not afresh else None
        layout.previous = layout.changed = None  # keep no older layout alive
        if changed is not None:
            for version_id, at in old_slots.items():
                if version_id in entries and version_id not in changed:
                    slot = old_parts[at]
                    if slot is not MISSING:
                        parts[slots[version_id]] = slot
            todo: Iterable[int] = changed
        else:
            todo = entries
        for version_id in todo:
            entry = entries[version_id]
            old = old_entries.get(version_id)
            before = old_parts[old_slots[version_id]] if old is not None else None
            slot = before if old is not None and not afresh and same_entry(old, entry) else None
            if slot is None:
                slot = self._slot(entry)
                if old is None or old.head != entry.head or before != slot:
                    changes[version_id] = status_of(slot)
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
        entries, parts = layout.entries, layout.parts
        changes: Changes = {}
        for version_id, new in shown.items():
            old = entries.get(version_id)
            if new is None:
                if old is None:
                    continue
                self._previous.note(version_id, layout.status_of(version_id), old)
                layout.unlink(version_id, old)
                layout.blank(version_id)
                del entries[version_id]
                self._progress_shown.pop(version_id, None)
                changes[version_id] = None
                continue
            if old is not None and same_entry(old, new):
                continue
            self._previous.note(version_id, layout.status_of(version_id), old)
            if old is None:
                slot = layout.append(version_id, new.head)
            else:
                layout.unlink(version_id, old)
                slot = layout.slots[version_id]
                parts[slot - 1] = new.head
            layout.link(version_id, new)
            entries[version_id] = new
            before = parts[slot] if old is not None else None
            slot_bytes = self._slot(new)
            parts[slot] = slot_bytes
            if old is None or old.head != new.head or before != slot_bytes:
                changes[version_id] = status_of(slot_bytes)
        layout.write_models()
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
        at = layout.slots[version_id]
        old = layout.parts[at]
        if slot != old:
            if throttle and self._too_soon(version_id, old, slot):
                return False
            self._previous.note(version_id, old, entry)
            layout.parts[at] = slot
            changes[version_id] = status_of(slot)
        return True

    def set_previews(self, found: dict[str, str | None]) -> set[str]:
        """Say which model files have a preview beside them (a file name), or none now (None);
        returns the paths whose preview came or went (tell `hashes_changed` to show them)."""
        moved: set[str] = set()
        for path, preview in found.items():
            if preview is None:
                if self.previews.pop(path, None) is not None:
                    moved.add(path)
            elif self.previews.get(path) != preview:
                self.previews[path] = preview
                moved.add(path)
        return moved

    def preview_of(self, version_id: int) -> tuple[str, str] | None:
        """(the model file's path, the path of the preview image beside it) of a version, if one is known."""
        entry = self._layout.entries.get(version_id)
        if entry is None or not self.previews:
            return None
        for path in self.presence.paths_of(entry.file, entry.folder):
            preview = self.previews.get(path)
            if preview is not None:
                return path, os.path.join(os.path.dirname(path), preview)
        return None

    def set_transfer(self, file: str, folder: str, transfer: Transfer | None) -> bool:
        """Say that a file is on its way into a logical folder (None: no longer); publish if a status moved."""
        places = self._transfers.setdefault(file, {})
        if transfer is None:
            places.pop(folder, None)
        else:
            if folder not in places:
                self.parts.job_started(file, folder)
            places[folder] = transfer
        if not places:
            del self._transfers[file]
        return self.files_changed((file,))

    def job_ended(self, file: str, folder: str, code: str | None = None, detail: str | None = None, *, wrote_part: bool = True) -> bool:
        """This service's job for a file stopped (failed with `code` and `detail`, or cancelled):
        in the same step it is no longer on its way, and a part it wrote reads stopped."""
        self.parts.job_ended(file, folder, code, detail, wrote_part=wrote_part)
        return self.set_transfer(file, folder, None)

    def status(self, version_id: int) -> bytes | None:
        """The status slot of a catalogued version (PRESENT, MISSING, ...), None when not in the map."""
        return self._layout.status_of(version_id)

    def slot_fields(self, version_id: int) -> dict[str, object] | None:
        """What the map says beside a version's status (`dl_bytes`, `partial_bytes`, `dl_error`,
        `local_file`...), None when it says nothing more or the version is not in the map."""
        slot = self.status(version_id)
        if slot is None or slot.index(b'"') == len(slot) - 2:  # `missing"}`: the status alone
            return None
        fields = orjson.loads(b'{"status":"' + slot)
        del fields["status"]
        return fields

    def _slot(self, entry: MapEntry) -> bytes:
        presence = self.presence
        if presence.is_present(entry.file, entry.folder):
            mismatch = False
            if entry.sha256 is not None and entry.catalog and self.hashes.by_path:
                known = self.hashes
                hashes = {None if path in known.hinted else known.by_path.get(path) for path in presence.paths_of(entry.file, entry.folder)}
                mismatch = None not in hashes and entry.sha256 not in hashes  # every copy hashed, none is the entry's
            if self.previews and any(path in self.previews for path in presence.paths_of(entry.file, entry.folder)):
                preview = b',"preview":"%s%d"' % (PREVIEW_PATH, entry.version_id)
                return status_slot(Status.PRESENT, (b',"hash_mismatch":true' if mismatch else b"") + preview)
            return PRESENT_MISMATCH if mismatch else PRESENT
        places = self._transfers.get(entry.file)
        if places:
            prefix = entry.folder + "/"
            for folder, transfer in places.items():
                if folder == entry.folder or folder.startswith(prefix):
                    return transfer.slot()
        part = presence.partial(entry.file, entry.folder)  # another program's download, or one left stopped
        growing = self.parts.growing(entry, part)
        if growing is not None:
            return growing
        relinked = self._found_elsewhere(entry)
        if relinked is not None:
            return relinked
        if presence.offline and presence.could_be_offline(entry.folder):
            return UNAVAILABLE
        return self.parts.stopped(entry, part)

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
                return status_slot(Status.PRESENT, b',"local_file":' + shown)
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
        return point_body(self._layout, version_ids, model_ids)

    def _publish(self, changes: Changes) -> bool:
        # No version added, removed, re-described or re-statused: the body cannot differ.
        if not changes:
            self._previous.clear()
            return False
        self._generation += 1
        self.snapshot = MapSnapshot(self._layout.parts.chunks(), self._etag(), self._slices)
        try:
            for listener in self.listeners:
                listener(self.snapshot.etag, changes)
        finally:
            self._previous.clear()
        return True

    def _etag(self) -> str:
        return f'"{self._boot}-{self._generation}"'
