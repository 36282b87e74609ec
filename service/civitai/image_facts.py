"""What an image's generation data says, read as hostile: everything in it is written by whoever
uploaded the image. Only values of the expected shape are taken, every string kept is cut,
the prompt is scanned in one linear pass over a bounded prefix. Pure, so a large answer is
parsed and read in a worker process (`CivitaiClient.get_reduced`); what it returns is small
whatever the listing was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..map.entry import json_id
from .client import BadBody

MAX_RESOURCES = 50
MAX_PROMPT_LORAS = 100
PROMPT_SCAN_CHARS = 64 * 1024  # a prompt is scanned this far for `<lora:...>` tags and `embedding:` names
MAX_NAME_CHARS = 200  # longest name, type or base model echoed back
MAX_PROMPT_CHARS = 20_000  # longest prompt echoed back in `meta`
_HEX = frozenset("0123456789abcdefABCDEF")
_TAG = re.compile(r"<(?:lora|lyco):", re.IGNORECASE)
MAX_PROMPT_TAGS = 4 * MAX_PROMPT_LORAS  # tags looked at, named or not
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")
# `embedding:name` (ComfyUI's prompt syntax), the name running to a separator: one character
# class, so the scan is linear.
_EMBEDDING = re.compile(r"\bembedding:([^\s,()\[\]{}<>:|]{1,200})", re.IGNORECASE)
_HIRES = ("Hires upscale", "Hires upscaler", "Hires steps", "Hires resize")


@dataclass(frozen=True, slots=True)
class Wanted:
    """One resource the image names: by version id, or by a file hash with what the image calls it."""

    version_id: int | None = None
    hash: str | None = None
    name: str | None = None
    type: str | None = None
    strength: float | None = None


@dataclass(frozen=True, slots=True)
class PromptName:
    """A model the prompt names: a LoRA (`<lora:name:0.8>`) or an embedding (`embedding:name`)."""

    name: str
    weight: float | None
    type: str  # "lora" or "embedding"
    source: str  # "prompt" or "negative_prompt"


@dataclass(frozen=True, slots=True)
class ImageFacts:
    """What the answer is made of, taken from CivitAI's listing (small, whatever the listing was)."""

    base_model: str | None
    wanted: tuple[Wanted, ...]
    names: tuple[PromptName, ...]
    meta: dict[str, Any] = field(default_factory=dict)
    video: bool = False  # CivitAI says the item is a video
    from_image: bool = False  # the generation started from an image (img2img, a LoadImage node, an i2v model)
    has_meta: bool = False

    @property
    def prompt_loras(self) -> tuple[tuple[str, float | None], ...]:
        """The prompt's LoRAs as (name, weight)."""
        return tuple((n.name, n.weight) for n in self.names if n.type == "lora")


def image_facts(listing: Any, image_id: int) -> ImageFacts | None:
    """The image's facts from CivitAI's listing; None when the listing does not hold the image.

    Malformed parts are skipped; BadBody when the listing is not one, or when parts were
    malformed and nothing usable is left."""
    items = listing.get("items") if isinstance(listing, dict) else None
    if not isinstance(items, list):
        raise BadBody("no list of images")
    image = next((item for item in items if isinstance(item, dict) and exact_id(item.get("id")) == image_id), None)
    if image is None:
        return None
    meta = image.get("meta")
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise BadBody("generation data that is not an object")
    skipped = [0]
    wanted = _wanted_resources(meta, skipped)
    names: list[PromptName] = []
    for key, source in (("prompt", "prompt"), ("negativePrompt", "negative_prompt")):
        value = meta.get(key)
        if value is not None and not isinstance(value, str):
            skipped[0] += 1
        elif isinstance(value, str):
            if source == "prompt":
                names += [PromptName(name, weight, "lora", source) for name, weight in prompt_loras(value)]
            names += [PromptName(name, None, "embedding", source) for name in prompt_embeddings(value)]
    if skipped[0] and not wanted and not names:
        raise BadBody("nothing usable in the generation data")
    return ImageFacts(
        text(image.get("baseModel")),
        tuple(wanted[:MAX_RESOURCES]),
        tuple(names[:MAX_PROMPT_LORAS]),
        _meta(meta, image),
        text(image.get("type")) == "video",
        _starts_from_image(meta, text(image.get("baseModel"))),
        bool(meta),
    )


def _wanted_resources(meta: dict[str, Any], skipped: list[int]) -> list[Wanted]:
    """Resources named by the image, without repeats: by version id first, then by hash."""
    wanted: list[Wanted] = []
    seen_versions: set[int] = set()
    seen_hashes: set[str] = set()
    for item in _list(meta, "civitaiResources", skipped):
        version_id = exact_id(item.get("modelVersionId")) if isinstance(item, dict) else None
        if version_id is None:
            skipped[0] += 1
        elif version_id not in seen_versions:
            seen_versions.add(version_id)
            wanted.append(Wanted(version_id, type=text(item.get("type")), strength=number(item.get("weight", item.get("strength")))))
    for item in _list(meta, "resources", skipped):
        sha = file_hash(item.get("hash")) if isinstance(item, dict) else None
        if sha is None:
            skipped[0] += not isinstance(item, dict) or item.get("hash") is not None
        elif sha.lower() not in seen_hashes:
            seen_hashes.add(sha.lower())
            wanted.append(Wanted(hash=sha, name=text(item.get("name")), type=text(item.get("type")), strength=number(item.get("weight"))))
    hashes = meta.get("hashes")
    if hashes is not None and not isinstance(hashes, dict):
        skipped[0] += 1
        hashes = None
    for key, value in (hashes or {}).items():
        sha = file_hash(value)
        if sha is None:
            skipped[0] += 1
        elif sha.lower() not in seen_hashes:
            seen_hashes.add(sha.lower())
            kind, _, name = key.partition(":")
            wanted.append(Wanted(hash=sha, name=text(name) or None, type=text(kind)))
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


def prompt_embeddings(prompt: str) -> list[str]:
    """The `embedding:name` names of a prompt, in one pass over at most PROMPT_SCAN_CHARS characters."""
    found: list[str] = []
    for match in _EMBEDDING.finditer(prompt[:PROMPT_SCAN_CHARS]):
        name = match.group(1).rstrip(".")
        if name and name.lower() not in {seen.lower() for seen in found}:
            found.append(name[:MAX_NAME_CHARS])
            if len(found) == MAX_PROMPT_LORAS:
                break
    return found


def _meta(meta: dict[str, Any], image: dict[str, Any]) -> dict[str, Any]:
    """The settings the panel shows: the prompts (cut), steps, sampler, CFG, seed and size."""
    width, height = exact_id(image.get("width")), exact_id(image.get("height"))
    size = text(meta.get("Size")) or (f"{width}x{height}" if width and height else None)
    shown = {
        "prompt": meta.get("prompt")[:MAX_PROMPT_CHARS] if isinstance(meta.get("prompt"), str) else None,
        "negativePrompt": meta.get("negativePrompt")[:MAX_PROMPT_CHARS] if isinstance(meta.get("negativePrompt"), str) else None,
        "steps": number(meta.get("steps")),
        "sampler": text(meta.get("sampler")),
        "cfgScale": number(meta.get("cfgScale")),
        "seed": _seed(meta.get("seed")),
        "size": size,
    }
    return {key: value for key, value in shown.items() if value is not None}


def _seed(value: object) -> int | None:
    if type(value) is int and 0 <= value < 2**64:
        return value
    return None


def _starts_from_image(meta: dict[str, Any], base_model: str | None) -> bool:
    """Whether the generation started from an image: A1111's img2img (a denoising strength with no
    hires fix), a ComfyUI workflow that loads an image, or an image-to-video base model."""
    if "Denoising strength" in meta and not any(key in meta for key in _HIRES):
        return True
    comfy = meta.get("comfy")
    if isinstance(comfy, str) and ('"LoadImage"' in comfy or '"LoadImageMask"' in comfy):
        return True
    return bool(base_model and re.search(r"\bi2v\b", base_model[:MAX_NAME_CHARS], re.IGNORECASE))


def _leading_number(text: str) -> float | None:
    """The number a weight starts with (`0.8`, `-1`, `.5`, `1.2abc`), or None. The pattern runs
    on at most 32 characters, so whatever it does costs a bounded time."""
    match = _NUMBER.match(text.strip()[:32])
    return float(match.group()) if match else None


def text(value: object) -> str | None:
    """A string from outside, cut to MAX_NAME_CHARS; None for anything else."""
    return value[:MAX_NAME_CHARS] if isinstance(value, str) else None


def exact_id(value: object) -> int | None:
    """A CivitAI id, or a width or height: a JSON integer in 1..MAX_ID (not a boolean, not a string)."""
    return json_id(value)


def file_hash(value: object) -> str | None:
    """A file hash as images carry them: 8 to 64 hex digits."""
    if isinstance(value, str) and 8 <= len(value) <= 64 and _HEX.issuperset(value):
        return value
    return None


def number(value: object) -> float | None:
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
