"""What the library knows of each catalog file (its last good reading, what is wrong with it
now), reading it again, and which versions moved between two readings."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .. import workers
from ..catalog.reading import (
    CatalogReading,
    TooBigToParseHere,
    read_catalog,
    read_catalog_rows,
    whole_reading,
)
from ..catalog.rows import CutRows
from ..catalog.text import Text
from ..map.entry import CatalogEntries, MapEntry, entry_of_row, same_entry

logger = logging.getLogger(__name__)


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


# After reading or re-laying a map this large, memory the allocator kept from the reading is
# given back to the system.
TRIM_AFTER_ENTRIES = 20_000


async def give_memory_back(entries: int) -> None:
    """After what held `entries` entries became garbage: hand the allocator's free memory back
    to the system (in a thread), when that is worth it."""
    if entries >= TRIM_AFTER_ENTRIES:
        await asyncio.to_thread(workers.release_free_memory)


def long_lived(entries: int) -> bool:
    """Whether a structure of this many entries is worth setting aside from the collector's walks."""
    return entries >= TRIM_AFTER_ENTRIES


async def read_state(state: CatalogState, cut: CutRows | None, *, collect: bool) -> CatalogReading:
    """Read one catalog in a thread, or parse it in a worker process when it does not cut and is
    too big to parse here; what is read is set aside from the collector when long-lived, its
    garbage collected first if `collect` (`Library.collect_first`). `state` must hold still."""
    try:  # digested in blocks first: a huge file that is our own write is never read into memory
        with workers.collector_paused(collect=collect) as pause:
            reading = await asyncio.to_thread(
                read_catalog, state.path, state.name, state.digest, state.text, shown=state.shown, dirty=set(state.dirty), cut=cut
            )
            loaded = reading.loaded
            pause.set_aside = loaded is not None and not loaded.partial and long_lived(len(loaded.shown))
            return reading
    except TooBigToParseHere:
        pass
    content_digest, rows, error, unparsable = await workers.in_worker_process(read_catalog_rows, state.path, state.name, state.digest)
    loaded = None
    if rows is not None:
        with workers.collector_paused(set_aside=long_lived(len(rows[0])), collect=collect):
            found = await asyncio.to_thread(lambda: CatalogEntries(list(map(entry_of_row, rows[0])), rows[1]))
            loaded = whole_reading(content_digest, found)
    return CatalogReading(content_digest, loaded, error, unparsable)


BESIDE_WAIT_S = 120.0  # a worker not done by then (its cut takes seconds) is given up on


async def worker_cut(beside: asyncio.Future[CutRows | None], name: str) -> CutRows | None:
    """What the worker cutting a catalog beside the start sent back; None when it could not
    start, died or hung (the catalog is then read here)."""
    try:
        return await asyncio.wait_for(beside, BESIDE_WAIT_S)
    except Exception as exc:
        logger.warning("%s.json could not be cut in a worker process (%s); reading it here", name, str(exc) or type(exc).__name__)
        return None


def size_of(path: Path) -> int:
    """A file's size; 0 when it cannot be read."""
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
