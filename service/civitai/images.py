"""What an image on CivitAI needs: its resources, each matched against the catalog.

The image comes from CivitAI's public `GET /api/v1/images?imageId={id}`: its `meta` holds
`civitaiResources` (version ids and weights, set by CivitAI's own generator), `resources`
(name, type, weight and a short hash, as A1111 records them), `hashes` (`model`,
`lora:<name>`), and the prompt. Each resource is resolved to a model version (by id, else by
hash through `/api/v1/model-versions/by-hash/{hash}`), then given its catalog status from the
index. LoRAs named only in the prompt (`<lora:name:0.8>`) are listed in `detected_deps`,
resolved when a resource of that name was. `detected_type` is the checkpoint's family.

Everything in the answer is written by whoever uploaded the image, so it is read as hostile:
`image_facts` takes only values of the expected shape, caps every string it keeps and how
much of the prompt it scans, and scans the prompt in one linear pass. It is pure, so a large
answer is parsed and read in a worker process (`CivitaiClient.get_reduced`).
"""

from __future__ import annotations

import asyncio
import functools
import re
from dataclasses import dataclass
from typing import Any

from ..errors import NotFound, UpstreamError, UpstreamTimeout
from ..map.index import CivitaiIndex
from ..map.status import status_of as status_name
from .client import BadBody, CivitaiClient
from .routing import base_family

MAX_RESOURCES = 50
MAX_PROMPT_LORAS = 100
PROMPT_SCAN_CHARS = 64 * 1024  # a prompt is scanned this far for `<lora:...>` tags
MAX_NAME_CHARS = 200  # longest name, type or base model echoed back
MAX_ID = 2**63 - 1
_HEX = frozenset("0123456789abcdefABCDEF")
_TAG = re.compile(r"<(?:lora|lyco):", re.IGNORECASE)
MAX_PROMPT_TAGS = 4 * MAX_PROMPT_LORAS  # tags looked at, named or not
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")


@dataclass(frozen=True, slots=True)
class Wanted:
    """One resource the image names: by version id, or by a file hash with what the image calls it."""

    version_id: int | None = None
    hash: str | None = None
    name: str | None = None
    type: str | None = None
    strength: float | None = None


@dataclass(frozen=True, slots=True)
class ImageFacts:
    """What the answer is made of, taken from CivitAI's listing (small, whatever the listing was)."""

    base_model: str | None
    wanted: tuple[Wanted, ...]
    prompt_loras: tuple[tuple[str, float | None], ...]


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
    resources = [_with_catalog(index, item) for item in resolved]
    return {
        "image_id": image_id,
        "resources": resources,
        "detected_deps": _prompt_loras(facts.prompt_loras, resources),
        "detected_type": _workflow_family(resources, facts.base_model),
    }


def image_facts(listing: Any, image_id: int) -> ImageFacts | None:
    """The image's facts from CivitAI's listing; None when the listing does not hold the image.

    Malformed parts are skipped; BadBody when the listing is not one, or when parts were
    malformed and nothing usable is left."""
    items = listing.get("items") if isinstance(listing, dict) else None
    if not isinstance(items, list):
        raise BadBody("no list of images")
    image = next((item for item in items if isinstance(item, dict) and _exact_id(item.get("id")) == image_id), None)
    if image is None:
        return None
    meta = image.get("meta")
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise BadBody("generation data that is not an object")
    skipped = [0]
    wanted = _wanted_resources(meta, skipped)
    prompt = meta.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        skipped[0] += 1
    loras = prompt_loras(prompt) if isinstance(prompt, str) else []
    if skipped[0] and not wanted and not loras:
        raise BadBody("nothing usable in the generation data")
    return ImageFacts(_text(image.get("baseModel")), tuple(wanted[:MAX_RESOURCES]), tuple(loras))


def _wanted_resources(meta: dict[str, Any], skipped: list[int]) -> list[Wanted]:
    """Resources named by the image, without repeats: by version id first, then by hash."""
    wanted: list[Wanted] = []
    seen_versions: set[int] = set()
    seen_hashes: set[str] = set()
    for item in _list(meta, "civitaiResources", skipped):
        version_id = _exact_id(item.get("modelVersionId")) if isinstance(item, dict) else None
        if version_id is None:
            skipped[0] += 1
        elif version_id not in seen_versions:
            seen_versions.add(version_id)
            wanted.append(Wanted(version_id, type=_text(item.get("type")), strength=_number(item.get("weight", item.get("strength")))))
    for item in _list(meta, "resources", skipped):
        sha = _hash(item.get("hash")) if isinstance(item, dict) else None
        if sha is None:
            skipped[0] += not isinstance(item, dict) or item.get("hash") is not None
        elif sha.lower() not in seen_hashes:
            seen_hashes.add(sha.lower())
            wanted.append(Wanted(hash=sha, name=_text(item.get("name")), type=_text(item.get("type")), strength=_number(item.get("weight"))))
    hashes = meta.get("hashes")
    if hashes is not None and not isinstance(hashes, dict):
        skipped[0] += 1
        hashes = None
    for key, value in (hashes or {}).items():
        sha = _hash(value)
        if sha is None:
            skipped[0] += 1
        elif sha.lower() not in seen_hashes:
            seen_hashes.add(sha.lower())
            kind, _, name = key.partition(":")
            wanted.append(Wanted(hash=sha, name=_text(name) or None, type=_text(kind)))
    return wanted


def _list(meta: dict[str, Any], key: str, skipped: list[int]) -> list[Any]:
    value = meta.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        skipped[0] += 1
        return []
    return value


def prompt_loras(prompt: str) -> list[tuple[str, float | None]]:
    """The `<lora:name:weight>` (and `<lyco:...>`) tags of a prompt, as (name, weight), in one
    pass over at most PROMPT_SCAN_CHARS characters: each tag's start is a literal found by the
    regex engine's scan, and its end the next `>`; nothing can backtrack."""
    text = prompt[:PROMPT_SCAN_CHARS]
    found: list[tuple[str, float | None]] = []
    tags = 0
    start = _TAG.search(text)
    while start is not None and tags < MAX_PROMPT_TAGS:
        tags += 1
        end = text.find(">", start.end())
        if end < 0:
            break  # no tag after this one can close either
        name, _, rest = text[start.end() : end].partition(":")
        name = name.strip()
        if name:
            found.append((name[:MAX_NAME_CHARS], _leading_number(rest.partition(":")[0])))
            if len(found) == MAX_PROMPT_LORAS:
                break
        start = _TAG.search(text, end + 1)
    return found


def _leading_number(text: str) -> float | None:
    """The number a weight starts with (`0.8`, `-1`, `.5`, `1.2abc`), or None. The pattern runs
    on at most 32 characters, so whatever it does costs a bounded time."""
    match = _NUMBER.match(text.strip()[:32])
    return float(match.group()) if match else None


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


def version_names(body: Any) -> dict[str, Any]:
    """What the panel shows of a CivitAI version: its names, id and base model, checked and cut
    (pure: a large answer is read in a worker process)."""
    if not isinstance(body, dict):
        raise BadBody("not a model version")
    model = body.get("model") if isinstance(body.get("model"), dict) else {}
    return {
        "modelType": _text(model.get("type")),
        "modelName": _text(model.get("name")),
        "versionName": _text(body.get("name")),
        "versionId": _exact_id(body.get("id")),
        "baseModel": _text(body.get("baseModel")),
    }


def _with_catalog(index: CivitaiIndex, item: dict[str, Any]) -> dict[str, Any]:
    version_id = item.get("versionId")
    slot = index.status(version_id) if isinstance(version_id, int) else None
    entry = index.entry(version_id) if isinstance(version_id, int) else None
    item["catalog_status"] = status_name(slot) if slot is not None else "not_found"
    item["catalog_file"] = entry.file if entry is not None else None
    return item


def _prompt_loras(loras: tuple[tuple[str, float | None], ...], resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """LoRAs the prompt names, matched to a resolved resource of that name when there is one."""
    found = []
    for name, strength in loras:
        wanted = name.lower()
        match = next(
            (r for r in resources if wanted in {str(r.get("modelName") or "").lower(), str(r.get("hash") or "").lower()}
             or wanted == str(r.get("catalog_file") or "").rsplit(".", 1)[0].lower()),
            None,
        )
        found.append(
            {
                "name": name,
                "strength": strength,
                "versionId": match.get("versionId") if match else None,
                "catalog_status": match.get("catalog_status") if match else "not_found",
                "catalog_file": match.get("catalog_file") if match else None,
            }
        )
    return found


def _workflow_family(resources: list[dict[str, Any]], image_base: str | None) -> str | None:
    checkpoint = next((r for r in resources if str(r.get("modelType") or "").lower() == "checkpoint"), None)
    base = (checkpoint or {}).get("baseModel") or image_base
    family = base_family(base)
    return family.name if family is not None else None


def _text(value: object) -> str | None:
    """A string from outside, cut to MAX_NAME_CHARS; None for anything else."""
    return value[:MAX_NAME_CHARS] if isinstance(value, str) else None


def _exact_id(value: object) -> int | None:
    """A CivitAI id: a JSON integer in 1..2**63-1 (not a boolean, not a string)."""
    return value if type(value) is int and 0 < value <= MAX_ID else None


def _hash(value: object) -> str | None:
    """A file hash as images carry them: 8 to 64 hex digits."""
    if isinstance(value, str) and 8 <= len(value) <= 64 and _HEX.issuperset(value):
        return value
    return None


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and len(value) <= 32:
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if number == number and abs(number) < 1e6 else None  # no NaN, no infinities
