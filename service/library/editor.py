"""Changes to the catalogs, as the routes ask for them: each a plan (`catalog.plans`) run as one
transaction in a worker, and what was written handed to the library before the answer goes out,
so the next GET already shows it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import orjson

from .. import workers
from ..catalog.document import CATALOG_NAMES, catalog_path, version_id_of
from ..catalog.plans import (
    FileOnDisk,
    ImportCandidate,
    plan_add,
    plan_import,
    plan_promote,
    plan_record_hash,
    plan_remove,
)
from ..catalog.store import CatalogStore
from ..catalog.transaction import (
    Answer,
    Outcome,
    Plan,
    Readings,
    Wanted,
    run_transaction,
)
from ..civitai import CivitaiClient
from ..civitai.refs import read_reference
from ..civitai.routing import version_to_entry
from ..errors import Invalid, UpstreamError
from ..logs import counted
from .library import Library

logger = logging.getLogger(__name__)


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

    async def add_reference(self, text: str) -> Answer:
        """Add the version a URL, an AIR or an id names (a model's newest, when it names no version)."""
        reference = read_reference(text, frozenset({urlsplit(self.civitai.base_url).hostname or ""}) - {""})
        version_id = reference.version_id
        if version_id is None:
            assert reference.model_id is not None
            version_id = await self.civitai.newest_version(reference.model_id)
        return {**await self.add(version_id), "version_id": version_id}

    async def promote(self, version_id: int) -> Answer:
        """Move a LoRA from models.json to the style-LoRA catalog."""
        answer = await self._transact(functools.partial(plan_promote, version_id=version_id), Wanted(frozenset({version_id})))
        if answer["status"] == "promoted":
            logger.info("promoted version %d to loras.json (%s)", version_id, answer["category"])
        return answer

    async def remove(self, file: str) -> Answer:
        """Remove a file's entries from whichever catalog holds them when the file is not on disk.
        Any name a catalog can hold may be named, but one with a path separator or a NUL, which no
        catalog entry's file is."""
        if "/" in file or "\\" in file or "\x00" in file:
            raise Invalid("The file name may not contain a path separator or a NUL character.", code="unsafe_file_name")
        plan = functools.partial(plan_remove, file=file, on_disk=FileOnDisk(self.library.sources, file))
        answer = await self._transact(plan, Wanted(files=frozenset({file})))
        logger.info("removed %s from %s", file, " and ".join(f"{name}.json" for name in answer["catalogs"]))
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
            logger.info("imported %s into models.json (%d skipped)", counted(len(answer["added"]), "file"), len(answer["skipped"]))
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
                self.library.request_rescan()
