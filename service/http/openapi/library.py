"""OpenAPI for the library as a whole: previews, duplicates, and what a workflow needs."""

from __future__ import annotations

from .build import (
    MAX_ID,
    NOT_READY,
    ROUTE_NOT_FOUND,
    UNAUTHORIZED,
    Schema,
    error,
    json_response,
    nullable,
    obj,
    operation,
    ref,
    string,
    switch_parameter,
)

LIBRARY_SCHEMAS: dict[str, Schema] = {
    "WorkflowRequirements": obj(
        {
            "container": {"type": "string", "enum": ["json", "png", "webp"]},
            "models": {
                "type": "array",
                "items": obj(
                    {
                        "name": string("As the workflow names it (a subfolder maybe): `sdxl/model.safetensors`."),
                        "file": string(),
                        "folder": nullable("string", "Where ComfyUI looks for it (null: a node this service does not know)."),
                        "nodes": {"type": "array", "items": {"type": "string"}, "description": "Ids of the nodes that load it."},
                        "node_types": {"type": "array", "items": {"type": "string"}},
                        "state": {
                            "type": "string",
                            "enum": ["present", "in_catalog", "identified", "unknown"],
                            "description": "`present`: on disk (`where`); `in_catalog`: a catalogued version not on disk (a Download "
                            "fetches it); `identified`: a CivitAI version (or a Hugging Face file) the workflow's own `models` entries "
                            "name by URL or hash; `unknown`: none of these.",
                        },
                        "where": string("present: the logical folder and name of the file on disk."),
                        "elsewhere": {"type": "boolean", "description": "present, but not where the workflow names it: the node must be pointed at it."},
                        "version_id": {"type": "integer", "minimum": 1},
                        "status": string("in_catalog: the map's status of that version."),
                        "size": {"type": "integer", "minimum": 0, "description": "Bytes, when known."},
                        "source": {"type": "string", "enum": ["civitai", "huggingface"]},
                        "url": string("From the workflow's own `models` entry."),
                    },
                    required=("name", "file", "folder", "nodes", "node_types", "state"),
                ),
            },
            "counts": obj({state: {"type": "integer", "minimum": 0} for state in ("present", "in_catalog", "identified", "unknown")}),
            "download_bytes": {"type": "integer", "minimum": 0, "description": "What is left to download, of the files whose size is known."},
            "download_sizes_unknown": {"type": "integer", "minimum": 0},
            "listed": {"type": "integer", "minimum": 0},
            "found": {"type": "integer", "minimum": 0, "description": "Models found (the first 2,000 are listed)."},
            "civitai_error": string("Why CivitAI could not be asked about the hashes the workflow embeds."),
            "downloads": {
                "type": "array",
                "description": "With download=true: what was queued (`job`), added first (`added`), or refused and why.",
                "items": {"type": "object"},
            },
        },
        required=("container", "models", "counts", "download_bytes", "download_sizes_unknown", "listed", "found"),
    ),
    "Duplicates": obj(
        {
            "groups": {
                "type": "array",
                "description": "The most space wasted first. Paths that are one file (a hard link, a symlinked folder) count once.",
                "items": obj(
                    {
                        "sha256": string(),
                        "size": {"type": "integer", "minimum": 0, "description": "Bytes of one copy."},
                        "copies": {"type": "integer", "minimum": 2},
                        "wasted_bytes": {"type": "integer", "minimum": 0, "description": "size × (copies − 1)."},
                        "version_id": nullable("integer", "The CivitAI version these bytes are, when known."),
                        "files": {
                            "type": "array",
                            "items": obj({"file": string(), "dest": string(), "path": string("Where it is on this machine.")}, required=("file", "dest", "path")),
                        },
                    },
                    required=("sha256", "size", "copies", "wasted_bytes", "version_id", "files"),
                ),
            },
            "wasted_bytes": {"type": "integer", "minimum": 0},
        },
        required=("groups", "wasted_bytes"),
    ),
}

LIBRARY_PATHS: dict[str, dict[str, Schema]] = {
    "/api/admin/library/duplicates": {
        "get": operation(
            "libraryDuplicates",
            "Files whose bytes are kept in more than one place",
            {
                "200": json_response("Groups of copies with their sizes.", ref("Duplicates")),
                "401": UNAUTHORIZED,
                "409": error("Hashing is off (`hashing_off`, HASHING=off)."),
                "503": NOT_READY,
            },
            description="From the hashes of the files on disk; a file known only by a sidecar is left out until it is hashed.",
        )
    },
    "/api/admin/models/preview/{version_id}": {
        "get": operation(
            "modelPreview",
            "The preview image beside a version's file",
            {
                "200": {
                    "description": "A WebP thumbnail of at most 320 px (or, with full=true, the image itself: PNG, JPEG or WebP, "
                    "its type read from its bytes).",
                    "content": {media: {"schema": {"type": "string", "format": "binary"}} for media in ("image/webp", "image/png", "image/jpeg")},
                },
                "400": error("The version id is not a positive whole number (`invalid_version_id`), or `full` is not true or false (`bad_query`)."),
                "401": UNAUTHORIZED,
                "404": error(f"No preview of that version is on disk, or it is not an image this service serves (`no_preview`); or {ROUTE_NOT_FOUND}."),
                "503": NOT_READY,
            },
            description="The names ComfyUI reads beside a model: `<name>.png|jpg|jpeg|webp`, then `<name>.preview.png|jpg|jpeg|webp`. "
            "The map's `preview` field says where a version has one.",
            parameters=[
                {"name": "version_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID}},
                switch_parameter("full", "true: the image as it is, not the thumbnail."),
            ],
        )
    },
    "/api/admin/workflow/requirements": {
        "post": {
            **operation(
                "workflowRequirements",
                "What a ComfyUI workflow needs, what is here, and one request to fetch the rest",
                {
                    "200": json_response("Each model the workflow loads and where it stands.", ref("WorkflowRequirements")),
                    "400": error(
                        "The body holds no workflow (`no_workflow`), is cut short or damaged, or is not a JSON object "
                        "(`invalid_workflow`); or `download` is not true or false (`bad_query`)."
                    ),
                    "401": UNAUTHORIZED,
                    "413": error("The JSON is over 16 MB, the image over 512 MB, or a text chunk inflates past 16 MB (`too_large`)."),
                    "415": error("Not JSON, PNG or WebP (`unsupported_media_type`)."),
                    "503": NOT_READY,
                },
                description="The body is a workflow as ComfyUI saves it (UI format, `nodes[]` with `widgets_values`), its "
                "API format (`{id: {class_type, inputs}}`), both as `{\"workflow\": ..., \"prompt\": ...}`, or a PNG / WebP "
                "image ComfyUI saved (its `workflow` and `prompt` text chunks, or EXIF tags in a WebP). The image is read as "
                "a stream: its pixels are skipped, never kept. With `download=true`, each model a catalog lists and the disk "
                "lacks is queued, and each CivitAI version found (by the workflow's own `models` entries: URL or hash) is "
                "added to models.json and queued.",
                parameters=[switch_parameter("download", "true: also queue every missing file this service can fetch.")],
            ),
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"type": "object"}},
                    "image/png": {"schema": {"type": "string", "format": "binary"}},
                    "image/webp": {"schema": {"type": "string", "format": "binary"}},
                },
            },
        }
    },
}
