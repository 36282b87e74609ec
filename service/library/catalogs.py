"""What the library knows of each catalog file: its last good reading and what is wrong with
it now, and which versions moved between two readings."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..catalog.text import Text
from ..map.entry import MapEntry, same_entry


@dataclass(slots=True)
class CatalogState:
    """The last good reading of one catalog file, and what is wrong with it now, if anything."""

    name: str
    path: Path
    digest: str | None = None
    shown: dict[int, MapEntry] = field(default_factory=dict)  # the first entry of each version, as the map shows it
    text: Text | None = None  # the cut of the file `shown` was read from (None: read whole)
    dirty: set[int] = field(default_factory=set)  # versions this service changed since `text` was cut
    error: str | None = None
    unusable_ids: int = 0  # entries left out of the map because an id is not an id


def moved_versions(old: dict[int, MapEntry], new: dict[int, MapEntry], among: Iterable[int] | None = None) -> set[int]:
    """The versions shown differently (or only on one side), among some or all of them."""
    candidates = (old.keys() | new.keys()) if among is None else among
    moved = set()
    for version in candidates:
        a, b = old.get(version), new.get(version)
        if a is b:
            continue
        if a is None or b is None or not same_entry(a, b):
            moved.add(version)
    return moved
