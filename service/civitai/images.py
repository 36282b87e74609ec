"""What an image on CivitAI needs: its resources and the models its prompt names, each matched
against what the service knows, in the vocabulary the extension's image panel reads.

The image comes from CivitAI's public `GET /api/v1/images?imageId={id}`: its `meta` holds
`civitaiResources` (version ids and weights, set by CivitAI's own generator), `resources`
(name, type, weight and a short hash, as A1111 records them), `hashes` (`model`,
`lora:<name>`), and the prompts (read by `image_facts`). Each resource is resolved to a model
version (by id, else by hash through `/api/v1/model-versions/by-hash/{hash}`) and given its
status from the map.

Prompt LoRAs (`<lora:name:0.8>`) and embeddings (`embedding:name`) are resolved, ignoring case,
against the image's resources (CivitAI's model name, the hash, the catalogued file's stem),
then against the file stems the map knows (catalogued and identified on disk).

Statuses, twice: `catalog_status` in the panel's words (`present`, `missing`, `not_found`, and
`unknown` for a prompt name nothing resolves), and the map's own beside it (`status`, with
`dl_bytes` and `dl_total` while downloading).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import orjson

from ..disk.names import is_model_file
from ..errors import NotFound, UpstreamError, UpstreamTimeout
from ..map.index import CivitaiIndex
from ..map.status import Status
from .client import BadBody, CivitaiClient
from .image_facts import ImageFacts, PromptName, Wanted, exact_id, image_facts, text
from .routing import base_family

# The image panel's own words for a version (the extension draws nothing else): `unknown` only
# for a prompt name nothing resolves.
PANEL_STATUSES = {
    "present": "On disk.",
    "missing": "In a catalog or known, but not on disk (yet): `status` says whether it is queued or downloading.",
    "not_found": "A CivitAI version the service does not know.",
    "unknown": "A name in the prompt nothing resolves to a version (prompt names only).",
}
DETECTED_TYPES = ("t2i", "i2i", "t2v", "i2v", "unknown")
SLOT_FIELDS_PASSED = ("dl_bytes", "dl_total", "partial_bytes", "dl_error")  # what the map says beside a status that the panel shows too


async def image_resources(client: CivitaiClient, index: CivitaiIndex, image_id: int) -> dict[str, Any]:
    """The answer of GET /api/admin/civitai/image/{image_id}."""
    facts = await client.get_reduced(
        client.base_url,
        "/api/v1/images",
        {"imageId": str(image_id), "nsfw": "X"},
        f"image {image_id}",
        functools.partial(image_facts, image_id=image_id),
        longest_wait_s=5.0,
    )
    if facts is None:
        raise NotFound(f"Image {image_id} is not on CivitAI, or has no public generation data.", code="civitai_not_found")
    resolved = await asyncio.gather(*(_resolve(client, want) for want in facts.wanted))
    resources = [_with_catalog(index, item) for item in _one_per_version(resolved)]
    family = _family(resources, facts.base_model)
    deps = await _prompt_names(index, facts.names, resources)
    for resource in resources:
        del resource["_aliases"]
    return {
        "image_id": image_id,
        "resources": resources,
        "detected_deps": deps,
        "meta": facts.meta,
        "detected_type": detected_type(facts, family.video if family is not None else False),
        "base_model_family": family.name if family is not None else None,
    }


def detected_type(facts: ImageFacts, video_family: bool) -> str:
    """`t2i`, `i2i`, `t2v` or `i2v`; `unknown` for an image with no generation data at all."""
    if not facts.has_meta and not facts.wanted:
        return "unknown"
    video = facts.video or video_family
    return ("i2v" if facts.from_image else "t2v") if video else ("i2i" if facts.from_image else "t2i")


async def _resolve(client: CivitaiClient, want: Wanted) -> dict[str, Any]:
    """A resource with CivitAI's names for it; unresolved ones keep what the image said."""
    item: dict[str, Any] = {
        "modelType": want.type,
        "modelName": want.name,
        "versionName": None,
        "versionId": want.version_id,
        "baseModel": None,
        "strength": want.strength,
        "hash": want.hash,
        "_aliases": [want.name] if want.name else [],  # what the image calls it, for prompt names; not sent
    }
    try:
        if want.version_id is not None:
            version, _origin = await client.model_version(want.version_id, reduce=version_names)
        else:
            what = f"the file with hash {want.hash}"
            path = f"/api/v1/model-versions/by-hash/{want.hash}"
            version = await client.get_reduced(client.base_url, path, None, what, version_names, longest_wait_s=5.0)
    except (NotFound, UpstreamError, UpstreamTimeout):  # one unknown resource does not spoil the rest
        return item
    item.update(
        modelType=version["modelType"] or item["modelType"],
        modelName=version["modelName"] or item["modelName"],
        versionName=version["versionName"],
        versionId=version["versionId"] or item["versionId"],
        baseModel=version["baseModel"],
    )
    return item


def _one_per_version(resolved: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each version once: a hash that resolves to a version the image also names by id (the
    checkpoint, usually) fills in that resource's hash and strength instead of repeating it."""
    kept: list[dict[str, Any]] = []
    by_version: dict[int, dict[str, Any]] = {}
    for item in resolved:
        first = by_version.get(item["versionId"]) if item["versionId"] is not None else None
        if first is None:
            kept.append(item)
            if item["versionId"] is not None:
                by_version[item["versionId"]] = item
            continue
        for key in ("hash", "strength"):
            if first[key] is None:
                first[key] = item[key]
        first["_aliases"] += item["_aliases"]
    return kept


def version_names(body: Any) -> dict[str, Any]:
    """What the panel shows of a CivitAI version: its names, id and base model, checked and cut
    (pure: a large answer is read in a worker process)."""
    if not isinstance(body, dict):
        raise BadBody("not a model version")
    model = body.get("model") if isinstance(body.get("model"), dict) else {}
    return {
        "modelType": text(model.get("type")),
        "modelName": text(model.get("name")),
        "versionName": text(body.get("name")),
        "versionId": exact_id(body.get("id")),
        "baseModel": text(body.get("baseModel")),
    }


def _with_catalog(index: CivitaiIndex, item: dict[str, Any]) -> dict[str, Any]:
    """A resource with its status, in the panel's words and the map's."""
    version_id = item.get("versionId")
    item.update(_status_fields(index, version_id if isinstance(version_id, int) else None, unknown="not_found"))
    return item


def _status_fields(index: CivitaiIndex, version_id: int | None, *, unknown: str) -> dict[str, Any]:
    """`catalog_status` (present / missing / not_found, or `unknown` when there is no version),
    the map's `status` (and `dl_bytes`, `dl_total`), and the catalogued file."""
    shown = index.shown(version_id) if version_id is not None else None
    slot = index.status(version_id) if shown is not None and version_id is not None else None
    if shown is None or slot is None:
        return {"catalog_status": "not_found" if version_id is not None else unknown, "status": None, "catalog_file": None}
    fields = orjson.loads(b'{"status":"' + slot)
    status = Status(fields["status"])
    catalog_status = "present" if status is Status.PRESENT else "missing"
    passed = {key: fields[key] for key in SLOT_FIELDS_PASSED if key in fields}
    return {"catalog_status": catalog_status, "status": status, "catalog_file": shown.file, **passed}


def _prompt_key(name: str) -> str:
    """How a name in a prompt is matched, ignoring case: without a folder before it
    (`<lora:styles/ink:1>`) nor a model extension after it (`embedding:EasyNegative.pt`)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return (base.rpartition(".")[0] if is_model_file(base) else base).lower()


async def _prompt_names(index: CivitaiIndex, names: tuple[PromptName, ...], resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The LoRAs and embeddings the prompts name, each resolved to a version where it can be."""
    by_resource = {}
    for resource in resources:
        stem = str(resource.get("catalog_file") or "").rsplit(".", 1)[0]
        for key in (*resource["_aliases"], resource.get("modelName"), resource.get("hash"), stem):
            if isinstance(key, str) and key:
                by_resource.setdefault(key.lower(), resource)
    keys = {name.name: _prompt_key(name.name) for name in names}
    unresolved = {key for key in keys.values() if key not in by_resource}
    by_stem = await index.versions_by_stem(unresolved) if unresolved else {}
    found = []
    for name in names:
        key = keys[name.name]
        dep: dict[str, Any] = {"name": name.name, "weight": name.weight, "type": name.type, "source": name.source}
        resource = by_resource.get(key)
        if resource is not None:
            dep.update(
                civitai_version_id=resource.get("versionId"),
                civitai_model_name=resource.get("modelName"),
                civitai_version_name=resource.get("versionName"),
                civitai_base_model=resource.get("baseModel"),
                hash=resource.get("hash"),
            )
        else:
            version_id = by_stem.get(key)
            shown = index.shown(version_id) if version_id is not None else None
            names_of = _names_of(shown.head) if shown is not None else {}
            dep.update(
                civitai_version_id=version_id,
                civitai_model_name=names_of.get("name"),
                civitai_version_name=None,
                civitai_base_model=names_of.get("base_model"),
                hash=shown.sha256 if shown is not None else None,
            )
        dep.update(_status_fields(index, dep["civitai_version_id"], unknown="unknown"))
        found.append(dep)
    return found


def _names_of(head: bytes) -> dict[str, Any]:
    """The fields a map entry's head shows (`"7":{...,"status":"`, closed here with a dummy status)."""
    try:
        return orjson.loads(head.partition(b":")[2] + b'"}')
    except orjson.JSONDecodeError:
        return {}


def _family(resources: list[dict[str, Any]], image_base: str | None) -> Any:
    checkpoint = next((r for r in resources if str(r.get("modelType") or "").lower() == "checkpoint"), None)
    base = (checkpoint or {}).get("baseModel") or image_base
    return base_family(base)
