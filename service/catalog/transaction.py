"""A change to the catalogs as one locked transaction: read, plan, write, and start over from a
fresh reading when a file changed under the save.

A plan function (`plans`) edits the docs it is given and says which catalogs to write, in
order. The runner takes both sidecar locks (always in the same order), reads, plans, writes,
and hands back what was written, so the map can take it in before the request answers.
Blocking: runs in a worker thread, or a worker process for huge catalogs.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import Conflict, ServiceError, Unavailable
from ..map.entry import CatalogEntries, MapEntry
from .document import CATALOG_NAMES
from .reading import extract_entries
from .splice import derive_text, spliced_shown
from .store import CatalogStore, Reading, StaleRead, Written, placed_stamp
from .text import Text

logger = logging.getLogger(__name__)

# A file that changed under a save is read and changed again: programs that take no lock may
# save many times a second, so keep trying (with jittered pauses) for this long before a 409.
# Against a program saving in place a thousand times a second, a save of ours (read, write,
# fsync, swap) fits between two of its saves only now and then: 3 s was sometimes not enough.
RETRY_BUDGET_S = 10.0
RETRY_PAUSE_S = (0.001, 0.02)
Answer = dict[str, Any]
Readings = dict[str, Reading]


@dataclass(slots=True)
class Plan:
    """What a mutation answers, and which catalogs it changed (written in this order)."""

    answer: Answer
    writes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Wanted:
    """What a plan looks at: entries of these versions and with these file names. A catalog
    the map has a cut text of is read with only those entries parsed (and every entry of
    their versions); the rest stays bytes, copied back as they are."""

    versions: frozenset[int] = frozenset()
    files: frozenset[str] = frozenset()


@dataclass(slots=True)
class Outcome:
    answer: Answer | None = None
    written: dict[str, SavedCatalog] = field(default_factory=dict)
    unread: set[str] = field(default_factory=set)  # written, but not handed over: the map reads them from disk
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class SavedCatalog:
    """A catalog this service has just written, as the map takes it in: every entry (a whole
    rewrite), or the versions a spliced save changed, with the cut of the written text when it
    follows from `based_on`, the cut the save was planned on."""

    digest: str
    entries: CatalogEntries | None = None
    changes: dict[int, MapEntry | None] | None = None
    based_on: str | None = None
    text: Text | None = None


def _read(store: CatalogStore, wanted: Wanted | None, texts: dict[str, Text] | None, fresh: bool) -> Reading:
    text = texts.get(store.name) if texts is not None else None
    if text is None or wanted is None:
        return store.read()
    return store.read_spliced(text, set(wanted.versions), set(wanted.files), fresh=fresh)


def _saved(reading: Reading, written: Written, name: str) -> SavedCatalog:
    """What the map takes from a catalog just saved: a spliced one's changed versions, and the
    cut of what was written when it follows from the cut it was read with; else every entry."""
    spliced, based_on = reading.spliced, reading.text
    if spliced is None or based_on is None or reading.source is None:
        return SavedCatalog(written.digest, entries=extract_entries(reading.doc, name))
    text = None
    if written.outline is not None:
        text = derive_text(written.outline, reading.doc, based_on, reading.source, written.digest, written.size, name)
    return SavedCatalog(written.digest, changes=spliced_shown(spliced, name), based_on=based_on.digest, text=text)


def _check_still_ours(stores: dict[str, CatalogStore], saved: dict[str, tuple[int, ...] | None]) -> None:
    """StaleRead when a catalog this change has just saved was saved over since (a program that
    takes no lock): the change is then applied again to both, before the next save of it (a
    promote's removal from models.json) can leave the entry in neither."""
    for name, stamp in saved.items():
        if placed_stamp(stores[name].path) != stamp:
            logger.info("%s.json was saved by another program during this change; applying it again", name)
            raise StaleRead()


def run_transaction(
    stores: dict[str, CatalogStore], plan: Callable[[Readings], Plan], wanted: Wanted | None = None, texts: dict[str, Text] | None = None
) -> Outcome:
    """Take both locks, read, plan, write; start over from a fresh reading when a file changed
    under a save. Blocking: runs in a worker thread, or a worker process for huge catalogs
    (so `plan` and the answer are picklable). With the map's cut texts, each catalog is read
    spliced (`CatalogStore.read_spliced`): what the plan asks about parsed, the rest copied."""
    outcome = Outcome()
    try:
        with contextlib.ExitStack() as stack:
            for name in CATALOG_NAMES:
                stack.enter_context(stores[name].locked())
            first_answer: Answer | None = None  # of an attempt that wrote part of its change
            deadline = time.monotonic() + RETRY_BUDGET_S
            fresh = False
            while time.monotonic() < deadline:
                readings: Readings = {}
                try:
                    for name in CATALOG_NAMES:
                        readings[name] = _read(stores[name], wanted, texts, fresh)
                    decided = plan(readings)
                    saved: dict[str, tuple[int, ...] | None] = {}
                    for name in decided.writes:
                        _check_still_ours(stores, saved)
                        written = stores[name].write(readings[name])
                        saved[name] = written.placed
                        first_answer = first_answer or decided.answer
                        try:
                            outcome.written[name] = _saved(readings[name], written, name)
                        except Exception:  # saved all the same: the answer says so, the map reads the file
                            logger.exception("%s.json was saved but could not be read into the map directly", name)
                            outcome.unread.add(name)
                except StaleRead:
                    logger.debug("a catalog changed while being saved; applying the change again")
                    time.sleep(random.uniform(*RETRY_PAUSE_S))
                    fresh = True
                    continue
                finally:
                    for reading in readings.values():
                        reading.close()
                # A retry after a partial write finishes that change; it still answers as the change did.
                outcome.answer = first_answer or decided.answer
                return outcome
            raise Conflict("The catalogs kept changing while this change was being saved; nothing more was written.", code="catalog_busy")
    except ServiceError as exc:
        outcome.error = exc
    except OSError as exc:
        logger.error("saving a catalog failed: %s", exc.strerror)
        outcome.error = Unavailable(f"The catalog could not be saved ({exc.strerror}); nothing was lost.", code="write_failed")
    except Exception:
        logger.exception("a catalog change failed")
        outcome.error = Unavailable(
            "The change was cut short after part of it was saved; send it again to finish it."
            if outcome.written or outcome.unread
            else "The change could not be made; nothing was written.",
            code="write_failed",
        )
    if outcome.error is not None and (outcome.written or outcome.unread):
        outcome.unread |= outcome.written.keys()  # part of it is on disk: the map must show that part
    return outcome
