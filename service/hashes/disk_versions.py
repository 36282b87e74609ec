"""The versions found on disk that no catalog lists, as the map shows them: one entry a version,
from the first of its files in path order, re-laid into the map at most every PUBLISH_S."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Container, Iterable, Mapping

import orjson

from ..civitai.lookup import Identity
from ..civitai.routing import display_name
from ..disk.known import KnownHashes
from ..disk.presence import Presence
from ..map.entry import MapEntry, disk_entry

PUBLISH_S = 2.0  # the versions found on disk are re-laid into the map at most this often while work goes on


class DiskVersions:
    """The map entries of versions found on disk, kept per version. Owned by the event loop."""

    def __init__(self, publish: Callable[[list[MapEntry]], Awaitable[object]], *, shown: bool) -> None:
        self._publish = publish
        self.shown = shown  # SHOW_UNCATALOGUED
        self._by_version: dict[int, MapEntry] = {}
        self.dirty = False  # changed since last shown
        self._published_at = 0.0

    def refresh(
        self, versions: Iterable[int], known: KnownHashes, identities: Mapping[str, Identity], presence: Presence, hinted: Container[str]
    ) -> None:
        """Work out again the entries of versions whose files on disk changed: the first file in
        path order that presence still holds, or none. Files in `hinted` are known by a sidecar."""
        for version_id in versions:
            entry = None
            for path in known.paths_of_version(version_id):
                folder = presence.logical_of(path)
                identity = identities.get(known.by_path.get(path, ""))
                if folder is None or identity is None or not identity.known:
                    continue
                entry = self._entry(version_id, path, folder, identity, "sidecar" if path in hinted else "hash")
                if entry is not None:
                    break
            if entry is None:
                if self._by_version.pop(version_id, None) is not None:
                    self.dirty = True
            elif self._by_version.get(version_id) is not entry:
                self._by_version[version_id] = entry
                self.dirty = True

    def _entry(self, version_id: int, path: str, folder: str, identity: Identity, identified_by: str) -> MapEntry | None:
        """The entry shown for a version from one of its files (the one shown before when nothing
        changed); None when its name cannot be shown in JSON (not UTF-8)."""
        file = os.path.basename(path)
        old = self._by_version.get(version_id)
        if old is not None and (old.file, old.folder, old.sha256, old.identified_by) == (file, folder, identity.sha256, identified_by):
            return old
        name = display_name(identity.model_name, identity.version_name, identity.base_model) or file
        try:
            return disk_entry(version_id, identity.model_id, file, folder, name, identity.base_model, identity.sha256, identified_by)
        except orjson.JSONEncodeError:
            return None

    async def publish(self, *, now: bool = False) -> None:
        """Show the entries in the map (unless turned off): at most every PUBLISH_S while hashing
        and identifying go on (each time re-lays the map), and at the end (`now`)."""
        if not self.shown or not self.dirty:
            return
        if not now and time.monotonic() - self._published_at < PUBLISH_S:
            return
        self.dirty = False
        self._published_at = time.monotonic()
        await self._publish(list(self._by_version.values()))
