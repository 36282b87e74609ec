"""Update checks: which catalogued models have a version newer than every catalogued one.

Once a day (UPDATE_CHECK_INTERVAL_H, 0 = never) and on demand, the catalogued model ids are
asked of CivitAI in batches of 100 (`GET /api/v1/models?ids=...`), through the shared
rate-limit gate. Answers are cached on disk (`CATALOG_DIR/.civitai-updates.json`, written
atomically), so a restart shows the last result at once. A batch that fails keeps its
models' last known answer and is reported; the other batches are not lost. A cache file
that does not read is set aside and the checks start afresh; it never stops the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from ..disk.files import write_atomically
from ..errors import ServiceError
from ..map.entry import json_id
from .client import CivitaiClient

logger = logging.getLogger(__name__)

BATCH = 100
CACHE_NAME = ".civitai-updates.json"
CACHE_VERSION = 1
FIRST_CHECK_DELAY_S = 60.0  # after start, let the index settle before the first scheduled check
Notify = Callable[[dict[str, Any]], None]


def newer_versions(model: dict[str, Any], catalogued: Iterable[int]) -> list[dict[str, Any]]:
    """The versions of a CivitAI model body newer than every catalogued one (CivitAI's ids grow over time)."""
    newest = max(catalogued, default=0)
    found = []
    for version in model.get("modelVersions") or []:
        if not isinstance(version, dict) or json_id(version.get("id")) is None or version["id"] <= newest:
            continue
        availability = version.get("availability")
        early_ends = version.get("earlyAccessEndsAt") or (version.get("earlyAccessConfig") or {}).get("timeframe")
        found.append(
            {
                "id": version["id"],
                "name": version.get("name") if isinstance(version.get("name"), str) else None,
                "base_model": version.get("baseModel") if isinstance(version.get("baseModel"), str) else None,
                "published_at": version.get("publishedAt") if isinstance(version.get("publishedAt"), str) else None,
                "early_access": availability == "EarlyAccess" or bool(version.get("earlyAccessEndsAt")),
                "early_access_ends_at": early_ends if isinstance(early_ends, str) else None,
                "paid": availability in ("Private", "Paid") or bool((version.get("earlyAccessConfig") or {}).get("chargeForDownload")),
                "availability": availability if isinstance(availability, str) else None,
            }
        )
    return sorted(found, key=lambda item: item["id"], reverse=True)


class UpdateChecker:
    """Runs the checks, keeps their results (in memory and on disk), and says when they change."""

    def __init__(self, client: CivitaiClient, catalog_dir: Path, catalogued: Callable[[], dict[int, list[int]]], interval_h: float) -> None:
        self.client = client
        self.cache_path = catalog_dir / CACHE_NAME
        self.catalogued = catalogued  # model id -> catalogued version ids, from the index
        self.interval_s = interval_h * 3600
        self.models: dict[int, dict[str, Any]] = {}  # model id -> CivitAI's answer, trimmed to what is needed
        self.checked_at: float | None = None
        self.failures: list[dict[str, Any]] = []
        self.running: asyncio.Task[None] | None = None
        self.listeners: list[Notify] = []
        self._last_answer: bytes = b""

    def load(self) -> None:
        """Read the cache (blocking: call in a thread); a bad file is set aside, never fatal."""
        try:
            raw = self.cache_path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            logger.warning("the update-check cache cannot be read (%s); starting afresh", exc.strerror)
            return
        try:
            data = orjson.loads(raw)
            if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or not isinstance(data.get("models"), dict):
                raise ValueError("not this service's cache")
            self.models = {int(key): value for key, value in data["models"].items() if isinstance(value, dict)}
            self.checked_at = data.get("checked_at") if isinstance(data.get("checked_at"), int | float) else None
        except (ValueError, TypeError):
            aside = self.cache_path.with_name(f"{CACHE_NAME}.unreadable-{int(time.time())}")
            with contextlib.suppress(OSError):
                os.replace(self.cache_path, aside)
            logger.warning("the update-check cache did not read; set aside as %s", aside.name)
            self.models, self.checked_at = {}, None

    def start_check(self) -> dict[str, Any]:
        """Start a check now unless one runs; answer the state at once."""
        if self.running is None or self.running.done():
            self.running = asyncio.create_task(self.check(), name="update check")
        return {"status": "running", "models": len(self.catalogued())}

    async def check(self) -> None:
        """Ask CivitAI for every catalogued model, a batch at a time; keep what answered."""
        wanted = sorted(self.catalogued())
        failures: list[dict[str, Any]] = []
        started = time.time()
        logger.info("update check: asking CivitAI about %d catalogued models", len(wanted))
        for start in range(0, len(wanted), BATCH):
            ids = wanted[start : start + BATCH]
            try:
                body = await self.client.models(ids)
            except ServiceError as exc:
                failures.append({"model_ids": ids, "code": exc.code, "error": exc.detail})
                logger.warning("update check: a batch of %d models failed: %s", len(ids), exc.detail)
                continue
            for model in body.get("items") or []:
                if isinstance(model, dict) and isinstance(model.get("id"), int):
                    self.models[model["id"]] = {"name": model.get("name"), "modelVersions": model.get("modelVersions") or []}
        self.failures, self.checked_at = failures, started
        await asyncio.to_thread(self._save)
        answer = self.answer()
        logger.info("update check done: %d models with newer versions, %d failed batches", len(answer["models"]), len(failures))
        encoded = orjson.dumps(answer["models"])
        if encoded != self._last_answer:
            self._last_answer = encoded
            for listener in self.listeners:
                listener(answer)

    def answer(self) -> dict[str, Any]:
        """Models with a version newer than every catalogued one, and how the last check went."""
        catalogued = self.catalogued()
        models = []
        for model_id in sorted(catalogued):
            known = self.models.get(model_id)
            if known is None:
                continue
            newer = newer_versions(known, catalogued[model_id])
            if newer:
                models.append({"model_id": model_id, "name": known.get("name"), "catalogued_versions": sorted(catalogued[model_id]), "newer": newer})
        running = self.running is not None and not self.running.done()
        return {"state": "running" if running else "idle", "checked_at": self.checked_at, "models": models, "failures": self.failures}

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Check once a day (or as configured) until `stop`; a check already due after a restart runs soon."""
        if self.interval_s <= 0:
            return
        first = True
        while True:
            due = 0.0 if self.checked_at is None else self.checked_at + self.interval_s - time.time()
            if first:  # let the index settle after a start before asking CivitAI
                due, first = max(due, FIRST_CHECK_DELAY_S), False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(due, 0.0))
                return
            try:
                await self.check()
            except Exception:
                logger.exception("the update check failed")

    def _save(self) -> None:
        data = {"version": CACHE_VERSION, "checked_at": self.checked_at, "models": {str(k): v for k, v in self.models.items()}}
        try:
            write_atomically(self.cache_path, orjson.dumps(data), mode=0o600)
        except OSError as exc:
            logger.warning("the update-check cache could not be saved (%s)", exc.strerror)
