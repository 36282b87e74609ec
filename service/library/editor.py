"""Add, promote and remove: each a pure plan over fresh readings, run as one locked transaction.

A plan function edits the docs it is given and says which catalogs to write, in order.
The runner takes both sidecar locks (always in the same order), reads, plans, writes, and
starts over from a fresh reading when a file changed under it. Whatever was written is
handed to the library before the request answers, so the next GET already shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..catalog.document import (
    CATALOG_NAMES,
    Entry,
    add_entry,
    canonical_folder,
    catalog_path,
    find_file,
    find_version,
    iter_entries,
    remove_entries,
    version_id_of,
)
from ..civitai import CivitaiClient
from ..errors import Conflict, Invalid, NotFound, ServiceError, Unavailable, UpstreamError
from ..disk.names import check_file_name
from ..map.index import extract_entries
from .library import Library, SavedCatalog
from ..civitai.routing import MappedVersion, category_display_name, lora_category, version_to_entry
from .. import workers
from ..disk.presence import FolderSource, locate
from ..catalog.text import Text, derive_text, spliced_shown
from ..catalog.store import CatalogStore, Reading, StaleRead, Written

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


def plan_add(readings: Readings, mapped: MappedVersion) -> Plan:
    """Add a mapped CivitAI version to models.json unless that version or file is already catalogued."""
    entry = mapped.entry
    assert entry is not None and mapped.category is not None
    version_id = entry["civitai_version_id"]
    for name in CATALOG_NAMES:
        doc = readings[name].doc
        found = find_version(doc, version_id)
        if found is not None:
            return Plan({"status": "already_exists", "file": found[1].get("file")})
        if find_file(doc, entry["file"], entry["dest"]):
            return Plan({"status": "already_exists", "file": entry["file"]})
    add_entry(readings["models"].doc, mapped.category, category_display_name(mapped.category), dict(entry))
    answer = {"status": "added", "file": entry["file"], "name": entry["name"], "category": mapped.category, "dest": entry["dest"]}
    return Plan(answer, writes=("models",))


def plan_promote(readings: Readings, version_id: int) -> Plan:
    """Move every models.json entry of a LoRA version to loras.json; finish a move a crash cut short.

    A version can be catalogued more than once (two files); all of its entries move together,
    and nothing leaves models.json that loras.json does not hold.
    """
    models, loras = readings["models"].doc, readings["loras"].doc
    in_models = [entry for _c, entry in iter_entries(models) if version_id_of(entry) == version_id]
    in_loras = [entry for _c, entry in iter_entries(loras) if version_id_of(entry) == version_id]
    if not in_models:
        if in_loras:
            return Plan({"status": "already_exists", "file": in_loras[0].get("file")})
        raise NotFound(f"Version {version_id} is not in models.json.", code="not_in_catalog")
    for entry in in_models:
        dest = entry.get("dest")
        if not isinstance(dest, str) or canonical_folder(dest).split("/")[0] != "loras":
            raise Invalid(
                f"Version {version_id} is filed under {dest!r}, not 'loras'; only LoRAs can be promoted.",
                code="not_a_lora",
            )
    held = {(entry.get("file"), canonical_folder(str(entry.get("dest", "")))) for entry in in_loras}
    categories: list[str] = []
    for entry in in_models:
        if (entry.get("file"), canonical_folder(str(entry["dest"]))) in held:
            continue  # loras.json got it but models.json was never saved: only the removal is left
        category = lora_category(entry.get("base_model") if isinstance(entry.get("base_model"), str) else None)
        add_entry(loras, category, category_display_name(category), entry)
        categories.append(category)
    remove_entries(models, in_models)
    writes = ("loras", "models") if categories else ("models",)
    if in_loras:
        return Plan({"status": "already_exists", "file": in_loras[0].get("file")}, writes=writes)
    return Plan({"status": "promoted", "file": in_models[0].get("file"), "category": categories[0]}, writes=writes)


def plan_remove(readings: Readings, file: str, on_disk: Callable[[Entry], bool]) -> Plan:
    """Remove every models.json entry with that file name, unless its file is on disk."""
    matches = [entry for _c, entry in find_file(readings["models"].doc, file)]
    if not matches:
        raise NotFound(f"{file!r} is not in models.json.", code="not_in_catalog")
    for entry in matches:
        if on_disk(entry):
            raise Conflict(
                f"{file!r} is still on disk under {entry.get('dest')!r}; delete the file first, then remove it from the catalog.",
                code="file_on_disk",
            )
    remove_entries(readings["models"].doc, matches)
    return Plan({"status": "removed", "file": file}, writes=("models",))


def plan_record_hash(readings: Readings, version_id: int, file: str, sha256: str) -> Plan:
    """Write a verified SHA256 (as CivitAI spells it, upper-case) into every entry of that
    version and file that has no SHA256 yet; an entry with one keeps it."""
    writes = []
    for name in CATALOG_NAMES:
        changed = False
        for _category, entry in iter_entries(readings[name].doc):
            if version_id_of(entry) == version_id and entry.get("file") == file and not _is_sha256(entry.get("hash")):
                entry["hash"] = sha256.upper()
                changed = True
        if changed:
            writes.append(name)
    return Plan({"status": "recorded" if writes else "unchanged", "file": file}, writes=tuple(writes))


def _is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(char in "0123456789abcdefABCDEF" for char in value)


@dataclass(frozen=True, slots=True)
class ImportCandidate:
    """A file on disk that CivitAI named a version for: where it is, and that version's body (JSON)."""

    file: str
    folder: str  # logical, as `dest` says it
    version: bytes


def plan_import(readings: Readings, candidates: tuple[ImportCandidate, ...], dry_run: bool) -> Plan:
    """Add a models.json entry for each identified file no catalog lists, mapped as an add maps its
    version, with the file's real name and folder. Say what was skipped and why."""
    models = readings["models"].doc
    added: list[Answer] = []
    skipped: list[Answer] = []
    taken: set[int] = set()
    for candidate in candidates:
        item: Answer = {"file": _printable(candidate.file), "dest": _printable(candidate.folder)}
        try:
            body = orjson.loads(candidate.version)
            item["version_id"] = body.get("id") if isinstance(body, dict) else None
            check_file_name(candidate.file)
            mapped = version_to_entry(body)
        except (ServiceError, orjson.JSONDecodeError) as exc:
            skipped.append({**item, "reason": "not_mappable", "detail": getattr(exc, "detail", "CivitAI's answer is not JSON")})
            continue
        if mapped.entry is None or mapped.category is None:
            skipped.append({**item, "reason": "restricted", "detail": mapped.restricted_reason})
            continue
        entry = dict(mapped.entry, file=candidate.file, dest=candidate.folder)
        version_id = entry["civitai_version_id"]
        if version_id in taken:
            skipped.append({**item, "reason": "another_file_of_this_version"})
            continue
        if any(find_version(readings[name].doc, version_id) for name in CATALOG_NAMES):
            skipped.append({**item, "reason": "version_in_catalog"})
            continue
        if any(find_file(readings[name].doc, candidate.file, candidate.folder) for name in CATALOG_NAMES):
            skipped.append({**item, "reason": "file_in_catalog"})
            continue
        taken.add(version_id)
        if not dry_run:
            add_entry(models, mapped.category, category_display_name(mapped.category), entry)
        added.append({**item, "name": entry["name"], "category": mapped.category})
    answer = {"status": "dry_run" if dry_run else "imported", "added": added, "skipped": skipped}
    return Plan(answer, writes=("models",) if added and not dry_run else ())


def _printable(name: str) -> str:
    """A name from disk as an answer can carry it: bytes that are not UTF-8 shown as \\xNN."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@dataclass(frozen=True, slots=True)
class FileOnDisk:
    """Looks on disk now, so a file the watcher has not reported yet counts (picklable, unlike a closure)."""

    sources: tuple[FolderSource, ...]
    file: str

    def __call__(self, entry: Entry) -> bool:
        return locate(self.sources, self.file, canonical_folder(str(entry.get("dest", ""))))


class CatalogEditor:
    """Runs mutations against the catalog files and keeps the library in step with them."""

    def __init__(self, catalog_dir: Path, library: Library, civitai: CivitaiClient) -> None:
        self.stores = {name: CatalogStore(catalog_path(catalog_dir, name)) for name in CATALOG_NAMES}
        self._lock = asyncio.Lock()  # every transaction takes both catalogs: one lock in this process
        self.library = library
        self.civitai = civitai

    async def add(self, version_id: int) -> Answer:
        """Add a CivitAI version to models.json (metadata only)."""
        known = self.library.index.entry(version_id)
        if known is not None:
            return {"status": "already_exists", "file": known.file}
        body, answered_by = await self.civitai.model_version(version_id)
        try:
            mapped = version_to_entry(body)
        except Invalid as exc:  # a hostile or broken file name from CivitAI is CivitAI's fault, not the client's
            raise UpstreamError(f"CivitAI's file for version {version_id} was refused: {exc.detail}", code=exc.code) from None
        if mapped.restricted_reason is not None:
            return {"status": "restricted", "reason": mapped.restricted_reason}
        assert mapped.entry is not None
        if mapped.entry["civitai_version_id"] != version_id:
            raise UpstreamError(f"CivitAI answered with a different version than {version_id}.", code="upstream_bad_body")
        if answered_by != self.civitai.base_url:  # only the second origin has it: say where it lives
            mapped.entry["civitai_origin"] = answered_by
        wanted = Wanted(frozenset({version_id}), frozenset({mapped.entry["file"]}))
        answer = await self._transact(functools.partial(plan_add, mapped=mapped), wanted)
        if answer["status"] == "added":
            logger.info("added version %d as %s/%s", version_id, answer["dest"], answer["file"])
        return answer

    async def promote(self, version_id: int) -> Answer:
        """Move a LoRA from models.json to the style-LoRA catalog."""
        answer = await self._transact(functools.partial(plan_promote, version_id=version_id), Wanted(frozenset({version_id})))
        if answer["status"] == "promoted":
            logger.info("promoted version %d to loras.json (%s)", version_id, answer["category"])
        return answer

    async def remove(self, file: str) -> Answer:
        """Remove an entry from models.json when its file is not on disk."""
        plan = functools.partial(plan_remove, file=file, on_disk=FileOnDisk(self.library.sources, file))
        answer = await self._transact(plan, Wanted(files=frozenset({file})))
        logger.info("removed %s from models.json", file)
        return answer

    async def record_hash(self, version_id: int, file: str, sha256: str) -> Answer:
        """Write a downloaded file's verified SHA256 into its entries that have none."""
        plan = functools.partial(plan_record_hash, version_id=version_id, file=file, sha256=sha256)
        answer = await self._transact(plan, Wanted(frozenset({version_id}), frozenset({file})))
        if answer["status"] == "recorded":
            logger.info("wrote the verified SHA256 of %s into its catalog entry", file)
        return answer

    async def import_files(self, candidates: list[ImportCandidate], dry_run: bool) -> Answer:
        """Catalog identified files that no catalog lists, in one transaction (or only say what would be)."""
        versions = set()
        for candidate in candidates:
            with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
                if (version := version_id_of({"civitai_version_id": orjson.loads(candidate.version).get("id")})) is not None:
                    versions.add(version)
        wanted = Wanted(frozenset(versions), frozenset(candidate.file for candidate in candidates))
        answer = await self._transact(functools.partial(plan_import, candidates=tuple(candidates), dry_run=dry_run), wanted)
        if not dry_run and answer["added"]:
            logger.info("imported %d files into models.json (%d skipped)", len(answer["added"]), len(answer["skipped"]))
        return answer

    async def _transact(self, plan: Callable[[Readings], Plan], wanted: Wanted) -> Answer:
        async with self._lock, self.library.saving():
            texts = self.library.texts()
            if texts is not None:  # only the entries the plan needs are parsed: a thread will do
                outcome = await asyncio.to_thread(run_transaction, self.stores, plan, wanted, texts)
            elif workers.needs_process(store.path for store in self.stores.values()):
                outcome = await workers.in_worker_process(run_transaction, self.stores, plan)
            else:
                outcome = await asyncio.to_thread(run_transaction, self.stores, plan)
            await self._hand_over(outcome)
        if outcome.error is not None:
            raise outcome.error
        assert outcome.answer is not None
        return outcome.answer

    async def _hand_over(self, outcome: Outcome) -> None:
        """Give the library what was written before the answer goes out; whatever it could not
        take that way it reads back from disk, so the map is never left behind a saved change."""
        unread = set(outcome.unread)
        if outcome.written:
            try:
                await self.library.accept_writes(outcome.written)
            except Exception:
                logger.exception("the map could not take in the saved catalogs directly; reading them back")
                unread |= outcome.written.keys()
        for name in sorted(unread):
            try:
                await self.library.reload_catalog(name)
            except Exception:
                logger.exception("reading %s.json back failed; a full rescan will", name)
                self.library.reconcile_wanted.set()


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
                    for name in decided.writes:
                        written = stores[name].write(readings[name])
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

