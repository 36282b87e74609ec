"""What the versions in a publish showed before it: their status slot and entry.

The index notes them as it changes the map, and its listeners read them while the publish is
told (`CivitaiIndex.was`): a log line says `missing -> present` without the listener keeping
its own copy of every version's status and name, which at a million versions cost hundreds
of megabytes.
"""

from __future__ import annotations

from .entry import MapEntry
from .layout import Layout

Shown = tuple[bytes | None, MapEntry | None]  # a status slot (None: not in the map) and the entry


class Previous:
    """The slots and entries versions had before the changes of the publish under way."""

    __slots__ = ("_noted", "_layout")

    def __init__(self) -> None:
        self._noted: dict[int, Shown] = {}
        self._layout: Layout | None = None

    def note(self, version_id: int, slot: bytes | None, entry: MapEntry | None) -> None:
        """A version is about to change: what it showed (the first note of a publish counts)."""
        self._noted.setdefault(version_id, (slot, entry))

    def note_layout(self, layout: Layout) -> None:
        """A whole layout is being replaced: every version showed what it says."""
        if self._layout is None:
            self._layout = layout

    def of(self, version_id: int) -> Shown | None:
        """What the version showed before, None when it was not changed in this publish."""
        noted = self._noted.get(version_id)
        if noted is not None:
            return noted
        if self._layout is not None:
            return self._layout.status_of(version_id), self._layout.entries.get(version_id)
        return None

    def clear(self) -> None:
        """The publish is told: forget it all."""
        self._noted = {}
        self._layout = None
