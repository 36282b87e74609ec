"""What is on disk: complete model files under the model roots, by file name.

Disk work (scans and probes) is plain blocking code meant for a worker thread; it returns
facts. `Presence` applies facts on the event loop and says which file names changed, so
one event costs work for the names it touches, not for the whole library.

Folders are "logical": `<folder>/<subfolder...>` as ComfyUI's loaders see them, whatever
root they sit under, with legacy aliases folded (`unet` is `diffusion_models`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from .catalog import FOLDER_ALIASES, canonical_folder
from .filenames import is_partial_download

ARIA2_SUFFIX = ".aria2"
MAX_DEPTH = 32


@dataclass(frozen=True, slots=True)
class FolderSource:
    """A physical folder and the logical folder it stands for ("" for a whole models root)."""

    path: str
    logical: str = ""


@dataclass(slots=True)
class Scan:
    """Complete files found under some folders: physical dir -> {name: logical dir}."""

    dirs: dict[str, dict[str, str]] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)
    links: int = 0  # symlinked folders walked: their files are seen under more than one path


@dataclass(frozen=True, slots=True)
class PathFact:
    """What one probed path is now: a file (complete or not), a folder (with its scan), or gone."""

    path: str
    kind: str  # "file", "dir" or "gone"
    complete: bool = False
    scan: Scan | None = None
    link: bool = False  # a symlinked folder


def source_for(sources: Iterable[FolderSource], path: str) -> FolderSource | None:
    """The source holding a physical path (the deepest one when sources nest)."""
    best: FolderSource | None = None
    for source in sources:
        if (path == source.path or path.startswith(source.path + os.sep)) and (
            best is None or len(source.path) > len(best.path)
        ):
            best = source
    return best


def logical_dir(source: FolderSource, physical_dir: str) -> str:
    """The logical folder of a physical folder under a source."""
    rel = os.path.relpath(physical_dir, source.path).replace(os.sep, "/")
    parts = [p for p in (source.logical, "" if rel == "." else rel) if p]
    return canonical_folder("/".join(parts)) if parts else ""


def scan_sources(sources: Iterable[FolderSource]) -> Scan:
    """Walk every source; follows symlinked folders, never loops."""
    scan = Scan()
    for source in sources:
        _walk(source, source.path, scan, ancestors=(), depth=0)
    return scan


def scan_subtree(sources: Iterable[FolderSource], top: str) -> Scan:
    """Walk one folder that sits under a source."""
    scan = Scan()
    source = source_for(sources, top)
    if source is not None:
        _walk(source, top, scan, ancestors=(), depth=0)
    return scan


def folder_paths(sources: Iterable[FolderSource], folder: str) -> list[str]:
    """Every physical folder that holds a logical folder (canonical), across roots and aliases."""
    first, _, rest = folder.partition("/")
    names = [first, *(alias for alias, canonical in FOLDER_ALIASES.items() if canonical == first)]
    paths: list[str] = []
    for source in sources:
        if not source.logical:
            paths += [os.path.join(source.path, name, rest) if rest else os.path.join(source.path, name) for name in names]
        elif source.logical == first:
            paths.append(os.path.join(source.path, rest) if rest else source.path)
    return paths


def locate(sources: tuple[FolderSource, ...], name: str, folder: str) -> bool:
    """Look on disk now: is a complete file of that name in that logical folder or below it?"""
    for top in folder_paths(sources, folder):
        scan = scan_subtree(sources, top) if os.path.isdir(top) else Scan()
        if any(name in names for names in scan.dirs.values()):
            return True
    return False


def probe(sources: tuple[FolderSource, ...], paths: Iterable[str]) -> list[PathFact]:
    """Look at each changed path now; the kind of change reported is not trusted."""
    facts: list[PathFact] = []
    seen: set[str] = set()
    for path in paths:
        targets = [path]
        if path.endswith(ARIA2_SUFFIX):
            targets.append(path[: -len(ARIA2_SUFFIX)])
        for target in targets:
            if target in seen or source_for(sources, target) is None:
                continue
            seen.add(target)
            facts.append(_probe_one(sources, target))
    return facts


def _probe_one(sources: tuple[FolderSource, ...], path: str) -> PathFact:
    try:
        if os.path.isdir(path):
            return PathFact(path, "dir", scan=scan_subtree(sources, path), link=os.path.islink(path))
        if os.path.isfile(path):
            return PathFact(path, "file", complete=_complete(path, os.path.basename(path)))
    except OSError:
        pass
    return PathFact(path, "gone")


def _complete(path: str, name: str) -> bool:
    return not is_partial_download(name) and not os.path.exists(path + ARIA2_SUFFIX)


def _walk(source: FolderSource, top: str, scan: Scan, ancestors: tuple[tuple[int, int], ...], depth: int) -> None:
    try:
        stat = os.stat(top)
        key = (stat.st_dev, stat.st_ino)
        if key in ancestors or depth > MAX_DEPTH:
            return
        with os.scandir(top) as listing:
            entries = list(listing)
    except OSError:
        scan.unreadable.append(top)
        return
    names = {entry.name for entry in entries}
    logical = logical_dir(source, top)
    found: dict[str, str] = {}
    subdirs: list[str] = []
    for entry in entries:
        try:
            if entry.is_dir():  # follows symlinks
                subdirs.append(entry.path)
                scan.links += entry.is_symlink()
            elif entry.is_file() and not is_partial_download(entry.name) and entry.name + ARIA2_SUFFIX not in names:
                found[entry.name] = logical
        except OSError:
            continue
    if found:
        scan.dirs[top] = found
    for sub in subdirs:
        _walk(source, sub, scan, ancestors + (key,), depth + 1)


class Presence:
    """Complete files by name, owned by the event loop. Every change says which names moved."""

    def __init__(self, sources: tuple[FolderSource, ...]) -> None:
        self.sources = sources
        self._by_name: dict[str, dict[str, str]] = {}
        self._by_dir: dict[str, dict[str, str]] = {}

    def __len__(self) -> int:
        return sum(len(names) for names in self._by_dir.values())

    def is_present(self, name: str, folder: str) -> bool:
        """True when a complete file of that name sits in that logical folder or below it."""
        places = self._by_name.get(name)
        if not places:
            return False
        prefix = folder + "/"
        return any(place == folder or place.startswith(prefix) for place in places.values())

    def replace(self, scan: Scan) -> set[str]:
        """Swap in a full scan; return the names whose places changed."""
        before = self._by_name
        self._by_name = {}
        self._by_dir = {}
        self._add_scan(scan)
        return {name for name in before.keys() | self._by_name.keys() if before.get(name) != self._by_name.get(name)}

    def apply(self, facts: Iterable[PathFact]) -> set[str]:
        """Apply probed facts; return the names whose places changed."""
        changed: set[str] = set()
        for fact in facts:
            parent, name = os.path.split(fact.path)
            if fact.kind == "file":
                changed |= self._remove_subtree(fact.path)
                if fact.complete:
                    changed |= self._set(parent, name, self._resolve(parent))
                else:
                    changed |= self._unset(parent, name)
            elif fact.kind == "dir":
                changed |= self._unset(parent, name)
                changed |= self._remove_subtree(fact.path)
                if fact.scan is not None:
                    changed |= self._add_scan(fact.scan)
            else:
                changed |= self._unset(parent, name)
                changed |= self._remove_subtree(fact.path)
        return changed

    def _add_scan(self, scan: Scan) -> set[str]:
        changed: set[str] = set()
        for directory, names in scan.dirs.items():
            for name, logical in names.items():
                changed |= self._set(directory, name, logical)
        return changed

    def _set(self, directory: str, name: str, logical: str | None) -> set[str]:
        if logical is None:
            return set()
        places = self._by_name.setdefault(name, {})
        if places.get(directory) == logical:
            return set()
        places[directory] = logical
        self._by_dir.setdefault(directory, {})[name] = logical
        return {name}

    def _unset(self, directory: str, name: str) -> set[str]:
        places = self._by_name.get(name)
        if not places or directory not in places:
            return set()
        del places[directory]
        if not places:
            del self._by_name[name]
        names = self._by_dir.get(directory)
        if names is not None:
            names.pop(name, None)
            if not names:
                del self._by_dir[directory]
        return {name}

    def _remove_subtree(self, top: str) -> set[str]:
        prefix = top + os.sep
        doomed = [d for d in self._by_dir if d == top or d.startswith(prefix)]
        changed: set[str] = set()
        for directory in doomed:
            for name in list(self._by_dir.get(directory, {})):
                changed |= self._unset(directory, name)
        return changed

    def _resolve(self, directory: str) -> str | None:
        source = source_for(self.sources, directory)
        return None if source is None else logical_dir(source, directory)
