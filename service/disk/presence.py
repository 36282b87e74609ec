"""What is on disk: complete model files under the model roots, by file name, owned by the event
loop. It applies the facts scans and probes found (`scan`) and says which file names changed,
so one event costs work for the names it touches, not for the whole library."""

from __future__ import annotations

import os
from collections.abc import Iterable

from .scan import (
    ARIA2_SUFFIX,
    FolderSource,
    PathFact,
    Scan,
    download_target,
    logical_dir,
    source_for,
)


class Presence:
    """Complete files by name, owned by the event loop. Every change says which names moved."""

    def __init__(self, sources: tuple[FolderSource, ...]) -> None:
        self.sources = sources
        # Where each name is: (physical dir, logical dir) for a name in one place (nearly all of
        # them: a pair is much smaller than a dict), {physical dir: logical dir} for one in several.
        self._by_name: dict[str, Places] = {}
        self._by_dir: dict[str, dict[str, str]] = {}
        # Partial downloads: final name -> physical dir -> (logical dir, bytes so far, modified at).
        self._partials: dict[str, dict[str, tuple[str, int, float]]] = {}
        self.offline: set[str] = set()  # sources that cannot be read now (an unmounted volume, a folder gone)

    def __len__(self) -> int:
        return sum(len(names) for names in self._by_dir.values())

    def is_present(self, name: str, folder: str) -> bool:
        """True when a complete file of that name sits in that logical folder or below it."""
        places = self._by_name.get(name)
        if places is None:
            return False
        if type(places) is tuple:  # nearly every name: no generator for it
            place = places[1]
            return place == folder or place.startswith(folder + "/")
        prefix = folder + "/"
        return any(place == folder or place.startswith(prefix) for place in places.values())  # type: ignore[union-attr]

    def folders_of(self, name: str) -> list[str]:
        """The logical folders holding a complete file of that name, in order."""
        return sorted({logical for _, logical in _items(self._by_name.get(name))})

    def files(self) -> list[tuple[str, str]]:
        """Every complete file: (physical path, logical folder)."""
        return [(folder + name, logical) for d, names in self._by_dir.items() for folder in (_with_sep(d),) for name, logical in names.items()]

    def files_named(self, names: Iterable[str]) -> list[tuple[str, str]]:
        """The complete files with one of these file names: (physical path, logical folder)."""
        return [(os.path.join(d, name), logical) for name in names for d, logical in _items(self._by_name.get(name))]

    def paths_of(self, name: str, folder: str) -> list[str]:
        """Physical paths of the complete files of that name in that logical folder or below it."""
        prefix = folder + "/"
        return [os.path.join(d, name) for d, place in _items(self._by_name.get(name)) if place == folder or place.startswith(prefix)]

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

    def partial(self, name: str, folder: str) -> tuple[int, float] | None:
        """A partial download of a file of that name in that logical folder (or below): its bytes
        so far and when it last changed (Unix time); the largest and latest of several."""
        places = self._partials.get(name)
        if not places:
            return None
        prefix = folder + "/"
        found = [(size, mtime) for logical, size, mtime in places.values() if logical == folder or logical.startswith(prefix)]
        return (max(size for size, _ in found), max(mtime for _, mtime in found)) if found else None

    def replace(self, scan: Scan) -> set[str]:
        """Swap in a full scan; return the names whose places (or downloads) changed."""
        before, partials_before = self._by_name, self._partials
        self._by_name = {}
        self._by_dir = {}
        self._partials = {}
        self._add_scan(scan, said=False)
        if before:
            changed = {name for name in before.keys() | self._by_name.keys() if before.get(name) != self._by_name.get(name)}
        else:  # the first scan: every name it found
            changed = set(self._by_name)
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
                    changed |= self._set_partial(parent, name, fact.size, fact.mtime)
            elif fact.kind == "dir":
                changed |= self._unset(parent, name)
                changed |= self._remove_subtree(fact.path)
                if fact.scan is not None:
                    changed |= self._add_scan(fact.scan)
            else:
                changed |= self._unset(parent, name)
                changed |= self._remove_subtree(fact.path)
        return changed

    def _add_scan(self, scan: Scan, said: bool = True) -> set[str]:
        """Take in what a scan found; the names whose places changed (nothing when not `said`:
        the caller works that out, and a set per file of a full scan is not made for it)."""
        changed: set[str] = set()
        for directory, names in scan.dirs.items():
            if said:
                for name, logical in names.items():
                    changed |= self._set(directory, name, logical)
            else:
                for name, logical in names.items():
                    self._place(directory, name, logical)
        for directory, partials in scan.partials.items():
            for name, place in partials.items():
                self._partials.setdefault(name, {})[directory] = place
                changed.add(name)
        return changed

    def _set_partial(self, directory: str, name: str, size: int, mtime: float) -> set[str]:
        target = download_target(name, tracked_by_aria2=os.path.exists(os.path.join(directory, name + ARIA2_SUFFIX)))
        logical = self._resolve(directory)
        if target is None or logical is None:
            return set()
        places = self._partials.setdefault(target, {})
        if places.get(directory) == (logical, size, mtime):
            return set()
        places[directory] = (logical, size, mtime)
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
        return {name} if self._place(directory, name, logical) else set()

    def _place(self, directory: str, name: str, logical: str | None) -> bool:
        """Note a complete file; True when that is news."""
        if logical is None:
            return False
        places = self._by_name.get(name)
        if places is None:
            self._by_name[name] = (directory, logical)
        elif type(places) is tuple:
            if places == (directory, logical):
                return False
            self._by_name[name] = (directory, logical) if places[0] == directory else {places[0]: places[1], directory: logical}
        elif places.get(directory) == logical:  # type: ignore[union-attr]
            return False
        else:
            places[directory] = logical  # type: ignore[index]
        self._by_dir.setdefault(directory, {})[name] = logical
        return True

    def _unset(self, directory: str, name: str) -> set[str]:
        places = self._by_name.get(name)
        if places is None:
            return set()
        if type(places) is tuple:
            if places[0] != directory:
                return set()
            del self._by_name[name]
        elif directory not in places:
            return set()
        else:
            del places[directory]  # type: ignore[attr-defined]
            if len(places) == 1:
                (self._by_name[name],) = places.items()  # type: ignore[union-attr]
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


def _with_sep(directory: str) -> str:
    """The directory as the start of a path in it (`os.path.join(directory, name)` is this and the name)."""
    return directory + os.sep if directory and not directory.endswith(os.sep) else directory


Places = tuple[str, str] | dict[str, str]


def _items(places: Places | None) -> Iterable[tuple[str, str]]:
    """A name's places as (physical dir, logical dir) pairs."""
    if places is None:
        return ()
    return (places,) if type(places) is tuple else places.items()  # type: ignore[union-attr, return-value]
