"""What the map knows of the bytes on disk: SHA256 by path, and the CivitAI version of each hash.

Owned by the event loop; filled by the hasher, read by the index for every status it works out.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeVar

V = TypeVar("V")


class ByPath(dict[str, V]):
    """A table keyed by the physical path of a model file that also finds its paths by file
    name, for a look at a few changed names without a walk over every file (change it only
    through `[]=`, `del` and `pop`)."""

    def __init__(self) -> None:
        super().__init__()
        # file name -> its one path (nearly always), or the set of its paths
        self._by_name: dict[str, str | set[str]] = {}

    def __setitem__(self, path: str, value: V) -> None:
        if path not in self:
            self._name(path)
        super().__setitem__(path, value)

    def __delitem__(self, path: str) -> None:
        super().__delitem__(path)
        self._unname(path)

    def pop(self, path: str, *default: V | None) -> V | None:  # type: ignore[override]
        if path in self:
            self._unname(path)
        return super().pop(path, *default)

    def _unindexed(self, *_args: object, **_kwargs: object) -> None:
        raise TypeError("a ByPath table changes through [], del and pop only: its index by file name would miss it")

    update = setdefault = clear = popitem = __ior__ = _unindexed  # type: ignore[assignment]

    def named(self, names: Iterable[str]) -> list[str]:
        """The paths held whose file name is one of these."""
        found: list[str] = []
        for name in names:
            paths = self._by_name.get(name)
            if paths is not None:
                found += (paths,) if type(paths) is str else paths
        return found

    def _name(self, path: str) -> None:
        name = os.path.basename(path)
        paths = self._by_name.get(name)
        if paths is None:
            self._by_name[name] = path
        elif type(paths) is str:
            self._by_name[name] = {paths, path}
        else:
            paths.add(path)  # type: ignore[union-attr]

    def _unname(self, path: str) -> None:
        name = os.path.basename(path)
        paths = self._by_name.get(name)
        if paths == path:
            del self._by_name[name]
        elif type(paths) is set:
            paths.discard(path)
            if len(paths) == 1:
                self._by_name[name] = next(iter(paths))


@dataclass(slots=True)
class KnownHashes:
    """SHA256 of hashed files, and which of those hashes CivitAI named a version for."""

    by_path: ByPath[str] = field(default_factory=ByPath)  # physical path -> sha256 (and by file name)
    by_hash: dict[str, set[str]] = field(default_factory=dict)  # sha256 -> physical paths
    version_of: dict[str, int] = field(default_factory=dict)  # sha256 -> CivitAI version id
    by_version: dict[int, set[str]] = field(default_factory=dict)  # version id -> sha256s
    hinted: set[str] = field(default_factory=set)  # paths whose hash is another tool's word, not read from their bytes yet

    def set_hash(self, path: str, sha256: str) -> str | None:
        """Record a file's SHA256; returns the hash it had before, if another."""
        old = self.by_path.get(path)
        if old == sha256:
            return None
        if old is not None:
            self._unlink(path, old)
        self.by_path[path] = sha256
        self.by_hash.setdefault(sha256, set()).add(path)
        return old

    def drop_path(self, path: str) -> str | None:
        """Forget a file (gone, or changed since it was hashed); returns its old hash."""
        old = self.by_path.pop(path, None)
        self.hinted.discard(path)
        if old is not None:
            self._unlink(path, old)
        return old

    def set_version(self, sha256: str, version_id: int | None) -> bool:
        """Record which version CivitAI named for a hash (None: none); True when that changed."""
        old = self.version_of.get(sha256)
        if old == version_id:
            return False
        if old is not None:
            hashes = self.by_version.get(old)
            if hashes is not None:
                hashes.discard(sha256)
                if not hashes:
                    del self.by_version[old]
            del self.version_of[sha256]
        if version_id is not None:
            self.version_of[sha256] = version_id
            self.by_version.setdefault(version_id, set()).add(sha256)
        return True

    def paths_of_version(self, version_id: int) -> list[str]:
        """Files on disk whose hash CivitAI says is this version."""
        return sorted(path for sha256 in self.by_version.get(version_id, ()) for path in self.by_hash.get(sha256, ()))

    def _unlink(self, path: str, sha256: str) -> None:
        paths = self.by_hash.get(sha256)
        if paths is not None:
            paths.discard(path)
            if not paths:
                del self.by_hash[sha256]
