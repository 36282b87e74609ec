"""The schemas of the bodies the service answers with (components/schemas)."""

from __future__ import annotations

from ...map.status import Status
from ..events import MAX_DETAILED
from .build import Schema, const, nullable, obj, ref, string
from .library import LIBRARY_SCHEMAS
from .panel import IMAGE_SCHEMAS, PARTIAL_BYTES, STATUSES

STATUS_MEANINGS = "; ".join(f"`{status.value}`: {status.description}" for status in Status)


VERSION_KEYS = {"propertyNames": {"pattern": "^[0-9]+$"}}
NAMED_VERSION: Schema = {"type": "integer", "minimum": 1, "description": "The version a URL or AIR named (adds by reference only)."}


SCHEMAS: dict[str, Schema] = {
    "Error": obj(
        {"detail": string("One sentence for a person."), "code": string("A machine-readable code, e.g. `not_ready`.")},
        closed=True,
    ),
    "Health": obj({"status": const("ok")}),
    "ApiHealth": obj(
        {
            "status": const("ok"),
            "authenticated": {"type": "boolean", "description": "Whether the X-API-Key or Bearer key sent is right."},
            "app_version": string("This service's version."),
        },
        closed=True,
    ),
    "Ready": obj(
        {
            "ready": {"type": "boolean"},
            "index": obj(
                {
                    "state": {"type": "string", "enum": ["building", "ready"]},
                    "versions": {"type": "integer", "minimum": 0},
                    "files_on_disk": {"type": "integer", "minimum": 0},
                }
            ),
            "watcher": obj(
                {
                    "state": string("`starting`, `running` (needed for ready), `restarting` or `stopped`."),
                    "mode": string("How changes are noticed: `inotify`, `polling`, or `rescan` (timed rescans)."),
                }
            ),
            "catalogs": obj({"models": ref("CatalogState"), "loras": ref("CatalogState")}),
            "model_folders": obj(
                {
                    "configured": {"type": "integer", "minimum": 0, "description": "MODELS_DIR and the EXTRA_MODEL_PATHS folders."},
                    "missing_or_unreadable": {"type": "integer", "minimum": 0},
                    "offline": {
                        "type": "integer",
                        "minimum": 0,
                        "description": "Roots that cannot be read now (gone, or an unmounted volume): what only they could hold is `unavailable`.",
                    },
                }
            ),
            "hashing": ref("HashProgress"),
        }
    ),
    "HashProgress": obj(
        {
            "state": {
                "type": "string",
                "enum": ["off", "starting", "hashing", "identifying", "idle", "failed"],
                "description": "`failed`: the hash store cannot be opened (`last_error` says why); nothing is hashed this run.",
            },
            "files_on_disk": {"type": "integer", "minimum": 0},
            "files_hashed": {"type": "integer", "minimum": 0, "description": "Files with a known SHA256 (this run or an earlier one)."},
            "files_to_hash": {"type": "integer", "minimum": 0},
            "bytes_to_hash": {"type": "integer", "minimum": 0},
            "bytes_hashed": {"type": "integer", "minimum": 0, "description": "Of `bytes_to_hash`, in this pass."},
            "rate_mb_s": nullable("number", "Hashing speed in this pass, MB/s."),
            "seconds_left": nullable("number", "At that speed."),
            "identified": {"type": "integer", "minimum": 0, "description": "Files CivitAI named a version for."},
            "unknown": {"type": "integer", "minimum": 0, "description": "Files CivitAI does not know (asked again after a day)."},
            "waiting_for_lookup": {"type": "integer", "minimum": 0},
            "civitai_calls": {"type": "integer", "minimum": 0},
            "hashed_this_run": {"type": "integer", "minimum": 0},
            "identified_by_sidecar": {
                "type": "integer",
                "minimum": 0,
                "description": "Files identified by another tool's sidecar, not hashed yet (hashed last, at low priority, to confirm).",
            },
            "sidecars_caught": {"type": "integer", "minimum": 0, "description": "Sidecars whose SHA256 the file's bytes proved wrong, this run."},
            "last_error": nullable("string", "Why the last lookup on CivitAI failed, until one succeeds."),
        },
        required=("state",),
    ),
    "CatalogState": obj(
        {
            "state": {"type": "string", "enum": ["ok", "unusable", "unwritable"]},
            "reason": string("Why the catalog cannot be used or changed (only when `state` is not `ok`)."),
            "entries_with_unusable_ids": {
                "type": "integer",
                "minimum": 0,
                "description": "Entries left out of the map because a CivitAI id is not a positive whole number (kept in the file).",
            },
        },
        required=("state", "entries_with_unusable_ids"),
    ),
    "MapEntry": obj(
        {
            "file": string("The file name."),
            "dest": string("The folder under ComfyUI's models folder, as the catalog says."),
            "name": string("The display name (the file name when the catalog has none)."),
            "base_model": nullable("string"),
            "status": {
                "type": "string",
                "enum": STATUSES,
                "description": f"{STATUS_MEANINGS}. Clients treat a status they do not know as catalogued.",
            },
            "local_file": string(
                "Present under another name or folder: the file (folder/name) whose SHA256 is the entry's `hash`, or that "
                "CivitAI names as this version."
            ),
            "hash_mismatch": {"type": "boolean", "description": "The file on disk is not the bytes the entry's `hash` names."},
            "dl_bytes": {"type": "integer", "minimum": 0, "description": "Bytes downloaded so far (only while `downloading`)."},
            "dl_total": nullable("integer", "The file's size when known (only while `downloading`)."),
            "partial_bytes": PARTIAL_BYTES,
            "dl_error": {**ref("DownloadError"), "description": "The last download of this file failed (until the next one starts)."},
            "civitai_model_id": nullable("integer"),
            "catalog": {
                "type": ["string", "null"],
                "enum": ["models", "loras", None],
                "description": "null: a version identified on disk that no catalog lists (SHOW_UNCATALOGUED).",
            },
            "identified_by": {
                "type": "string",
                "enum": ["hash", "sidecar"],
                "description": "Only with `catalog: null`: known by the file's SHA256 (`hash`), or by another tool's sidecar "
                "until the background hasher confirms it (`sidecar`).",
            },
            "size_gb": {"type": "number", "description": "The file's size in GB (CivitAI's sizeKB / 1,000,000), when the catalog says."},
            "added_at": string("When this service added the entry (UTC, `2026-12-07T00:30:00Z`); absent for entries added otherwise."),
            "trigger_words": {"type": "array", "items": {"type": "string"}, "description": "The catalog's trigger words (at most 50), when it has any."},
            "preview": string("Only while `present`: where this service serves the preview image beside the file (a small WebP; "
                              "`?full=true` for the image itself)."),
        },
        required=("file", "dest", "name", "base_model", "status", "civitai_model_id", "catalog"),
        closed=True,
    ),
    "CivitaiMap": obj(
        {
            "by_version": {
                "type": "object",
                "description": "Every catalogued CivitAI version, keyed by version id.",
                **VERSION_KEYS,
                "additionalProperties": ref("MapEntry"),
            },
            "by_model": {
                "type": "object",
                "description": "The catalogued version ids of each CivitAI model, keyed by model id.",
                **VERSION_KEYS,
                "additionalProperties": {"type": "array", "items": {"type": "integer"}},
            },
        },
        closed=True,
    ),
    "Added": obj(
        {
            "status": const("added"),
            "file": string(),
            "name": string(),
            "category": string("The category id in models.json, e.g. `checkpoints`."),
            "dest": string(),
            "version_id": NAMED_VERSION,
        },
        required=("status", "file", "name", "category", "dest"),
        closed=True,
    ),
    "AlreadyExists": obj(
        {
            "status": const("already_exists"),
            "file": nullable("string", "The catalogued file name (null if the entry has none)."),
            "version_id": NAMED_VERSION,
        },
        required=("status", "file"),
        closed=True,
    ),
    "Restricted": obj(
        {"status": const("restricted"), "reason": string("Why CivitAI does not allow the download."), "version_id": NAMED_VERSION},
        required=("status", "reason"),
        closed=True,
    ),
    "Promoted": obj(
        {"status": const("promoted"), "file": nullable("string"), "category": string("The category id in loras.json.")},
        closed=True,
    ),
    "Removed": obj(
        {
            "status": const("removed"),
            "file": string(),
            "catalog": {"type": "string", "enum": ["models", "loras"], "description": "The catalog it left."},
            "catalogs": {
                "type": "array",
                "items": {"type": "string", "enum": ["models", "loras"]},
                "description": "Every catalog it left: both, when a promote cut short had left it in each.",
            },
        },
        closed=True,
    ),
    "DownloadStarted": obj(
        {
            "status": {"type": "string", "enum": ["queued", "downloading"], "description": "`downloading` when that file was already under way."},
            "file": string(),
            "job": string("The job's id, for `GET /api/admin/downloads` and `DELETE /api/admin/downloads/{job}`."),
        },
        closed=True,
    ),
    "NewerVersion": obj(
        {
            "id": {"type": "integer", "minimum": 1},
            "name": nullable("string"),
            "base_model": nullable("string"),
            "published_at": nullable("string"),
            "early_access": {"type": "boolean"},
            "early_access_ends_at": nullable("string"),
            "paid": {"type": "boolean"},
            "availability": nullable("string", "CivitAI's availability, e.g. Public, EarlyAccess, Private."),
        },
        closed=True,
    ),
    "ModelUpdates": obj(
        {
            "state": {"type": "string", "enum": ["idle", "running"]},
            "checked_at": nullable("number", "When the last check started (Unix time)."),
            "models": {
                "type": "array",
                "items": obj(
                    {
                        "model_id": {"type": "integer", "minimum": 1},
                        "name": nullable("string"),
                        "catalogued_versions": {"type": "array", "items": {"type": "integer"}},
                        "newer": {"type": "array", "items": ref("NewerVersion")},
                    },
                    closed=True,
                ),
            },
            "failures": {
                "type": "array",
                "items": obj({"model_ids": {"type": "array", "items": {"type": "integer"}}, "code": string(), "error": string()}, closed=True),
            },
        },
        closed=True,
    ),
    "UpdateCheckStarted": obj({"status": const("running"), "models": {"type": "integer", "minimum": 0}}, closed=True),
    **IMAGE_SCHEMAS,
    **LIBRARY_SCHEMAS,
    "AlreadyPresent": obj({"status": const("already_present"), "file": string()}, closed=True),
    "DownloadJob": obj(
        {
            "job": string(),
            "file": string(),
            "dest": string("The catalog's folder for the file."),
            "version_id": {"type": ["integer", "null"], "minimum": 1, "description": "null: a file from Hugging Face a workflow named."},
            "state": {"type": "string", "enum": ["queued", "downloading", "verifying", "done", "failed", "cancelled"]},
            "bytes": {"type": "integer", "minimum": 0},
            "total": nullable("integer", "The file's size, once known."),
            "speed": {"type": "integer", "minimum": 0, "description": "Bytes per second, over about the last second."},
            "error": nullable("string", "Why it failed, for a person."),
            "error_code": nullable("string", "Why it failed, for a machine (`hash_mismatch`, `civitai_key_required`, `no_space`, ...)."),
            "created_at": {"type": "number"},
            "started_at": nullable("number"),
            "finished_at": nullable("number"),
        },
        closed=True,
    ),
    "Downloads": obj({"downloads": {"type": "array", "items": ref("DownloadJob")}}, closed=True),
    "ImportAnswer": obj(
        {
            "status": {"type": "string", "enum": ["imported", "dry_run"]},
            "added": {
                "type": "array",
                "items": obj(
                    {
                        "file": string(),
                        "dest": string(),
                        "version_id": {"type": "integer"},
                        "name": string(),
                        "category": string(),
                    }
                ),
            },
            "skipped": {
                "type": "array",
                "items": obj(
                    {
                        "file": string(),
                        "dest": string(),
                        "version_id": nullable("integer"),
                        "reason": string(
                            "`version_in_catalog`, `file_in_catalog`, `another_file_of_this_version`, `restricted` or `not_mappable`."
                        ),
                        "detail": nullable("string"),
                    }
                ),
            },
            "not_identified": obj(
                {
                    "waiting_to_be_hashed": {"type": "integer", "minimum": 0},
                    "waiting_for_civitai": {"type": "integer", "minimum": 0},
                    "unknown_to_civitai": {"type": "integer", "minimum": 0},
                }
            ),
            "not_identified_files": {
                "type": "array",
                "description": "The files no version is known for, by name (the first 1,000 in path order).",
                "items": obj(
                    {
                        "file": string(),
                        "dest": string(),
                        "why": {"type": "string", "enum": ["waiting_to_be_hashed", "waiting_for_civitai", "unknown_to_civitai"]},
                    },
                    required=("file", "dest", "why"),
                ),
            },
            "not_identified_count": {"type": "integer", "minimum": 0, "description": "All files no version is known for."},
        },
        required=("status", "added", "skipped", "not_identified", "not_identified_files", "not_identified_count"),
    ),
    "DownloadCancelled": obj(
        {
            "status": {
                "type": "string",
                "enum": ["cancelled", "removed", "done", "failed"],
                "description": "`removed`: the job had ended and is forgotten. `done` / `failed`: the cancel came while the "
                "verified file was being placed, so it did not stop the download; this is how it ended (`detail` says so).",
            },
            "job": string(),
            "detail": string("Why nothing was cancelled, when nothing was."),
        },
        required=("status", "job"),
        closed=True,
    ),
    "SnapshotEvent": obj(
        {"etag": string("The ETag of the map as it is now."), "etag_gzip": string("The same, for the gzip answer.")},
        required=("etag",),
    ),
    "DownloadError": obj(
        {
            "code": string("Why, for a machine (`connection_lost`, `hash_mismatch`, `write_failed`, ...)."),
            "detail": string("Why, for a person."),
            "at": {"type": "number", "description": "When it failed (Unix time)."},
        },
        closed=True,
    ),
    "ChangeEvent": obj(
        {
            "etag": string("The ETag of the map after this change."),
            "etag_gzip": string("The same, for the gzip answer."),
            "changes": {
                "type": "object",
                **VERSION_KEYS,
                "additionalProperties": {
                    "type": ["string", "null"],
                    "enum": [*STATUSES, None],
                    "description": "The version's new status; null when it left the map.",
                },
            },
            "details": {
                "type": "object",
                **VERSION_KEYS,
                "description": "For changed versions the map says more about: the fields beside the status, as in the map "
                "(`dl_bytes`, `dl_total`, `partial_bytes`, `dl_error`, `local_file`, `hash_mismatch`). Absent from a change of "
                f"more than {MAX_DETAILED:,} versions: fetch the map.",
                "additionalProperties": {"type": "object"},
            },
        },
        required=("etag", "changes"),
    ),
    "OpenApiDocument": obj(
        {"openapi": string(), "info": {"type": "object"}, "paths": {"type": "object"}},
        required=("openapi", "info", "paths"),
    ),
}
