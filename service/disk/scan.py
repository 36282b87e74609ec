"""Looking at the model folders: walking them (scans) and looking at changed paths (probes).

Plain blocking code meant for a worker thread; it returns facts (`Scan`, `PathFact`) that
`presence.Presence` applies on the event loop.

Folders are "logical": `<folder>/<subfolder...>` as ComfyUI's loaders see them, whatever
root they sit under, with legacy aliases folded (`unet` is `diffusion_models`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from .folders import FOLDER_ALIASES, canonical_folder
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
    """Complete files found under some folders: physical dir -> {name: logical dir}; and partial
    downloads: physical dir -> {final name: (logical dir, bytes so far, modified at)}."""

    dirs: dict[str, dict[str, str]] = field(default_factory=dict)
    partials: dict[str, dict[str, tuple[str, int, float]]] = field(default_factory=dict)
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
    mtime: float = 0.0  # of a file: when it last changed (Unix time)
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
    """Every physical folder that holds a logical folder (canonical), across roots and aliases.
    None for a folder that would climb out of its root ("..", "a/../.."): no scan finds a file there."""
    if ".." in folder.split("/"):
        return []
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
            stat = os.stat(path)
            return PathFact(path, "file", complete=_complete(path, os.path.basename(path)), size=stat.st_size, mtime=stat.st_mtime)
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
    partial: dict[str, tuple[str, int, float]] = {}
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
                    stat = entry.stat()
                    partial[target] = (logical, stat.st_size, stat.st_mtime)
        except OSError:
            continue
    if found:
        scan.dirs[top] = found
    if partial:
        scan.partials[top] = partial
    for sub in subdirs:
        _walk(source, sub, scan, ancestors + (key,), depth + 1)
