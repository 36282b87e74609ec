"""Asking CivitAI which version a SHA256 belongs to: 100 hashes a call, one at a time as a fallback.

`POST /api/v1/model-versions/by-hash` takes a JSON array of up to 100 SHA256 values and answers
the versions it knows, each with its files and their hashes; a hash it does not know is simply
absent. `GET /api/v1/model-versions/by-hash/{hash}` answers one version, or 404.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from ..disk.names import MAX_NAME_BYTES
from ..errors import NotFound, Unavailable, UpstreamError
from ..map.entry import MAX_TRIGGER_WORD_CHARS, MAX_TRIGGER_WORDS, json_id
from .client import CivitaiClient
from .image_facts import MAX_NAME_CHARS, text

logger = logging.getLogger(__name__)


BATCH = 100
RATE_LIMITED_TRIES = 5  # a batch refused with 429 is sent again after Retry-After, this many times at most
UNKNOWN_RETRY_S = 24 * 3600.0  # an unknown hash is asked again after a day, not at every start
# What an import needs of a version to map it as an add would; images and descriptions are left out.
_KEPT_FIELDS = ("id", "modelId", "name", "baseModel", "trainedWords", "availability", "usageControl", "status")


@dataclass(frozen=True, slots=True)
class Identity:
    """CivitAI's answer for one SHA256: a version (with what the map shows of it), or unknown."""

    sha256: str
    version_id: int | None = None
    model_id: int | None = None
    model_name: str | None = None
    version_name: str | None = None
    model_type: str | None = None
    base_model: str | None = None
    version: bytes | None = None  # CivitAI's version body, trimmed to what an import needs (JSON)
    checked_at: float = 0.0
    retry_at: float | None = None  # unknown hashes are asked again after this time

    @property
    def known(self) -> bool:
        """True when CivitAI named a version for this hash."""
        return self.version_id is not None



def identities_from_versions(versions: Iterable[Any], asked: Iterable[str], now: float) -> dict[str, Identity]:
    """CivitAI's version bodies as identities of the hashes asked; asked but unanswered is unknown."""
    wanted = {sha256.lower() for sha256 in asked}
    found: dict[str, Identity] = {}
    for version in versions:
        if not isinstance(version, dict):
            continue
        for file in version.get("files") or ():
            if not isinstance(file, dict) or not isinstance(file.get("hashes"), dict):
                continue
            sha256 = file["hashes"].get("SHA256")
            if isinstance(sha256, str) and sha256.lower() in wanted and sha256.lower() not in found:
                identity = identity_of(version, file, sha256.lower(), now)
                if identity is not None:
                    found[identity.sha256] = identity
    for sha256 in wanted - found.keys():
        found[sha256] = Identity(sha256, checked_at=now, retry_at=now + UNKNOWN_RETRY_S)
    return found


def identity_of(version: dict[str, Any], file: dict[str, Any], sha256: str, now: float) -> Identity | None:
    """One file of a CivitAI version as the identity of its SHA256; None when the body is not a version."""
    version_id, model_id = version.get("id"), version.get("modelId")
    if not _an_id(version_id) or (model_id is not None and not _an_id(model_id)):  # what SQLite and the map can hold
        return None
    model = version.get("model") if isinstance(version.get("model"), dict) else {}
    texts = (version.get("name"), version.get("baseModel"), model.get("name"), model.get("type"))
    if any(value is not None and not isinstance(value, str) for value in texts):  # not a version body: a sidecar that lies
        return None
    trimmed = {key: version[key] for key in _KEPT_FIELDS if key in version}
    for key in ("name", "baseModel", "availability", "usageControl", "status"):
        if key in trimmed:
            trimmed[key] = text(trimmed[key])
    if "trainedWords" in trimmed:
        trimmed["trainedWords"] = _words(trimmed["trainedWords"])
    trimmed["model"] = {key: text(model[key]) for key in ("name", "type") if key in model}
    trimmed["files"] = [_kept_file(file)]  # the file on disk: an import maps this one, whatever CivitAI calls primary
    return Identity(
        sha256, version_id, model_id, text(model.get("name")), text(version.get("name")), text(model.get("type")), text(version.get("baseModel")),
        orjson.dumps(trimmed), now, None,
    )


def _an_id(value: object) -> bool:
    return json_id(value) is not None


def _kept_file(file: dict[str, Any]) -> dict[str, Any]:
    """What an import maps of a version's file, its texts cut as the map keeps them (a sidecar
    may hold anything there): ids, name, size, type, SHA256, and the precision and format."""
    kept: dict[str, Any] = {key: file[key] for key in ("id", "sizeKB", "primary") if type(file.get(key)) in (int, float, bool)}
    for key, longest in (("name", MAX_NAME_BYTES), ("type", MAX_NAME_CHARS)):
        if isinstance(file.get(key), str):
            kept[key] = file[key][:longest]
    hashes = file.get("hashes")
    if isinstance(hashes, dict) and "SHA256" in hashes:
        kept["hashes"] = {"SHA256": text(hashes["SHA256"])}
    metadata = file.get("metadata")
    if isinstance(metadata, dict):
        kept["metadata"] = {key: text(metadata[key]) for key in ("fp", "size", "format") if key in metadata}
    return kept


def _words(words: object) -> list[str]:
    """Trigger words as the map keeps them (strings only, at most 50 of 200 characters): a
    sidecar may hold any number of any size."""
    if not isinstance(words, list):
        return []
    return [word[:MAX_TRIGGER_WORD_CHARS] for word in words if isinstance(word, str)][:MAX_TRIGGER_WORDS]


async def look_up(client: CivitaiClient, hashes: list[str]) -> tuple[dict[str, Identity], int]:
    """Identify up to BATCH hashes: one batch call, or one call each when the batch call is refused.
    Returns the identities and the number of calls made. Raises only when CivitAI is unusable now."""
    now = time.time()
    calls = 0
    try:
        while True:
            calls += 1
            try:
                versions = await client.post_json_list(
                    client.base_url, "/api/v1/model-versions/by-hash", [h.upper() for h in hashes], f"{len(hashes)} hashes"
                )
                return identities_from_versions(versions, hashes, now), calls
            except Unavailable as exc:  # 429: the shared gate now holds every call until Retry-After
                if exc.code != "civitai_rate_limited" or calls >= RATE_LIMITED_TRIES:
                    raise
    except (NotFound, UpstreamError) as exc:
        if not isinstance(exc, NotFound) and exc.code != "civitai_unexpected_status":
            raise
        # an origin without the batch call (404, 405): ask one by one
        logger.info("CivitAI has no batch lookup by hash here; asking hash by hash")
    found: dict[str, Identity] = {}
    for sha256 in hashes:
        calls += 1
        try:
            version = await client.get_json(
                client.base_url, f"/api/v1/model-versions/by-hash/{sha256.upper()}", None, "a version by hash", longest_wait_s=float("inf")
            )
        except NotFound:
            found[sha256] = Identity(sha256, checked_at=now, retry_at=now + UNKNOWN_RETRY_S)
            continue
        found.update(identities_from_versions([version], [sha256], now))
    return found, calls
