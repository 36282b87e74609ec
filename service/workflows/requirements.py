"""What a workflow needs, against what this service knows: each model file is `present` (where),
`in_catalog` (a catalogued version not on disk yet: a Download fetches it), `identified` (a
CivitAI version found by the workflow's own `models` entry, by URL or by hash), or `unknown`.

Pure reads of the map and the disk on the event loop; CivitAI is asked only for embedded hashes
(100 a call). The answer says how much is left to download.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from ..civitai.lookup import Identity
from ..civitai.refs import read_reference
from ..disk.folders import canonical_folder
from ..disk.presence import Presence
from ..errors import Invalid
from ..map.index import CivitaiIndex
from ..map.status import status_of
from .models import EMBEDDING_EXTENSIONS, Need

STATES = ("present", "in_catalog", "identified", "unknown")
MAX_NEEDS = 2_000  # models listed in one answer


@dataclass(slots=True)
class Resolved:
    """One need and what is known of it."""

    need: Need
    state: str
    where: str | None = None  # present: logical folder/name
    elsewhere: bool = False  # present, but not where the workflow names it (the node must be pointed at it)
    version_id: int | None = None
    status: str | None = None  # the map's status of a catalogued version
    size: int | None = None
    source: str | None = None  # identified: "civitai" or "huggingface"

    def as_json(self) -> dict[str, Any]:
        need = self.need
        answer: dict[str, Any] = {"name": need.name, "file": need.file, "folder": need.folder, "nodes": need.nodes, "node_types": need.node_types, "state": self.state}
        for key in ("where", "version_id", "status", "size", "source"):
            value = getattr(self, key)
            if value is not None:
                answer[key] = value
        if self.elsewhere:
            answer["elsewhere"] = True
        if need.url is not None:
            answer["url"] = need.url
        return answer


def resolve(needs: list[Need], index: CivitaiIndex, presence: Presence, identities: dict[str, Identity], is_hf_file: Callable[[str], bool]) -> list[Resolved]:
    """Each need against the disk, the catalogs, what CivitAI said of embedded hashes, and the
    Hugging Face files (`is_hf_file` tells their URLs) the workflow names."""
    return [_resolve(need, index, presence, identities, is_hf_file) for need in needs[:MAX_NEEDS]]


def _resolve(need: Need, index: CivitaiIndex, presence: Presence, identities: dict[str, Identity], is_hf_file: Callable[[str], bool]) -> Resolved:
    if need.embedding:  # `embedding:name`: ComfyUI takes the first of its extensions that is there
        stem = need.name.rpartition(".")[0]
        for extension in EMBEDDING_EXTENSIONS:
            candidate = dataclasses.replace(need, name=stem + extension, embedding=False)
            resolved = _resolve(candidate, index, presence, identities, is_hf_file)
            if resolved.state != "unknown":
                return resolved
        return Resolved(need, "unknown")
    file, subfolder = need.file, need.name.rpartition("/")[0]
    folders = presence.folders_of(file)
    wanted = canonical_folder(f"{need.folder}/{subfolder}" if need.folder and subfolder else need.folder or subfolder)
    if folders:
        exact = [f for f in folders if f == wanted] if need.folder else [f for f in folders if not subfolder or f.endswith("/" + subfolder) or f == subfolder]
        place = (exact or [f for f in folders if need.folder is None or f == need.folder or f.startswith(need.folder + "/")] or [None])[0]
        if place is not None:
            return Resolved(need, "present", where=f"{place}/{file}", elsewhere=not exact)
    catalogued = [v for v in index.versions_of_file(file) if need.folder is None or (e := index.entry(v)) is not None and e.folder.split("/")[0] == need.folder]
    if catalogued:
        version_id = catalogued[0]
        entry, slot = index.entry(version_id), index.status(version_id)
        return Resolved(need, "in_catalog", version_id=version_id, status=status_of(slot).value if slot else None, size=entry.size if entry else None)
    version_id, source = _identified(need, identities, is_hf_file)
    if version_id is not None or source is not None:
        identity = identities.get(need.sha256) if need.sha256 else None
        return Resolved(need, "identified", version_id=version_id, source=source, size=_size_of(identity))
    return Resolved(need, "unknown")


def _identified(need: Need, identities: dict[str, Identity], is_hf_file: Callable[[str], bool]) -> tuple[int | None, str | None]:
    if need.sha256 is not None:
        identity = identities.get(need.sha256)
        if identity is not None and identity.known:
            return identity.version_id, "civitai"
    if need.url is not None:
        try:
            reference = read_reference(need.url)
        except Invalid:
            reference = None
        if reference is not None and reference.version_id is not None:
            return reference.version_id, "civitai"
        if is_hf_file(need.url):
            return None, "huggingface"
    return None, None


def _size_of(identity: Identity | None) -> int | None:
    """The size of the file CivitAI named for a hash, from the version body it answered."""
    if identity is None or identity.version is None:
        return None
    try:
        file = orjson.loads(identity.version)["files"][0]
        size_kb = file.get("sizeKB")
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
        return None
    return round(size_kb * 1024) if isinstance(size_kb, int | float) and not isinstance(size_kb, bool) and size_kb > 0 else None


def summary(resolved: list[Resolved], needs: int) -> dict[str, Any]:
    """The counts by state, and the bytes left to download (of the files whose size is known)."""
    counts = {state: 0 for state in STATES}
    to_download = unknown_sizes = 0
    for item in resolved:
        counts[item.state] += 1
        if item.state in ("in_catalog", "identified") and item.status != "present":
            if item.size is None:
                unknown_sizes += 1
            else:
                to_download += item.size
    return {"counts": counts, "download_bytes": to_download, "download_sizes_unknown": unknown_sizes, "listed": len(resolved), "found": needs}
