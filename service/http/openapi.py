"""The published API description (OpenAPI 3.1), built once and served as bytes.

Every route of the app is described here; tests/test_openapi.py checks both directions
(each route documented, each documented operation routed) and that real answers fit the
schemas, and deploy/schemathesis.sh fuzzes the live service against it. When a handler's
answer changes shape, change its schema here too.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from .. import __version__

Schema = dict[str, Any]

JSON = "application/json"
SSE = "text/event-stream"
MAX_ID = 999_999_999_999  # ids are at most 12 digits (views._version_id, views._ids)
SECURED: list[dict[str, list[str]]] = [{"apiKey": []}, {"bearer": []}]
KEY_IN_URL = "the API key was put in the URL (`key_in_url`): it is only taken from a header"


# ---- small builders -------------------------------------------------------------------------------


def ref(name: str) -> Schema:
    """A reference to a schema under components/schemas."""
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict[str, Schema], *, required: tuple[str, ...] | None = None, closed: bool = False) -> Schema:
    """An object schema; every property is required unless `required` says otherwise."""
    schema: Schema = {"type": "object", "required": list(properties if required is None else required), "properties": properties}
    if closed:
        schema["additionalProperties"] = False
    return schema


def string(description: str | None = None, **extra: Any) -> Schema:
    schema: Schema = {"type": "string", **extra}
    if description:
        schema["description"] = description
    return schema


def const(value: str) -> Schema:
    return {"type": "string", "const": value}


def nullable(type_name: str, description: str | None = None) -> Schema:
    schema: Schema = {"type": [type_name, "null"]}
    if description:
        schema["description"] = description
    return schema


def header(description: str, **schema: Any) -> Schema:
    return {"description": description, "schema": {"type": "string", **schema}}


def json_response(
    description: str, schema: Schema, headers: dict[str, Schema] | None = None, links: dict[str, Schema] | None = None
) -> Schema:
    """A response with a JSON body."""
    response: Schema = {"description": description, "content": {JSON: {"schema": schema}}}
    if headers:
        response["headers"] = headers
    if links:
        response["links"] = links
    return response


def link(operation_id: str, description: str, **parameters: str) -> Schema:
    """An OpenAPI link: what can be done next with values from this answer."""
    return {"operationId": operation_id, "description": description, "parameters": parameters}


RETRY_AFTER = header("Seconds to wait before trying again.", pattern="^[0-9]+$")


def error(description: str, *, retry_after: bool = False) -> Schema:
    """An answer in the error envelope; `description` names the codes it can carry."""
    return json_response(description, ref("Error"), {"Retry-After": RETRY_AFTER} if retry_after else None)


def one_of(*names: str) -> Schema:
    return {"oneOf": [ref(name) for name in names]}


def operation(
    operation_id: str,
    summary: str,
    responses: dict[str, Schema],
    *,
    description: str | None = None,
    parameters: list[Schema] | None = None,
    security: list[dict[str, list[str]]] | None = SECURED,
    tag: str = "catalog",
) -> Schema:
    """One operation; /api/ routes pass the default `security`, the probes pass None."""
    op: Schema = {"operationId": operation_id, "summary": summary, "tags": [tag]}
    if description:
        op["description"] = description
    if parameters:
        op["parameters"] = parameters
    op["security"] = security if security is not None else []
    if security is SECURED:  # every route that needs the key refuses it in the URL
        if "400" in responses:
            responses["400"] = {**responses["400"], "description": f"{responses['400']['description'].rstrip('.')}; or {KEY_IN_URL}."}
        else:
            responses["400"] = error(f"{KEY_IN_URL[:1].upper()}{KEY_IN_URL[1:]}.")
    op["responses"] = responses
    return op


# ---- shared answers -------------------------------------------------------------------------------

UNAUTHORIZED = error("The API key is missing (`missing_api_key`) or wrong (`bad_api_key`).")
NOT_READY = error("The index is still being built (`not_ready`); try again after Retry-After.", retry_after=True)
TOO_LARGE = error("The request body is larger than MAX_BODY_BYTES (`too_large`).")
UNSUPPORTED_MEDIA = error("The request has a body that is not JSON (`unsupported_media_type`); send none.")
CATALOG_BUSY = error("The catalogs kept changing while the change was being saved (`catalog_busy`); nothing was written.")
WRITE_FAILED = error("The catalog could not be saved (`write_failed`); nothing was lost.", retry_after=True)
ROUTE_NOT_FOUND = "there is nothing at this address (`not_found`, e.g. an empty path segment)"


VERSION_ID = {
    "name": "version_id",
    "in": "path",
    "required": True,
    "description": "A CivitAI model-version id, as in CivitAI's URLs (`?modelVersionId=`). Anything else is answered 400.",
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
    "example": 2514310,
}


def ids_parameter(name: str, what: str) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "style": "form",
        "explode": False,
        "description": f"Comma-separated {what} ids (at most 500). With `versions` and/or `models` the answer "
        "holds only those versions (and every version of those models) and carries no ETag.",
        "schema": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": MAX_ID}, "maxItems": 500},
    }


# ---- schemas --------------------------------------------------------------------------------------

VERSION_KEYS = {"propertyNames": {"pattern": "^[0-9]+$"}}

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
                "enum": ["present", "missing", "queued", "downloading", "unavailable"],
                "description": "On disk; not on disk; waiting to download; downloading (with `dl_bytes`, `dl_total`); not on "
                "disk while a root that could hold it is offline. Clients treat a status they do not know as catalogued.",
            },
            "local_file": string(
                "Present under another name or folder: the file (folder/name) whose SHA256 is the entry's `hash`, or that "
                "CivitAI names as this version."
            ),
            "hash_mismatch": {"type": "boolean", "description": "The file on disk is not the bytes the entry's `hash` names."},
            "dl_bytes": {"type": "integer", "minimum": 0, "description": "Bytes downloaded so far (only while `downloading`)."},
            "dl_total": nullable("integer", "The file's size when known (only while `downloading`)."),
            "civitai_model_id": nullable("integer"),
            "catalog": {
                "type": ["string", "null"],
                "enum": ["models", "loras", None],
                "description": "null: a version identified on disk by its SHA256 that no catalog lists (SHOW_UNCATALOGUED).",
            },
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
        },
        closed=True,
    ),
    "AlreadyExists": obj(
        {"status": const("already_exists"), "file": nullable("string", "The catalogued file name (null if the entry has none).")},
        closed=True,
    ),
    "Restricted": obj(
        {"status": const("restricted"), "reason": string("Why CivitAI does not allow the download.")},
        closed=True,
    ),
    "Promoted": obj(
        {"status": const("promoted"), "file": nullable("string"), "category": string("The category id in loras.json.")},
        closed=True,
    ),
    "Removed": obj({"status": const("removed"), "file": string()}, closed=True),
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
    "ImageResource": obj(
        {
            "modelType": nullable("string"),
            "modelName": nullable("string"),
            "versionName": nullable("string"),
            "versionId": nullable("integer"),
            "baseModel": nullable("string"),
            "strength": nullable("number"),
            "hash": nullable("string", "The hash the image named it by, when it was not named by version id."),
            "catalog_status": {"type": "string", "description": "`present`, `missing`, `queued`, `downloading`, or `not_found` (in no catalog)."},
            "catalog_file": nullable("string"),
        },
        closed=True,
    ),
    "ImageResources": obj(
        {
            "image_id": {"type": "integer"},
            "resources": {"type": "array", "items": ref("ImageResource")},
            "detected_deps": {
                "type": "array",
                "description": "LoRAs the prompt names (`<lora:name:0.8>`), resolved when a resource of that name was.",
                "items": obj(
                    {
                        "name": string(),
                        "strength": nullable("number"),
                        "versionId": nullable("integer"),
                        "catalog_status": string(),
                        "catalog_file": nullable("string"),
                    },
                    closed=True,
                ),
            },
            "detected_type": nullable("string", "The workflow family, from the checkpoint's base model (flux, wan, sdxl, illustrious...)."),
        },
        closed=True,
    ),
    "AlreadyPresent": obj({"status": const("already_present"), "file": string()}, closed=True),
    "DownloadJob": obj(
        {
            "job": string(),
            "file": string(),
            "dest": string("The catalog's folder for the file."),
            "version_id": {"type": "integer", "minimum": 1},
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
        },
        required=("status", "added", "skipped", "not_identified"),
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
    "ChangeEvent": obj(
        {
            "etag": string("The ETag of the map after this change."),
            "etag_gzip": string("The same, for the gzip answer."),
            "changes": {
                "type": "object",
                **VERSION_KEYS,
                "additionalProperties": {
                    "type": ["string", "null"],
                    "enum": ["present", "missing", "queued", "downloading", None],
                    "description": "The version's new status; null when it left the map.",
                },
            },
        },
        required=("etag", "changes"),
    ),
    "OpenApiDocument": obj(
        {"openapi": string(), "info": {"type": "object"}, "paths": {"type": "object"}},
        required=("openapi", "info", "paths"),
    ),
}

# ---- paths ----------------------------------------------------------------------------------------

MAP_DESCRIPTION = """\
Every catalogued CivitAI version with its status on disk, from both catalogs.

The full map carries an ETag: send it back in If-None-Match for a 304. With
`Accept-Encoding: gzip` the map is sent compressed, under its own ETag."""

EVENTS_DESCRIPTION = """\
A Server-Sent Events stream of map changes, for clients that would rather be told than poll.

Events (`data` is JSON; its schema is under `x-events`):
- `snapshot`, first: `{"etag", "etag_gzip"}`, the map's tags (plain and gzip) as it is now.
- `change`, after every change of the map:
  `{"etag", "etag_gzip", "changes": {"<version id>": "present" | "missing" | "queued" | "downloading" | null}}`
  (null when the version left the map); its SSE `id` is the new ETag.
- `resync`: `{"etag", "etag_gzip"}`; the client fell behind and should fetch the map again.
- `updates`: the answer of `GET /api/admin/models/updates`, when an update check changed it.
Heartbeats are SSE comments (lines starting with `:`).

The key goes in a header, as on every route: a browser reads the stream with `fetch` (whose
body streams), since EventSource cannot send one. A client that stops reading is dropped once
what was written to it has waited 10 s; a new client is never refused, the stream least likely
to be read giving its slot up when all 32 are taken."""

PATHS: dict[str, dict[str, Schema]] = {
    "/": {
        "get": operation(
            "page",
            "The page for people: the catalog, live download progress, add, promote, remove, download, cancel",
            {"200": {"description": "The page. It asks for the key and uses this API.", "content": {"text/html": {"schema": {"type": "string"}}}}},
            security=None,
            tag="page",
        )
    },
    "/app.js": {
        "get": operation(
            "pageScript",
            "The page's script",
            {"200": {"description": "The script.", "content": {"text/javascript": {"schema": {"type": "string"}}}}},
            security=None,
            tag="page",
        )
    },
    "/health": {
        "get": operation(
            "health",
            "Liveness: the process serves",
            {"200": json_response("The service is up.", ref("Health"))},
            security=None,
            tag="probes",
        )
    },
    "/api/health": {
        "get": operation(
            "apiHealth",
            "The extension's connection check: reachable, and whether the key sent is right",
            {"200": json_response("Reachable. `authenticated` is false for a wrong or missing key (never a 401).", ref("ApiHealth"))},
            security=[{}, *SECURED],  # the key is optional here
            tag="probes",
            description="Takes the key as X-API-Key or Authorization: Bearer but does not require it, so a client "
            "can tell \"reachable but the key is wrong\" from \"down\". Shows no paths, counts or secrets.",
        )
    },
    "/ready": {
        "get": operation(
            "ready",
            "Readiness: index built, watcher running, catalogs parsed",
            {
                "200": json_response("Ready.", ref("Ready")),
                "503": json_response("Not ready yet, or a catalog cannot be used; the body says which.", ref("Ready")),
            },
            security=None,
            tag="probes",
        )
    },
    "/api/admin/models/civitai-map": {
        "get": operation(
            "civitaiMap",
            "The map of catalogued CivitAI versions and whether their files are on disk",
            {
                "200": json_response(
                    "The map (all of it, or the versions asked for).",
                    ref("CivitaiMap"),
                    {
                        "ETag": header("The map's tag (full map only)."),
                        "Content-Encoding": header("`gzip` when asked for with Accept-Encoding.", enum=["gzip"]),
                    },
                ),
                "304": {"description": "Not modified: If-None-Match holds the current ETag.", "headers": {"ETag": header("The map's tag.")}},
                "400": error("`versions` or `models` is not a list of whole numbers (`invalid_ids`), or has more than 500 (`too_many_ids`)."),
                "401": UNAUTHORIZED,
                "503": NOT_READY,
            },
            description=MAP_DESCRIPTION,
            parameters=[
                ids_parameter("versions", "CivitAI model-version"),
                ids_parameter("models", "CivitAI model"),
                {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}},
                {"name": "Accept-Encoding", "in": "header", "required": False, "schema": {"type": "string"}},
            ],
        )
    },
    "/api/admin/models/civitai-map/events": {
        "get": operation(
            "civitaiMapEvents",
            "A stream of map changes (Server-Sent Events)",
            {
                "200": {
                    "description": "The stream; it stays open until the client or the service goes away.",
                    "content": {SSE: {"schema": {"type": "string"}}},
                    "x-events": {"snapshot": ref("SnapshotEvent"), "change": ref("ChangeEvent"), "resync": ref("SnapshotEvent")},
                },
                "401": UNAUTHORIZED,
                "503": error("The index is still being built (`not_ready`), or the service is stopping (`shutting_down`).", retry_after=True),
            },
            description=EVENTS_DESCRIPTION,
        )
    },
    "/api/admin/civitai/add/{version_id}": {
        "post": operation(
            "addVersion",
            "Add a CivitAI version to models.json (metadata only; nothing is downloaded)",
            {
                "200": json_response(
                    "Added; or already catalogued (by version or by file); or CivitAI does not allow its download.",
                    one_of("Added", "AlreadyExists", "Restricted"),
                    links={
                        "promote": link("promoteToLora", "Promote the version, if it is a LoRA.", version_id="$request.path.version_id"),
                        "remove": link("removeFromCatalog", "Remove the entry again.", filename="$response.body#/file"),
                    },
                ),
                "400": error("The version id is not a positive whole number (`invalid_version_id`)."),
                "401": UNAUTHORIZED,
                "404": error(f"CivitAI has no such version (`civitai_not_found`); or {ROUTE_NOT_FOUND}."),
                "409": CATALOG_BUSY,
                "413": TOO_LARGE,
                "415": UNSUPPORTED_MEDIA,
                "422": error("The version has no ComfyUI folder (`unsupported_type`) or no model file (`no_model_file`)."),
                "502": error("CivitAI could not be reached or answered something unusable (`upstream_*`, `civitai_*`)."),
                "503": error("CivitAI is rate limiting (`civitai_rate_limited`), or the catalog could not be saved (`write_failed`).", retry_after=True),
                "504": error("CivitAI did not answer in time (`upstream_timeout`)."),
            },
            description="Asks CivitAI for the version and files it where ComfyUI would look for it. Takes no body.",
            parameters=[VERSION_ID],
        )
    },
    "/api/admin/civitai/promote-to-lora/{version_id}": {
        "post": operation(
            "promoteToLora",
            "Move a LoRA from models.json to loras.json",
            {
                "200": json_response("Promoted; or already in loras.json.", one_of("Promoted", "AlreadyExists")),
                "400": error("The version id is not a positive whole number (`invalid_version_id`), or the entry is not a LoRA (`not_a_lora`)."),
                "401": UNAUTHORIZED,
                "404": error(f"The version is not in models.json (`not_in_catalog`); or {ROUTE_NOT_FOUND}."),
                "409": CATALOG_BUSY,
                "413": TOO_LARGE,
                "415": UNSUPPORTED_MEDIA,
                "503": WRITE_FAILED,
            },
            description="Takes no body.",
            parameters=[VERSION_ID],
        )
    },
    "/api/admin/models/{filename}/catalog": {
        "delete": operation(
            "removeFromCatalog",
            "Remove an entry from models.json when its file is not on disk",
            {
                "200": json_response("Removed.", ref("Removed")),
                "400": error("The file name holds a path separator or NUL (`unsafe_file_name`)."),
                "401": UNAUTHORIZED,
                "404": error(f"No models.json entry has this file name (`not_in_catalog`); or {ROUTE_NOT_FOUND}."),
                "409": error("The file is still on disk (`file_on_disk`), or the catalogs kept changing (`catalog_busy`)."),
                "413": TOO_LARGE,
                "415": UNSUPPORTED_MEDIA,
                "503": WRITE_FAILED,
            },
            description="Takes no body.",
            parameters=[
                {
                    "name": "filename",
                    "in": "path",
                    "required": True,
                    "description": "The catalogued file name, exactly as the catalog writes it (any name a catalog "
                    "holds can be removed). A name with '/', '\\' or NUL is answered 400.",
                    "schema": {"type": "string", "pattern": r"^[^/\\\x00]+$"},
                    "example": "lora_123.safetensors",
                }
            ],
        )
    },
    "/api/admin/models/download/{file}": {
        "post": operation(
            "downloadFile",
            "Download a catalogued file from CivitAI into its folder",
            {
                "200": json_response(
                    "Queued (or the job already under way for that file), or already on disk.", one_of("DownloadStarted", "AlreadyPresent")
                ),
                "400": error("The file name is not a safe single file name (`unsafe_file_name`)."),
                "401": UNAUTHORIZED,
                "404": error(f"No catalog entry has this file name (`not_in_catalog`); or {ROUTE_NOT_FOUND}."),
                "409": error("Downloads are switched off (`downloads_off`, DOWNLOADS=off)."),
                "413": TOO_LARGE,
                "415": UNSUPPORTED_MEDIA,
                "503": NOT_READY,
            },
            description="Answers at once; the download runs in the background (see `GET /api/admin/downloads` and the map's "
            "`queued` / `downloading` statuses). Takes no body, or `{}`.",
            parameters=[{"name": "file", "in": "path", "required": True, "description": "The catalogued file name.", "schema": {"type": "string"}}],
        )
    },
    "/api/admin/downloads": {
        "get": operation(
            "listDownloads",
            "Every download job, newest first",
            {"200": json_response("The jobs.", ref("Downloads")), "401": UNAUTHORIZED},
        )
    },
    "/api/admin/downloads/{job}": {
        "delete": operation(
            "cancelDownload",
            "Cancel a download and remove its partial file, or forget a finished job",
            {
                "200": json_response("Cancelled, or forgotten.", ref("DownloadCancelled")),
                "401": UNAUTHORIZED,
                "404": error(f"There is no such job (`no_such_job`); or {ROUTE_NOT_FOUND}."),
                "413": TOO_LARGE,
                "415": UNSUPPORTED_MEDIA,
            },
            parameters=[{"name": "job", "in": "path", "required": True, "schema": {"type": "string"}}],
        )
    },
    "/api/admin/civitai/image/{image_id}": {
        "get": operation(
            "civitaiImage",
            "An image's resources on CivitAI, each with its catalog status",
            {
                "200": json_response("The resources the image was made with.", ref("ImageResources")),
                "400": error("The image id is not a positive whole number (`invalid_image_id`)."),
                "401": UNAUTHORIZED,
                "404": error(f"CivitAI has no such image, or no public generation data (`civitai_not_found`); or {ROUTE_NOT_FOUND}."),
                "502": error("CivitAI could not be reached or answered something unusable (`upstream_*`, `civitai_*`)."),
                "503": error("CivitAI is rate limiting (`civitai_rate_limited`).", retry_after=True),
                "504": error("CivitAI did not answer in time (`upstream_timeout`)."),
            },
            description="Reads `GET /api/v1/images?imageId=` on CivitAI; resolves each resource by version id, else by hash.",
            parameters=[{"name": "image_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID}}],
        )
    },
    "/api/admin/library/import": {
        "post": operation(
            "importLibrary",
            "Catalog the model files identified on disk that no catalog lists",
            {
                "200": json_response("What was added (or, with dry_run, would be) and what was skipped, and why.", ref("ImportAnswer")),
                "400": error("`dry_run` is not true or false (`bad_query`)."),
                "401": UNAUTHORIZED,
                "409": error("Hashing is off (`hashing_off`, HASHING=off); or " + CATALOG_BUSY["description"]),
                "413": TOO_LARGE,
                "415": UNSUPPORTED_MEDIA,
                "503": NOT_READY,
            },
            description="Each file is mapped as an add maps its version (category, name, base model, hash, size), with the "
            "file's real name and folder, into models.json, in one transaction. Takes no body.",
            parameters=[
                {
                    "name": "dry_run",
                    "in": "query",
                    "required": False,
                    "description": "true: change nothing, answer what would be added.",
                    "schema": {"type": "string", "enum": ["true", "false", "1", "0", "yes", "no", "on", "off"]},
                }
            ],
        )
    },
    "/api/admin/models/updates": {
        "get": operation(
            "modelUpdates",
            "Catalogued models with a version newer than every catalogued one",
            {"200": json_response("As of the last check (cached across restarts).", ref("ModelUpdates")), "401": UNAUTHORIZED},
            description="Checked once a day (UPDATE_CHECK_INTERVAL_H) and on demand. A change is also sent as an `updates` "
            "event on the events stream.",
        )
    },
    "/api/admin/models/updates/check": {
        "post": operation(
            "checkUpdates",
            "Start an update check now",
            {
                "200": json_response("Started, or already running.", ref("UpdateCheckStarted")),
                "401": UNAUTHORIZED,
                "413": TOO_LARGE,
                "415": UNSUPPORTED_MEDIA,
                "503": NOT_READY,
            },
            description="Answers at once; poll `GET /api/admin/models/updates` until `state` is `idle`. Takes no body.",
        )
    },
    "/api/openapi.json": {
        "get": operation(
            "openapi",
            "This document",
            {"200": json_response("The OpenAPI 3.1 description of this service.", ref("OpenApiDocument")), "401": UNAUTHORIZED},
            tag="meta",
        )
    },
}


def _build() -> Schema:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ComfyUI catalog service",
            "version": __version__,
            "description": "Knows which CivitAI model versions are in a ComfyUI catalog and which are on disk. "
            "Errors always have the shape `{\"detail\", \"code\"}`.",
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": "probes", "description": "Liveness and readiness; no key needed."},
            {"name": "catalog", "description": "The map and the changes to the catalogs; the API key is needed."},
            {"name": "meta", "description": "This description."},
            {"name": "page", "description": "The page for people; it asks for the key itself."},
        ],
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer", "description": "The same API key, as `Authorization: Bearer <key>`."},
            },
        },
    }


DOCUMENT_BYTES: bytes = orjson.dumps(_build())


def openapi_document() -> Schema:
    """The OpenAPI 3.1 document (a fresh copy; the served bytes never change)."""
    return orjson.loads(DOCUMENT_BYTES)


async def openapi_json(request: web.Request) -> web.Response:
    """GET /api/openapi.json."""
    return web.Response(body=DOCUMENT_BYTES, content_type=JSON, headers={"Cache-Control": "no-cache"})
