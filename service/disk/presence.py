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

from ..catalog.document import FOLDER_ALIASES, canonical_folder
from .names import PARTIAL_SUFFIXES, is_model_file, is_partial_download

ARIA2_SUFFIX = ".aria2"
# Folders deeper than this under a model folder are not walked (a warning names the first one
# cut): ComfyUI's own walk has no limit, but a tree this deep is a loop of bind mounts or a
# mistake, and walking it would hold up every scan.
MAX_DEPTH = 32
# The folders ComfyUI's folder_paths.get_filename_list_ skips (recursive_search's excluded_dir_names).
# Other hidden folders it lists, so models in them can be loaded and count as present.
SKIPPED_FOLDERS = frozenset({".git"})


@dataclass(frozen=True, slots=True)
class FolderSource:
    """A physical folder and the logical folder it stands for ("" for a whole models root)."""

    path: str
    logical: str = ""


@dataclass(slots=True)
class Scan:
    """Complete files found under some folders: physical dir -> {name: logical dir}; and files
    still being downloaded by other programs: physical dir -> {final name: (logical dir, bytes so far)}."""

    dirs: dict[str, dict[str, str]] = field(default_factory=dict)
    partials: dict[str, dict[str, tuple[str, int]]] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)
    links: int = 0  # symlinked folders walked: their files are seen under more than one path
    too_deep: list[str] = field(default_factory=list)  # folders not walked: deeper than MAX_DEPTH
    undecodable: set[str] = field(default_factory=set)  # folders holding a name that is not UTF-8
    folders: int = 0  # walked so far (read from the event loop while a scan runs, for progress)
    files: int = 0


@dataclass(frozen=True, slots=True)
class PathFact:
    """What one probed path is now: a file (complete or not), a folder (with its scan), or gone."""

    path: str
    kind: str  # "file", "dir" or "gone"
    complete: bool = False
    size: int = 0  # of a file
    scan: Scan | None = None
    link: bool = False  # a symlinked folder


def is_utf8(name: str) -> bool:
    """False for a name read from disk whose bytes are not UTF-8 (Python keeps them as lone surrogates)."""
    return name.isascii() or not any("\udc80" <= char <= "\udcff" for char in name)


def watch_folders(roots: Iterable[str], excluded: set[str]) -> list[str]:
    """Every folder under the roots (symlinks followed, loops cut, at most MAX_DEPTH deep), but
    the excluded ones and what is under them: the folders to watch one by one."""
    found: list[str] = []
    for root in roots:
        _folders(root, excluded, found, ancestors=(), depth=0)
    return found


def _folders(top: str, excluded: set[str], found: list[str], ancestors: tuple[tuple[int, int], ...], depth: int) -> None:
    if top in excluded or depth > MAX_DEPTH:
        return
    try:
        stat = os.stat(top)
        key = (stat.st_dev, stat.st_ino)
        if key in ancestors:
            return
        with os.scandir(top) as listing:
            subdirs = [entry.path for entry in listing if entry.name not in SKIPPED_FOLDERS and _is_dir(entry)]
    except OSError:
        return
    found.append(top)
    for sub in subdirs:
        _folders(sub, excluded, found, ancestors + (key,), depth + 1)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


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
    # Under a models root the first folder's alias is folded (models/unet holds diffusion_models);
    # an extra source already names its ComfyUI folder kind, which is kept as it is.
    rel = os.path.relpath(physical_dir, source.path).replace(os.sep, "/")
    rel = "" if rel == "." else rel
    if source.logical:
        return f"{source.logical}/{rel}" if rel else source.logical
    return canonical_folder(rel) if rel else ""


def scan_sources(sources: Iterable[FolderSource], scan: Scan | None = None) -> Scan:
    """Walk every source; follows symlinked folders, never loops. Fills `scan` when given, so
    another thread can watch its counters move."""
    scan = scan if scan is not None else Scan()
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
            source = source_for(sources, target)
            if target in seen or source is None or _in_skipped_folder(source, target):
                continue
            seen.add(target)
            facts.append(_probe_one(sources, target))
    return facts


def _in_skipped_folder(source: FolderSource, path: str) -> bool:
    return any(part in SKIPPED_FOLDERS for part in os.path.relpath(path, source.path).split(os.sep))


def _probe_one(sources: tuple[FolderSource, ...], path: str) -> PathFact:
    try:
        if os.path.isdir(path):
            return PathFact(path, "dir", scan=scan_subtree(sources, path), link=os.path.islink(path))
        if os.path.isfile(path):
            return PathFact(path, "file", complete=_complete(path, os.path.basename(path)), size=os.path.getsize(path))
    except OSError:
        pass
    return PathFact(path, "gone")


def _complete(path: str, name: str) -> bool:
    return is_model_file(name) and not is_partial_download(name) and not os.path.exists(path + ARIA2_SUFFIX)


def download_target(name: str, tracked_by_aria2: bool) -> str | None:
    """The final name of a file another program is still downloading, or None if it is not one.

    `x.safetensors.part` (or .partial, .tmp, .download, .crdownload) becomes `x.safetensors`;
    a file with an `.aria2` control file beside it is itself the unfinished download.
    """
    if tracked_by_aria2 and not is_partial_download(name):
        return name if is_model_file(name) else None
    lowered = name.lower()
    for suffix in PARTIAL_SUFFIXES:
        if suffix != ARIA2_SUFFIX and lowered.endswith(suffix) and len(name) > len(suffix):
            target = name[: -len(suffix)]
            return target if is_model_file(target) else None
    return None


def _walk(source: FolderSource, top: str, scan: Scan, ancestors: tuple[tuple[int, int], ...], depth: int) -> None:
    try:
        stat = os.stat(top)
        key = (stat.st_dev, stat.st_ino)
        if key in ancestors:
            return
        if depth > MAX_DEPTH:
            scan.too_deep.append(top)
            return
        with os.scandir(top) as listing:
            entries = list(listing)
    except OSError:
        scan.unreadable.append(top)
        return
    names = {entry.name for entry in entries}
    if any(not is_utf8(name) for name in names):
        scan.undecodable.add(top)
    scan.folders += 1
    scan.files += len(entries)
    logical = logical_dir(source, top)
    found: dict[str, str] = {}
    partial: dict[str, tuple[str, int]] = {}
    subdirs: list[str] = []
    for entry in entries:
        try:
            if entry.is_dir():  # follows symlinks
                if entry.name not in SKIPPED_FOLDERS:
                    subdirs.append(entry.path)
                    scan.links += entry.is_symlink()
            elif entry.is_file():
                tracked = entry.name + ARIA2_SUFFIX in names
                if not is_partial_download(entry.name) and not tracked:
                    if is_model_file(entry.name):
                        found[entry.name] = logical
                elif (target := download_target(entry.name, tracked)) is not None:
                    partial[target] = (logical, entry.stat().st_size)
        except OSError:
            continue
    if found:
        scan.dirs[top] = found
    if partial:
        scan.partials[top] = partial
    for sub in subdirs:
        _walk(source, sub, scan, ancestors + (key,), depth + 1)


class Presence:
    """Complete files by name, owned by the event loop. Every change says which names moved."""

    def __init__(self, sources: tuple[FolderSource, ...]) -> None:
        self.sources = sources
        self._by_name: dict[str, dict[str, str]] = {}
        self._by_dir: dict[str, dict[str, str]] = {}
        # Downloads by other programs: final name -> physical dir -> (logical dir, bytes so far).
        self._partials: dict[str, dict[str, tuple[str, int]]] = {}
        self.offline: set[str] = set()  # sources that cannot be read now (an unmounted volume, a folder gone)

    def __len__(self) -> int:
        return sum(len(names) for names in self._by_dir.values())

    def is_present(self, name: str, folder: str) -> bool:
        """True when a complete file of that name sits in that logical folder or below it."""
        places = self._by_name.get(name)
        if not places:
            return False
        prefix = folder + "/"
        return any(place == folder or place.startswith(prefix) for place in places.values())

    def files(self) -> list[tuple[str, str]]:
        """Every complete file: (physical path, logical folder)."""
        return [(os.path.join(d, name), logical) for d, names in self._by_dir.items() for name, logical in names.items()]

    def paths_of(self, name: str, folder: str) -> list[str]:
        """Physical paths of the complete files of that name in that logical folder or below it."""
        places = self._by_name.get(name)
        if not places:
            return []
        prefix = folder + "/"
        return [os.path.join(d, name) for d, place in places.items() if place == folder or place.startswith(prefix)]

    def logical_of(self, path: str) -> str | None:
        """The logical folder of a complete file known at that physical path, None when there is none."""
        directory, name = os.path.split(path)
        return self._by_dir.get(directory, {}).get(name)

    def could_be_offline(self, folder: str) -> bool:
        """True when a source that could hold that logical folder is offline."""
        first = folder.partition("/")[0]
        return any(source.path in self.offline and source.logical in ("", first) for source in self.sources)

    def set_offline(self, paths: Iterable[str]) -> bool:
        """Say which sources cannot be read now; True when that changed."""
        offline = {source.path for source in self.sources} & set(paths)
        if offline == self.offline:
            return False
        self.offline = offline
        return True

    def holds_folder(self, top: str) -> bool:
        """True when complete files or other programs' downloads are known in this physical folder or below it."""
        prefix = top + os.sep
        if any(directory == top or directory.startswith(prefix) for directory in self._by_dir):
            return True
        return any(directory == top or directory.startswith(prefix) for places in self._partials.values() for directory in places)

    def downloading(self, name: str, folder: str) -> int | None:
        """Bytes so far of a file of that name another program is downloading into that logical folder (or below)."""
        places = self._partials.get(name)
        if not places:
            return None
        prefix = folder + "/"
        sizes = [size for logical, size in places.values() if logical == folder or logical.startswith(prefix)]
        return max(sizes) if sizes else None

    def replace(self, scan: Scan) -> set[str]:
        """Swap in a full scan; return the names whose places (or downloads) changed."""
        before, partials_before = self._by_name, self._partials
        self._by_name = {}
        self._by_dir = {}
        self._partials = {}
        self._add_scan(scan)
        changed = {name for name in before.keys() | self._by_name.keys() if before.get(name) != self._by_name.get(name)}
        return changed | {name for name in partials_before.keys() | self._partials.keys() if partials_before.get(name) != self._partials.get(name)}

    def apply(self, facts: Iterable[PathFact]) -> set[str]:
        """Apply probed facts; return the names whose places changed."""
        changed: set[str] = set()
        for fact in facts:
            parent, name = os.path.split(fact.path)
            changed |= self._unset_partial(parent, name)
            if fact.kind == "file":
                changed |= self._remove_subtree(fact.path)
                if fact.complete:
                    changed |= self._set(parent, name, self._resolve(parent))
                else:
                    changed |= self._unset(parent, name)
                    changed |= self._set_partial(parent, name, fact.size)
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
        for directory, partials in scan.partials.items():
            for name, place in partials.items():
                self._partials.setdefault(name, {})[directory] = place
                changed.add(name)
        return changed

    def _set_partial(self, directory: str, name: str, size: int) -> set[str]:
        target = download_target(name, tracked_by_aria2=os.path.exists(os.path.join(directory, name + ARIA2_SUFFIX)))
        logical = self._resolve(directory)
        if target is None or logical is None:
            return set()
        places = self._partials.setdefault(target, {})
        if places.get(directory) == (logical, size):
            return set()
        places[directory] = (logical, size)
        return {target}

    def _unset_partial(self, directory: str, name: str) -> set[str]:
        changed: set[str] = set()
        for target in {download_target(name, True), download_target(name, False)} - {None}:
            places = self._partials.get(target)  # type: ignore[arg-type]
            if places and directory in places:
                del places[directory]
                if not places:
                    del self._partials[target]  # type: ignore[arg-type]
                changed.add(target)  # type: ignore[arg-type]
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
        for name, places in list(self._partials.items()):
            for directory in [d for d in places if d == top or d.startswith(prefix)]:
                del places[directory]
                changed.add(name)
            if not places:
                del self._partials[name]
        return changed

    def _resolve(self, directory: str) -> str | None:
        source = source_for(self.sources, directory)
        return None if source is None else logical_dir(source, directory)
