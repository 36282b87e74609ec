"""What other model managers write beside a model file, read for its SHA256 and CivitAI ids.

Each format is one `Sidecar`: the suffix it adds to the model's stem, the tool that writes
it, the fields read, and a pure function from the sidecar's bytes to a `Hint`. The README's
table of formats is checked against `SIDECARS` by a test.

Every sidecar is hostile until proven otherwise: it is size-capped before it is read, parsed
with orjson (which refuses bytes that are not UTF-8 and nesting deeper than it allows), and
only exact types are taken (an id is a positive int up to `map.entry.MAX_ID`, never `true` or "12").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from ..civitai.lookup import Identity, identity_of
from ..map.entry import json_id, sha256_hex

MAX_SIDECAR_BYTES = 2 * 1024 * 1024  # larger sidecars are not read (a warning says so)
SIZE_KB_SLACK = 1024  # CivitAI's sizeKB is a float of KiB: a size within this many bytes agrees


class Refused(ValueError):
    """A sidecar that cannot be trusted or read; the message says why, for the log."""


@dataclass(frozen=True, slots=True)
class Hint:
    """What a sidecar says of its model file: its SHA256 and, when it has them, the CivitAI
    version (ids, names, base model) as an `Identity` that spares the lookup."""

    sha256: str
    sidecar: str  # the sidecar's file name
    tool: str
    identity: Identity | None = None


@dataclass(frozen=True, slots=True)
class Sidecar:
    """One format: `<model stem><suffix>`, written by `tool`, from which `fields` are read."""

    suffix: str
    tool: str
    fields: tuple[str, ...]
    parse: Callable[[bytes, str, int], Hint]  # (sidecar bytes, model file name, model size) -> Hint; raises Refused


def _id(value: object) -> int | None:
    return json_id(value)


def _text(value: object) -> str | None:
    return value[:200] if isinstance(value, str) and value else None


def _document(data: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise Refused(f"not JSON ({str(exc).split(':')[0]})") from None
    if not isinstance(doc, dict):
        raise Refused(f"a JSON {type(doc).__name__}, not an object")
    return doc


def _sha256_field(doc: dict[str, Any], *keys: str) -> str:
    for key in keys:
        sha256 = sha256_hex(doc.get(key))
        if sha256 is not None:
            return sha256
    raise Refused("no SHA256 in it")


def _version_identity(version: object, file_name: str, size: int, sha256: str | None) -> tuple[str, Identity | None]:
    """A CivitAI model-version body (as CivitAI answers it, kept by Civitai Helper and LoRA Manager):
    the SHA256 of the file named like ours (else the only one, else the one with `sha256`) and
    the identity of that version. Refused when its size is not the file's."""
    if not isinstance(version, dict):
        raise Refused("its version is not an object")
    files = [file for file in version.get("files") or () if isinstance(file, dict)] if isinstance(version.get("files"), list) else []
    chosen = next((file for file in files if file.get("name") == file_name), None)
    if chosen is None and sha256 is not None:
        chosen = next((file for file in files if isinstance(file.get("hashes"), dict) and sha256_hex(file["hashes"].get("SHA256")) == sha256), None)
    if chosen is None and len(files) == 1:
        chosen = files[0]
    if chosen is not None:
        size_kb = chosen.get("sizeKB")
        if isinstance(size_kb, int | float) and not isinstance(size_kb, bool) and abs(size_kb * 1024 - size) > SIZE_KB_SLACK:
            raise Refused(f"it describes a file of {size_kb * 1024:.0f} bytes; this one has {size}")
        hashes = chosen.get("hashes")
        listed = sha256_hex(hashes.get("SHA256")) if isinstance(hashes, dict) else None
        if sha256 is None:
            sha256 = listed
        elif listed is not None and listed != sha256:
            raise Refused("its two SHA256 values disagree")
    if sha256 is None:
        raise Refused("no SHA256 in it")
    identity = None
    if chosen is not None and _id(version.get("id")) is not None:
        identity = identity_of(version, chosen, sha256, 0.0)
    elif _id(version.get("id")) is not None:
        identity = identity_of(version, {"name": file_name, "hashes": {"SHA256": sha256.upper()}}, sha256, 0.0)
    if identity is None and _id(version.get("id")) is not None:  # a version of the wrong types: none of it is trusted
        raise Refused("its CivitAI version has an id, name, base model or type of the wrong type")
    return sha256, identity


def civitai_info(data: bytes, file_name: str, size: int) -> Hint:
    """Civitai Helper (A1111 / Forge) and sd-civitai-browser: `<name>.civitai.info`, CivitAI's
    model-version body as it answered it."""
    sha256, identity = _version_identity(_document(data), file_name, size, None)
    return Hint(sha256, "", "Civitai Helper", identity)


def lora_manager(data: bytes, file_name: str, size: int) -> Hint:
    """LoRA Manager: `<name>.metadata.json`, its own record with `sha256`, `size`, and CivitAI's
    version body under `civitai`."""
    doc = _document(data)
    sha256 = _sha256_field(doc, "sha256")
    if type(doc.get("size")) is int and doc["size"] != size:
        raise Refused(f"it describes a file of {doc['size']} bytes; this one has {size}")
    civitai = doc.get("civitai")
    identity = None
    if isinstance(civitai, dict) and _id(civitai.get("id")) is not None:
        _, identity = _version_identity(civitai, file_name, size, sha256)
        if identity is not None and identity.base_model is None and _text(doc.get("base_model")):
            identity = dataclasses.replace(identity, base_model=_text(doc.get("base_model")))
    return Hint(sha256, "", "LoRA Manager", identity)


def stability_matrix(data: bytes, file_name: str, size: int) -> Hint:
    """Stability Matrix: `<name>.cm-info.json` (its ConnectedModelInfo): `Hashes.SHA256`,
    `ModelId`, `VersionId`, `ModelName`, `VersionName`, `ModelType`, `BaseModel`, `TrainedWords`."""
    doc = _document(data)
    hashes = doc.get("Hashes")
    sha256 = sha256_hex(hashes.get("SHA256")) if isinstance(hashes, dict) else None
    if sha256 is None:
        raise Refused("no SHA256 in it")
    version_id, model_id = _id(doc.get("VersionId")), _id(doc.get("ModelId"))
    identity = None
    if version_id is not None:
        model_type = doc.get("ModelType")
        version = {
            "id": version_id,
            "modelId": model_id,
            "name": _text(doc.get("VersionName")),
            "baseModel": _text(doc.get("BaseModel")),
            "model": {"name": _text(doc.get("ModelName")), "type": model_type if isinstance(model_type, str) else None},
        }
        words = doc.get("TrainedWords")
        if isinstance(words, list) and all(isinstance(word, str) for word in words):
            version["trainedWords"] = words[:100]
        file = {"name": file_name, "sizeKB": size / 1024, "type": "Model", "hashes": {"SHA256": sha256.upper()}, "primary": True}
        identity = identity_of(version, file, sha256, 0.0)
    return Hint(sha256, "", "Stability Matrix", identity)


def sha256_file(data: bytes, file_name: str, size: int) -> Hint:
    """A1111-family tools and `sha256sum`: `<name>.sha256`, the hex digest (maybe followed by
    the file's name)."""
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise Refused("not plain ASCII text") from None
    sha256 = sha256_hex(text.split()[0] if text else "")
    if sha256 is None:
        raise Refused("it does not start with a SHA256")
    return Hint(sha256, "", "SHA256 file")


# In the order they are tried: the first one that can be trusted is the hint.
SIDECARS: tuple[Sidecar, ...] = (
    Sidecar(".metadata.json", "LoRA Manager", ("sha256", "size", "base_model", "civitai.id", "civitai.modelId", "civitai.name", "civitai.model.name", "civitai.model.type", "civitai.baseModel", "civitai.files[].hashes.SHA256"), lora_manager),
    Sidecar(".cm-info.json", "Stability Matrix", ("Hashes.SHA256", "ModelId", "VersionId", "ModelName", "VersionName", "ModelType", "BaseModel", "TrainedWords"), stability_matrix),
    Sidecar(".civitai.info", "Civitai Helper", ("id", "modelId", "name", "baseModel", "model.name", "model.type", "trainedWords", "files[].name", "files[].sizeKB", "files[].hashes.SHA256"), civitai_info),
    Sidecar(".sha256", "SHA256 file", ("the hex digest",), sha256_file),
)
