"""What an image on CivitAI needs: its resources, each matched against the catalog.

The image comes from CivitAI's public `GET /api/v1/images?imageId={id}`: its `meta` holds
`civitaiResources` (version ids and weights, set by CivitAI's own generator), `resources`
(name, type, weight and a short hash, as A1111 records them), `hashes` (`model`,
`lora:<name>`), and the prompt. Each resource is resolved to a model version (by id, else by
hash through `/api/v1/model-versions/by-hash/{hash}`), then given its catalog status from the
index. LoRAs named only in the prompt (`<lora:name:0.8>`) are listed in `detected_deps`,
resolved when a resource of that name was. `detected_type` is the checkpoint's family.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from ..errors import NotFound, UpstreamError, UpstreamTimeout
from ..index import CivitaiIndex, status_name
from ..mapping import base_family
from .client import CivitaiClient

PROMPT_LORA = re.compile(r"<lora:([^:>]+)(?::([-+]?\d*\.?\d+))?[^>]*>", re.IGNORECASE)
MAX_RESOURCES = 50
_HASH = re.compile(r"^[0-9a-fA-F]{8,64}$")


async def image_resources(client: CivitaiClient, index: CivitaiIndex, image_id: int) -> dict[str, Any]:
    """The answer of GET /api/admin/civitai/image/{image_id}."""
    listing = await client.get_json(
        client.base_url, "/api/v1/images", {"imageId": str(image_id), "nsfw": "X"}, f"image {image_id}", longest_wait_s=5.0
    )
    items = listing.get("items")
    image = next((item for item in items or [] if isinstance(item, dict) and item.get("id") == image_id), None)
    if image is None:
        raise NotFound(f"Image {image_id} is not on CivitAI, or has no public generation data.", code="civitai_not_found")
    meta = image.get("meta") if isinstance(image.get("meta"), dict) else {}
    wanted = _wanted_resources(meta)
    resolved = await asyncio.gather(*(_resolve(client, want) for want in wanted[:MAX_RESOURCES]))
    resources = [_with_catalog(index, item) for item in resolved]
    return {
        "image_id": image_id,
        "resources": resources,
        "detected_deps": _prompt_loras(meta, resources, index),
        "detected_type": _workflow_family(resources, image),
    }


def _wanted_resources(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """Resources named by the image, without repeats: by version id first, then by hash."""
    wanted: list[dict[str, Any]] = []
    seen_versions: set[int] = set()
    seen_hashes: set[str] = set()
    for item in meta.get("civitaiResources") or []:
        if isinstance(item, dict) and isinstance(item.get("modelVersionId"), int) and item["modelVersionId"] not in seen_versions:
            seen_versions.add(item["modelVersionId"])
            wanted.append({"versionId": item["modelVersionId"], "type": item.get("type"), "strength": _number(item.get("weight", item.get("strength")))})
    for item in meta.get("resources") or []:
        if isinstance(item, dict) and isinstance(item.get("hash"), str) and _HASH.match(item["hash"]):
            if item["hash"].lower() not in seen_hashes:
                seen_hashes.add(item["hash"].lower())
                wanted.append({"hash": item["hash"], "name": item.get("name"), "type": item.get("type"), "strength": _number(item.get("weight"))})
    for key, value in (meta.get("hashes") or {}).items():
        if isinstance(value, str) and _HASH.match(value) and value.lower() not in seen_hashes:
            seen_hashes.add(value.lower())
            kind, _, name = str(key).partition(":")
            wanted.append({"hash": value, "name": name or None, "type": kind, "strength": None})
    return wanted


async def _resolve(client: CivitaiClient, want: dict[str, Any]) -> dict[str, Any]:
    """A resource with CivitAI's names for it; unresolved ones keep what the image said."""
    item = {
        "modelType": want.get("type"),
        "modelName": want.get("name"),
        "versionName": None,
        "versionId": want.get("versionId"),
        "baseModel": None,
        "strength": want.get("strength"),
        "hash": want.get("hash"),
    }
    try:
        if want.get("versionId") is not None:
            version, _origin = await client.model_version(want["versionId"])
        else:
            version = await client.get_json(
                client.base_url, f"/api/v1/model-versions/by-hash/{want['hash']}", None, f"the file with hash {want['hash']}", longest_wait_s=5.0
            )
    except (NotFound, UpstreamError, UpstreamTimeout):  # one unknown resource does not spoil the rest
        return item
    model = version.get("model") if isinstance(version.get("model"), dict) else {}
    item.update(
        modelType=model.get("type") or item["modelType"],
        modelName=model.get("name") or item["modelName"],
        versionName=version.get("name"),
        versionId=version.get("id") if isinstance(version.get("id"), int) else item["versionId"],
        baseModel=version.get("baseModel"),
    )
    return item


def _with_catalog(index: CivitaiIndex, item: dict[str, Any]) -> dict[str, Any]:
    version_id = item.get("versionId")
    slot = index.status(version_id) if isinstance(version_id, int) else None
    entry = index.entry(version_id) if isinstance(version_id, int) else None
    item["catalog_status"] = status_name(slot) if slot is not None else "not_found"
    item["catalog_file"] = entry.file if entry is not None else None
    return item


def _prompt_loras(meta: dict[str, Any], resources: list[dict[str, Any]], index: CivitaiIndex) -> list[dict[str, Any]]:
    """LoRAs the prompt names (`<lora:name:0.8>`), matched to a resolved resource of that name when there is one."""
    prompt = meta.get("prompt") if isinstance(meta.get("prompt"), str) else ""
    found = []
    for name, strength in PROMPT_LORA.findall(prompt):
        match = next(
            (r for r in resources if name.lower() in {str(r.get("modelName") or "").lower(), str(r.get("hash") or "").lower()}
             or name.lower() == str(r.get("catalog_file") or "").rsplit(".", 1)[0].lower()),
            None,
        )
        found.append(
            {
                "name": name,
                "strength": _number(strength) if strength else None,
                "versionId": match.get("versionId") if match else None,
                "catalog_status": match.get("catalog_status") if match else "not_found",
                "catalog_file": match.get("catalog_file") if match else None,
            }
        )
    return found


def _workflow_family(resources: list[dict[str, Any]], image: dict[str, Any]) -> str | None:
    checkpoint = next((r for r in resources if str(r.get("modelType") or "").lower() == "checkpoint"), None)
    base = (checkpoint or {}).get("baseModel") or image.get("baseModel")
    family = base_family(base if isinstance(base, str) else None)
    return family.name if family is not None else None


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None

