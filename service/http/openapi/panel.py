"""The schemas of the image panel's answer (`GET /api/admin/civitai/image/{image_id}`), and the
fields it shares with the map."""

from __future__ import annotations

from ...civitai.images import DETECTED_TYPES, PANEL_STATUSES
from ...map.status import Status
from .build import Schema, nullable, obj, ref, string

STATUSES = [status.value for status in Status]

PARTIAL_BYTES: Schema = {
    "type": "integer",
    "minimum": 0,
    "description": "`missing` with a partial download no job is writing (stopped, or unchanged for STALE_PART_S): its bytes; "
    "a Download resumes it.",
}
PANEL_FIELDS: dict[str, Schema] = {
    "catalog_status": {
        "type": "string",
        "enum": list(PANEL_STATUSES),
        "description": "The image panel's words: " + "; ".join(f"`{word}`: {meaning}" for word, meaning in PANEL_STATUSES.items()),
    },
    "status": {"type": ["string", "null"], "enum": [*STATUSES, None], "description": "The map's status of the version; null when it has none."},
    "dl_bytes": {"type": "integer", "minimum": 0, "description": "While downloading: bytes so far."},
    "dl_total": {"type": ["integer", "null"], "minimum": 0, "description": "While downloading: bytes in all, null when not known."},
    "partial_bytes": PARTIAL_BYTES,
    "dl_error": ref("DownloadError"),
    "catalog_file": nullable("string", "The file the catalog (or the disk) has it as."),
}
PANEL_REQUIRED = ("catalog_status", "status", "catalog_file")  # the progress fields come only with a download

IMAGE_SCHEMAS: dict[str, Schema] = {
    "ImageResource": obj(
        {
            "modelType": nullable("string"),
            "modelName": nullable("string"),
            "versionName": nullable("string"),
            "versionId": nullable("integer"),
            "baseModel": nullable("string"),
            "strength": nullable("number"),
            "hash": nullable("string", "The hash the image names it by, when it does."),
            **PANEL_FIELDS,
        },
        required=("modelType", "modelName", "versionName", "versionId", "baseModel", "strength", "hash", *PANEL_REQUIRED),
        closed=True,
    ),
    "PromptName": obj(
        {
            "name": string("As the prompt writes it."),
            "weight": nullable("number", "The weight of `<lora:name:weight>`; null for an embedding."),
            "type": {"type": "string", "enum": ["lora", "embedding"]},
            "source": {"type": "string", "enum": ["prompt", "negative_prompt"]},
            "civitai_version_id": nullable("integer", "The version it resolves to: by the image's resources, then by file stems the service knows."),
            "civitai_model_name": nullable("string"),
            "civitai_version_name": nullable("string"),
            "civitai_base_model": nullable("string"),
            "hash": nullable("string"),
            **PANEL_FIELDS,
        },
        required=(
            "name", "weight", "type", "source", "civitai_version_id", "civitai_model_name", "civitai_version_name",
            "civitai_base_model", "hash", *PANEL_REQUIRED,
        ),  # fmt: skip
        closed=True,
    ),
    "ImageResources": obj(
        {
            "image_id": {"type": "integer"},
            "resources": {"type": "array", "items": ref("ImageResource")},
            "detected_deps": {
                "type": "array",
                "description": "The LoRAs (`<lora:name:0.8>`) and embeddings (`embedding:name`) the prompts name, ignoring case.",
                "items": ref("PromptName"),
            },
            "meta": obj(
                {
                    "prompt": string(),
                    "negativePrompt": string(),
                    "steps": {"type": "number"},
                    "sampler": string(),
                    "cfgScale": {"type": "number"},
                    "seed": {"type": "integer", "minimum": 0},
                    "size": string("`832x1216`."),
                },
                required=(),
                closed=True,
            ),
            "detected_type": {"type": "string", "enum": list(DETECTED_TYPES), "description": "Text or image to image or video; `unknown` without generation data."},
            "base_model_family": nullable("string", "The workflow family, from the checkpoint's base model (flux, wan, sdxl, illustrious...)."),
        },
        closed=True,
    ),
}
