"""Sidecar hints of files not hashed yet: taken as their SHA256 until the hasher reads the bytes.

A hint identifies a file at once (`identified_by: "sidecar"`); the background hasher still
hashes it, last. When the bytes agree the hint is done with; when they do not, the bytes win,
the hint is dropped, and the log says so once per sidecar.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from ..civitai.lookup import Identity
from ..disk.known import ByPath, KnownHashes
from ..map.index import CivitaiIndex
from ..sidecars.finder import Beside, ModelFile, look_beside
from ..sidecars.formats import Hint
from .store import FileKey

logger = logging.getLogger(__name__)

REFUSALS_LOGGED = 20  # sidecars not trusted are named one by one up to this many a pass, then counted


class Hints:
    """Hints by path, each with the key of the file it was read for. Owned by the event loop."""

    def __init__(self) -> None:
        self._by_path: ByPath[tuple[FileKey, Hint]] = ByPath()
        self._looked: ByPath[FileKey] = ByPath()  # files whose sidecars were looked at, as they were then
        self.caught = 0  # hints the bytes proved wrong, this run
        self.lent: set[str] = set()  # hashes whose identity in the hasher's table is a sidecar's word

    def __contains__(self, path: str) -> bool:
        return path in self._by_path

    def __len__(self) -> int:
        return len(self._by_path)

    async def look_beside(
        self, keys: list[FileKey], unhashed: list[FileKey], on_disk: set[str], index: CivitaiIndex, names: set[str] | None = None
    ) -> tuple[set[str], set[str]]:
        """Previews beside every file looked at (told to the index); sidecars beside the unhashed
        ones not looked at as they are now. Returns the SHA256 values of new hints, and the
        files whose preview came or went. `names`: only files of these names were looked at
        (`on_disk` holds those of them on disk); None: every file was."""
        self.keep_only(on_disk, names)
        to_read = self.not_looked_at(unhashed)
        files = [ModelFile(key.path, key.size, key.mtime_ns) for key in keys]
        beside = await asyncio.to_thread(look_beside, files, {key.path for key in to_read})
        gone = {path: None for path in (index.previews if names is None else index.previews.named(names)) if path not in on_disk}
        moved = index.set_previews({**gone, **{key.path: beside.previews.get(key.path) for key in keys}})
        return self.take(to_read, beside), moved

    def not_looked_at(self, keys: Iterable[FileKey]) -> list[FileKey]:
        """Of these unhashed files, those whose sidecars were not looked at as they are now."""
        return [key for key in keys if self._looked.get(key.path) != key]

    def take(self, keys: Iterable[FileKey], beside: Beside) -> set[str]:
        """Keep what was found beside these files; returns the SHA256 values of new hints."""
        new: set[str] = set()
        for key in keys:
            self._looked[key.path] = key
            hint = beside.hints.get(key.path)
            if hint is None:
                self._by_path.pop(key.path, None)
            else:
                self._by_path[key.path] = (key, hint)
                new.add(hint.sha256)
        for reason in beside.refused[:REFUSALS_LOGGED]:
            logger.warning("sidecar not trusted: %s", reason)
        if len(beside.refused) > REFUSALS_LOGGED:
            logger.warning("%d more sidecars not trusted", len(beside.refused) - REFUSALS_LOGGED)
        return new

    def sha256_of(self, key: FileKey) -> str | None:
        """The hinted SHA256 of a file, if its hint was read for the file as it is now."""
        held = self._by_path.get(key.path)
        return held[1].sha256 if held is not None and held[0] == key else None

    def hint(self, path: str) -> Hint | None:
        """The hint held for a file."""
        held = self._by_path.get(path)
        return held[1] if held is not None else None

    def hashed(self, key: FileKey, sha256: str) -> Hint | None:
        """The file was hashed: its hint is done with. Returns the hint when the bytes agreed with it."""
        self._looked.pop(key.path, None)
        held = self._by_path.pop(key.path, None)
        if held is None:
            return None
        hint = held[1]
        if hint.sha256 == sha256:
            return hint
        self.caught += 1
        logger.warning(
            "%s: its sidecar %s (%s) says SHA256 %s, but the bytes are %s; the sidecar is not trusted",
            key.path, hint.sidecar, hint.tool, hint.sha256[:12], sha256[:12],
        )
        return None

    def keep_only(self, paths: set[str], names: set[str] | None = None) -> None:
        """Forget hints and lookings of files no longer on disk, or known by their hash now
        (`names`: only of files of these names)."""
        for table in (self._by_path, self._looked):
            for path in [path for path in (table if names is None else table.named(names)) if path not in paths]:
                del table[path]

    def identities(self) -> list[tuple[str, Hint]]:
        """(path, hint) of every hint with a CivitAI identity."""
        return [(path, hint) for path, (_key, hint) in self._by_path.items() if hint.identity is not None]

    def lend_identities(self, known: KnownHashes, identities: dict[str, Identity]) -> None:
        """Put the versions sidecars name into `identities`, for hashes with no known version
        that no file but the ones those sidecars describe holds: a sidecar speaks for its own file."""
        for _path, hint in self.identities():
            current = identities.get(hint.sha256)
            if hint.identity is not None and (current is None or not current.known) and self._only_hinted(known, hint.sha256):
                identities[hint.sha256] = hint.identity
                self.lent.add(hint.sha256)

    def take_back_identities(self, known: KnownHashes, identities: dict[str, Identity], hashes: Iterable[str]) -> None:
        """Of these hashes, take back the versions sidecars lent where a file no sidecar vouches
        for now holds them (asked about by its own bytes), or no file does."""
        for sha256 in hashes:
            if sha256 in self.lent and not self._only_hinted(known, sha256):
                self.lent.discard(sha256)
                identities.pop(sha256, None)

    def _only_hinted(self, known: KnownHashes, sha256: str) -> bool:
        paths = known.by_hash.get(sha256)
        return bool(paths) and all(path in self._by_path for path in paths)
