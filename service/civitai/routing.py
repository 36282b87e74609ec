"""Turns a CivitAI model-version body (GET /api/v1/model-versions/{id}) into a catalog entry."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from ..disk.names import MODEL_EXTENSIONS, check_file_name, is_model_file
from ..errors import ServiceError, Unprocessable, UpstreamError
from ..map.entry import MAX_ID, json_id, sha256_hex


@dataclass(frozen=True, slots=True)
class Family:
    """A CivitAI base-model family: how to recognise it and where ComfyUI loads it from.

    `checkpoint_folder` is where a Checkpoint of the family goes: "checkpoints" (all-in-one
    files), "diffusion_models" (diffusion-only files, loaded by ComfyUI's UNETLoader), or
    "by_file" when the family ships both and the file itself says which (see `_diffusion_only`).
    """

    name: str
    pattern: re.Pattern[str]
    checkpoint_folder: str = "checkpoints"
    lora_category: str = "other_loras"
    video: bool = False  # it makes videos (an image's workflow is then t2v or i2v)


def _family(name: str, pattern: str, checkpoint_folder: str = "checkpoints", lora_category: str = "other_loras", *, video: bool = False) -> Family:
    return Family(name, re.compile(pattern, re.IGNORECASE), checkpoint_folder, lora_category, video)


# CivitAI's base-model strings by family, first match wins. A new family is one line here.
# Patterns match families, not exact strings: "Flux.1 D", "Flux.1 Kontext", "Flux.2 Klein 4B",
# "Wan Video 2.5 T2V", "LTXV2", "ZImageTurbo" ... (tests/test_mapping.py lists the real strings).
FAMILIES: tuple[Family, ...] = (
    _family("flux", r"\bflux(?![a-z])", "diffusion_models", "flux_loras"),
    _family("wan", r"\bwan(?![a-z])", "diffusion_models", "wan_loras", video=True),
    _family("hunyuan_video", r"\bhunyuan[\s_-]*video\b", "diffusion_models", video=True),
    _family("cogvideox", r"\bcog[\s_-]*video[\s_-]*x\b", "diffusion_models", video=True),
    _family("ltxv", r"\bltx(?:v|[\s_-]*video)?(?![a-z])", "diffusion_models", video=True),
    _family("mochi", r"\bmochi\b", "diffusion_models", video=True),
    _family("chroma", r"\bchroma\b", "diffusion_models"),
    _family("qwen", r"\bqwen(?![a-z])", "diffusion_models"),
    _family("hidream", r"\bhi[\s_-]*dream\b", "diffusion_models"),
    _family("z_image", r"\bz[\s_-]*image", "diffusion_models"),
    _family("lumina", r"\blumina\b", "by_file"),
    _family("auraflow", r"\bpony[\s_-]*v[\s_-]*7\b|\baura[\s_-]*flow\b"),  # Pony V7 is AuraFlow, not SDXL
    _family("sdxl", r"\bsdxl(?![a-z])", lora_category="sdxl_loras"),
    _family("pony", r"\bpony\b", lora_category="sdxl_loras"),
    _family("illustrious", r"\billustrious\b", lora_category="sdxl_loras"),
    _family("noobai", r"\bnoob[\s_-]*ai\b", lora_category="sdxl_loras"),
    _family("sd15", r"\bsd[\s_-]*1\.[45]\b", lora_category="sd15_loras"),
)
# In a family that ships both kinds, a file whose name says it holds only the diffusion model
# (e.g. "lumina_2_model_bf16.safetensors", "netayume_unet_v3.safetensors") goes to
# diffusion_models; any other (e.g. "lumina_2.safetensors", the all-in-one) to checkpoints.
_DIFFUSION_ONLY_NAME = re.compile(r"(?<![a-z])(?:unet|dit|diffusion|transformer|model)(?![a-z])", re.IGNORECASE)

# CivitAI model type (lower case) -> (category id, folder under the models folder).
_FOLDER_BY_TYPE: dict[str, tuple[str, str]] = {
    "checkpoint": ("checkpoints", "checkpoints"),
    "lora": ("loras", "loras"),
    "locon": ("loras", "loras"),
    "dora": ("loras", "loras"),
    "vae": ("vae", "vae"),
    "textualinversion": ("embeddings", "embeddings"),
    "controlnet": ("controlnet", "controlnet"),
    "upscaler": ("upscalers", "upscale_models"),
    "hypernetwork": ("hypernetworks", "hypernetworks"),
    "motionmodule": ("animatediff_models", "animatediff_models"),
}
_SUPPORTED_TYPES = "Checkpoint, LORA, LoCon, DoRA, VAE, TextualInversion, Controlnet, Upscaler, Hypernetwork, MotionModule"
_DIFFUSION_MODELS = ("diffusion_models", "diffusion_models")

_CATEGORY_NAMES: dict[str, str] = {
    "checkpoints": "Checkpoints",
    "diffusion_models": "Diffusion Models",
    "upscalers": "Upscalers",
    "sdxl_loras": "SDXL LoRAs",
    "sd15_loras": "SD 1.5 LoRAs",
    "wan_loras": "Wan LoRAs",
    "flux_loras": "Flux LoRAs",
    "other_loras": "Other LoRAs",
    "loras": "LoRAs",
    "vae": "VAE",
    "embeddings": "Embeddings",
    "controlnet": "ControlNet",
    "hypernetworks": "Hypernetworks",
    "animatediff_models": "AnimateDiff Motion Modules",
}

_DOWNLOAD = "download"
_RESTRICTION_REASONS: dict[str, str] = {
    "generation": "CivitAI allows it only for on-site generation, not download.",
    "inferenceonly": "CivitAI allows it only for inference on its own services, not download.",
}
_DEFAULT_RESTRICTION = "CivitAI does not allow it to be downloaded."

# File types that hold the model itself, in order of preference when no usable file is primary.
_MODEL_FILE_TYPES: tuple[str, ...] = ("model", "pruned model")
_KB_PER_GB = 1_000_000  # CivitAI's sizeKB / 1,000,000, as catalogs and the extension count: 6,775,430 KB -> 6.775


@dataclass(frozen=True, slots=True)
class MappedVersion:
    """A model version mapped to a catalog entry, or the reason it cannot be downloaded."""

    entry: dict[str, Any] | None  # None when restricted
    category: str | None  # category id, e.g. "checkpoints"
    restricted_reason: str | None  # set when usageControl is not Download


def _bad_body(what: str) -> UpstreamError:
    return UpstreamError(
        f"CivitAI answered with a model version this service cannot read: {what}.", code="upstream_bad_body"
    )


def base_family(base_model: str | None) -> Family | None:
    """The family of a CivitAI base-model string, if any row of FAMILIES recognises it."""
    if not base_model:
        return None
    return next((family for family in FAMILIES if family.pattern.search(base_model)), None)


def folder_for(model_type: str, base_model: str | None, file_name: str | None = None) -> tuple[str, str]:
    """Return (category id, dest folder) for a CivitAI model type, base model and (for families
    that ship both all-in-one and diffusion-only checkpoints) file name, or raise Unprocessable."""
    if not isinstance(model_type, str) or not model_type.strip():
        raise Unprocessable(
            "This model version has no model type, so there is no ComfyUI folder to put it in.",
            code="unsupported_type",
        )
    folder = _FOLDER_BY_TYPE.get(model_type.strip().lower())
    if folder is None:
        raise Unprocessable(
            f"CivitAI model type {model_type!r} has no ComfyUI folder this service files into "
            f"(supported: {_SUPPORTED_TYPES}).",
            code="unsupported_type",
        )
    family = base_family(base_model)
    if folder[0] != "checkpoints" or family is None:
        return folder
    if family.checkpoint_folder == "diffusion_models":
        return _DIFFUSION_MODELS
    if family.checkpoint_folder == "by_file" and file_name and _DIFFUSION_ONLY_NAME.search(file_name.rsplit(".", 1)[0]):
        return _DIFFUSION_MODELS
    return folder


def lora_category(base_model: str | None) -> str:
    """Return the style-LoRA category id for a LoRA's base model ('other_loras' when no family fits)."""
    family = base_family(base_model)
    return family.lora_category if family is not None else "other_loras"


def category_display_name(category_id: str) -> str:
    """Return the name people see for a category id; unknown ids are title-cased from underscores."""
    known = _CATEGORY_NAMES.get(category_id)
    if known is not None:
        return known
    return " ".join(word[:1].upper() + word[1:] for word in category_id.split("_") if word)


# ---- reading the body ------------------------------------------------------------------------------


def _int_field(body: dict[str, Any], key: str, where: str) -> int:
    """An id (`json_id`): one the map could not show would be written as a bogus id."""
    value = json_id(body.get(key))
    if value is None:
        raise _bad_body(f"{where}'{key}' is missing or not an id (a whole number from 1 to {MAX_ID})")
    return value


def _optional_str(body: dict[str, Any], key: str, where: str) -> str | None:
    """A string field that may be absent or null; blank counts as absent."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad_body(f"{where}'{key}' is not a string")
    return value.strip() or None


def _optional_dict(body: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad_body(f"{where}'{key}' is not an object")
    return value


def _model(body: dict[str, Any]) -> dict[str, Any]:
    model = body.get("model")
    if not isinstance(model, dict):
        raise _bad_body("'model' is missing or not an object")
    return model


def _files(body: dict[str, Any]) -> list[dict[str, Any]]:
    files = body.get("files")
    if not isinstance(files, list):
        raise _bad_body("'files' is missing or not a list")
    for index, file in enumerate(files):
        if not isinstance(file, dict):
            raise _bad_body(f"files[{index}] is not an object")
    return files


def _trigger_words(body: dict[str, Any]) -> list[str]:
    words = body.get("trainedWords")
    if words is None:
        return []
    if not isinstance(words, list) or not all(isinstance(word, str) for word in words):
        raise _bad_body("'trainedWords' is not a list of strings")
    return [word.strip() for word in words if word.strip()]


MAX_SIZE_KB = 10**12  # a petabyte: no model file is larger, and the map shows sizes below it


def _size_gb(file: dict[str, Any]) -> float:
    size_kb = file.get("sizeKB")
    is_number = isinstance(size_kb, int | float) and not isinstance(size_kb, bool)
    if not is_number or not math.isfinite(size_kb) or not 0 <= size_kb < MAX_SIZE_KB:
        raise _bad_body("the model file's 'sizeKB' is missing or not a size (a number of KB from 0 to a petabyte)")
    return round(size_kb / _KB_PER_GB, 3)


# ---- decisions ----------------------------------------------------------------------------------


def _restriction(body: dict[str, Any]) -> str | None:
    usage = _optional_str(body, "usageControl", "")
    if usage is None or usage.lower() == _DOWNLOAD:
        return None
    explanation = _RESTRICTION_REASONS.get(usage.lower(), _DEFAULT_RESTRICTION)
    return f"This version's usage control is {usage!r}: {explanation}"


def _file_type(file: dict[str, Any]) -> str:
    kind = file.get("type")
    return kind.strip().lower() if isinstance(kind, str) else ""


def _choose_file(files: list[dict[str, Any]], version_id: int) -> dict[str, Any]:
    usable = [file for file in files if _file_type(file) in _MODEL_FILE_TYPES]
    listed = [file for file in usable if isinstance(file.get("name"), str) and is_model_file(file["name"])]
    usable = listed or usable  # a file ComfyUI's loaders list before one they do not (x.zip)
    primary = next((file for file in usable if file.get("primary") is True), None)
    if primary is not None:
        return primary
    for kind in _MODEL_FILE_TYPES:
        chosen = next((file for file in usable if _file_type(file) == kind), None)
        if chosen is not None:
            return chosen
    listed = ", ".join(repr(file.get("type"))[:80] for file in files[:20]) or "none"
    raise Unprocessable(
        f"Model version {version_id} has no model file to download (file types listed: {listed}).",
        code="no_model_file",
    )


def display_name(model_name: str | None, version_name: str | None, base_model: str | None, fp: str | None = None) -> str:
    """`<ModelName> <VersionName> [<BaseModel> <FP>]`, the version left out when it is the model's name."""
    return _display_name(model_name, version_name, base_model, fp)


def _display_name(model_name: str | None, version_name: str | None, base_model: str | None, fp: str | None) -> str:
    def folded(text: str | None) -> str:
        return " ".join((text or "").split()).casefold()

    parts = [model_name]
    if folded(version_name) != folded(model_name):
        parts.append(version_name)
    tag = " ".join(part for part in (base_model, fp.upper() if fp else None) if part)
    if tag:
        parts.append(f"[{tag}]")
    return " ".join(" ".join(part for part in parts if part).split())


def _file_fp(file: dict[str, Any]) -> str | None:
    return _optional_str(_optional_dict(file, "metadata", "the model file's "), "fp", "the model file's metadata ")


def _file_hash(file: dict[str, Any]) -> str | None:
    """The file's SHA256 as CivitAI writes it; None when it lists none, or a value that is not one
    (an entry's `hash` is a SHA256 or absent: downloads and duplicates compare it)."""
    value = _optional_str(_optional_dict(file, "hashes", "the model file's "), "SHA256", "the model file's hashes ")
    return value if sha256_hex(value) is not None else None


def _build_entry(body: dict[str, Any], file: dict[str, Any], dest: str, downloaded: bool) -> dict[str, Any]:
    version_id = _int_field(body, "id", "")
    model = _model(body)
    base_model = _optional_str(body, "baseModel", "")
    name = _display_name(
        _optional_str(model, "name", "model "), _optional_str(body, "name", ""), base_model, _file_fp(file)
    )
    if downloaded:
        file_name = check_file_name(file.get("name"), what="CivitAI file name", downloaded=True)
        if not is_model_file(file_name):  # presence would never count it, so it could never show as present
            raise Unprocessable(
                f"Model version {version_id}'s model file {file_name!r} is not a kind ComfyUI's loaders list "
                f"({', '.join(sorted(MODEL_EXTENSIONS))}).",
                code="no_model_file",
            )
    else:  # an import: the entry takes the name the file has on disk, checked there
        file_name = file.get("name") if isinstance(file.get("name"), str) else ""
    entry: dict[str, Any] = {
        "name": name or f"CivitAI model version {version_id}",
        "file": file_name,
        "dest": dest,
        "source": "civitai",
        "civitai_version_id": version_id,
        "civitai_model_id": _int_field(body, "modelId", ""),
        "civitai_file_id": _int_field(file, "id", "the model file's "),
        "size_gb": _size_gb(file),
        "base_model": base_model,
    }
    trigger_words = _trigger_words(body)
    if trigger_words:
        entry["trigger_words"] = trigger_words
    file_hash = _file_hash(file)
    if file_hash is not None:
        entry["hash"] = file_hash
    entry["tags"] = []
    return entry


def version_to_entry(version: object, *, downloaded: bool = True) -> MappedVersion:
    """Map a CivitAI model-version body to a catalog entry, or say why CivitAI does not allow its
    download. `downloaded`: the file will be downloaded under CivitAI's name (an add), so the name
    must leave room for `.part`; an import keeps the name the file has on disk."""
    if not isinstance(version, dict):
        raise _bad_body(f"the body is {type(version).__name__}, not an object")
    version_id = _int_field(version, "id", "")
    _int_field(version, "modelId", "")
    reason = _restriction(version)
    if reason is not None:
        return MappedVersion(entry=None, category=None, restricted_reason=reason)
    model_type = _optional_str(_model(version), "type", "model ")
    base_model = _optional_str(version, "baseModel", "")
    folder_for(model_type or "", base_model)  # an unsupported type is refused before files are looked at
    file = _choose_file(_files(version), version_id)
    name = file.get("name") if isinstance(file.get("name"), str) else None
    category, dest = folder_for(model_type or "", base_model, name)
    return MappedVersion(entry=_build_entry(version, file, dest, downloaded), category=category, restricted_reason=None)


def file_sha256(version: object, file_name: str) -> str | None:
    """The SHA256 (lower-case hex) CivitAI lists for a version's file of that name, else for the
    file an add would choose; None when it lists none that is a SHA256."""
    if not isinstance(version, dict) or not isinstance(version.get("files"), list):
        return None
    files = [file for file in version["files"] if isinstance(file, dict)]
    named = [file for file in files if file.get("name") == file_name]
    try:
        chosen = named[0] if named else _choose_file(files, 0)
    except ServiceError:
        return None
    hashes = chosen.get("hashes")
    value = hashes.get("SHA256") if isinstance(hashes, dict) else None
    return sha256_hex(value)
