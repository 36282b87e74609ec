"""What the hashes say of the whole library: files identified as CivitAI versions, files not
identified (and why), and the same bytes kept in more than one place.

Pure reads of the hasher's tables, run on the event loop (they cost one pass over the files);
only `duplicate_groups` touches the disk, in a worker thread, to tell copies from links.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ..civitai.client import CivitaiClient
from ..civitai.lookup import BATCH, Identity, look_up
from ..disk.known import KnownHashes
from ..disk.names import printable
from ..disk.presence import Presence
from ..errors import ServiceError
from .progress import OnDisk

logger = logging.getLogger(__name__)

MAX_LISTED = 1000  # files not identified listed by name in an answer (the rest are counted)


def identified_files(known: KnownHashes, identities: Mapping[str, Identity], presence: Presence) -> list[OnDisk]:
    """Complete files identified as CivitAI versions (by their bytes or a sidecar), in path order."""
    found: list[OnDisk] = []
    for path, sha256 in sorted(known.by_path.items()):
        identity = identities.get(sha256)
        logical = presence.logical_of(path)
        if identity is not None and identity.known and logical is not None:
            found.append(OnDisk(path, logical, os.path.basename(path), identity))
    return found


def unidentified_files(known: KnownHashes, identities: Mapping[str, Identity], presence: Presence) -> tuple[list[dict[str, str]], int]:
    """Files on disk no version is known for, by name with why (`waiting_to_be_hashed`,
    `waiting_for_civitai`, `unknown_to_civitai`), the first MAX_LISTED in path order; and how many in all."""
    listed: list[dict[str, str]] = []
    count = 0
    for path, logical in sorted(presence.files()):
        sha256 = known.by_path.get(path)
        identity = identities.get(sha256) if sha256 is not None else None
        if identity is not None and identity.known:
            continue
        count += 1
        if len(listed) < MAX_LISTED:
            why = "waiting_to_be_hashed" if sha256 is None else "waiting_for_civitai" if identity is None else "unknown_to_civitai"
            name = os.path.basename(path)
            listed.append({"file": printable(name), "dest": printable(logical), "why": why})
    return listed, count


@dataclass(frozen=True, slots=True)
class Copy:
    """One place a file's bytes are kept."""

    path: str
    folder: str  # logical


def copies_by_hash(known: KnownHashes, presence: Presence, skip: set[str]) -> dict[str, list[Copy]]:
    """Hashes held by more than one path on disk (paths in `skip`, not hashed yet, left out)."""
    groups: dict[str, list[Copy]] = {}
    for sha256, paths in known.by_hash.items():
        if len(paths) < 2:
            continue
        copies = [Copy(path, logical) for path in sorted(paths) if path not in skip and (logical := presence.logical_of(path)) is not None]
        if len(copies) > 1:
            groups[sha256] = copies
    return groups


async def duplicates(known: KnownHashes, identities: Mapping[str, Identity], presence: Presence) -> dict[str, Any]:
    """Files whose bytes are kept in more than one place (files known only by a sidecar's word
    are left out until they are hashed), the most space wasted first; the disk is read in a thread."""
    groups = copies_by_hash(known, presence, skip=known.hinted)
    versions = {sha256: identity.version_id for sha256 in groups if (identity := identities.get(sha256)) is not None and identity.version_id}
    return await asyncio.to_thread(duplicate_groups, groups, versions)


def duplicate_groups(groups: dict[str, list[Copy]], versions: Mapping[str, int]) -> dict[str, Any]:
    """The answer of GET /api/admin/library/duplicates (blocking: it stats each copy). Paths that
    are one file (a hard link, a folder seen through a symlink) are one copy, not a duplicate."""
    answer: list[dict[str, Any]] = []
    wasted = 0
    for sha256, copies in groups.items():
        seen: dict[tuple[int, int], Copy] = {}
        size = 0
        for copy in copies:
            try:
                info = os.stat(copy.path)
            except OSError:
                continue
            seen.setdefault((info.st_dev, info.st_ino), copy)
            size = info.st_size
        if len(seen) < 2:
            continue
        files = [{"file": printable(os.path.basename(c.path)), "dest": printable(c.folder), "path": printable(c.path)} for c in seen.values()]
        group_wasted = size * (len(seen) - 1)
        wasted += group_wasted
        answer.append({"sha256": sha256, "size": size, "copies": len(seen), "wasted_bytes": group_wasted, "version_id": versions.get(sha256), "files": files})
    answer.sort(key=lambda group: (-group["wasted_bytes"], group["sha256"]))
    return {"groups": answer, "wasted_bytes": wasted}


def lacks_file_id(version: bytes | None) -> bool:
    """True when a version body (from a sidecar that names no CivitAI file, as Stability
    Matrix's) cannot be mapped to a catalog entry as it is."""
    if not version:
        return False
    try:
        body = orjson.loads(version)
        return not any(isinstance(file, dict) and type(file.get("id")) is int for file in body.get("files") or ())
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return False


async def completed(client: CivitaiClient, files: list[OnDisk]) -> list[OnDisk]:
    """Identified files as an import maps them: where a sidecar's version body names no CivitAI
    file, CivitAI's own body is asked for by hash (100 a call); one it cannot give is left as it is."""
    wanted = sorted({item.identity.sha256 for item in files if lacks_file_id(item.identity.version)})
    found: dict[str, Identity] = {}
    for start in range(0, len(wanted), BATCH):
        try:
            answer, _calls = await look_up(client, wanted[start : start + BATCH])
        except ServiceError as exc:
            logger.warning("asking CivitAI for the versions of files named by sidecars failed: %s", exc.detail)
            break
        found.update((sha256, identity) for sha256, identity in answer.items() if identity.known)
    return [OnDisk(item.path, item.folder, item.file, found.get(item.identity.sha256, item.identity)) for item in files]
