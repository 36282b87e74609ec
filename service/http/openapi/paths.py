"""The operations of every route (paths)."""

from __future__ import annotations

from typing import Any

from ...civitai.refs import MAX_REF_CHARS, WHAT_IS_TAKEN
from ...map.status import Status
from .build import (
    CATALOG_BUSY,
    MAX_ID,
    NOT_READY,
    ROUTE_NOT_FOUND,
    SECURED,
    SSE,
    TOO_LARGE,
    UNAUTHORIZED,
    UNSUPPORTED_MEDIA,
    VERSION_ID,
    WRITE_FAILED,
    Schema,
    error,
    header,
    ids_parameter,
    json_response,
    link,
    obj,
    one_of,
    operation,
    ref,
    string,
    switch_parameter,
)
from .library import LIBRARY_PATHS

MAP_DESCRIPTION = """\
Every catalogued CivitAI version with its status on disk, from both catalogs.

The full map carries an ETag: send it back in If-None-Match for a 304. With
`Accept-Encoding: gzip` the map is sent compressed, under its own ETag."""

EVENTS_DESCRIPTION = """\
A Server-Sent Events stream of map changes, for clients that would rather be told than poll.

Events (`data` is JSON; its schema is under `x-events`):
- `snapshot`, first: `{"etag", "etag_gzip"}`, the map's tags (plain and gzip) as it is now.
- `change`, after every change of the map:
  `{"etag", "etag_gzip", "changes": {"<version id>": <status> | null}, "details": {...}}`, a
  status being one of STATUSES (null when the version left the map); `details` (when any)
  holds, for changed versions, the fields the map shows beside the status (`dl_bytes`,
  `partial_bytes`, `dl_error`...); its SSE `id` is the new ETag.
- `resync`: `{"etag", "etag_gzip"}`; the client fell behind and should fetch the map again.
- `updates`: the answer of `GET /api/admin/models/updates`, when an update check changed it.
Heartbeats are SSE comments (lines starting with `:`).

The key goes in a header, as on every route: a browser reads the stream with `fetch` (whose
body streams), since EventSource cannot send one. A client that stops reading is dropped once
what was written to it has waited 10 s; a new client is never refused, the stream least likely
to be read giving its slot up when all 32 are taken.""".replace("STATUSES", " | ".join(f'`"{status.value}"`' for status in Status))

def _page_file(operation_id: str, summary: str, description: str, media_type: str, more: Schema | None = None, **extra: Any) -> dict[str, Schema]:
    """The GET of one of the page's files: no key, tagged `page`."""
    answers = {"200": {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}, **(more or {})}
    return {"get": operation(operation_id, summary, answers, security=None, tag="page", **extra)}


EXAMPLE_REF = "https://civitai.com/models/827184/wai-illustrious-sdxl?modelVersionId=2514310"

PATHS: dict[str, dict[str, Schema]] = {
    **LIBRARY_PATHS,
    "/": _page_file("page", "The page for people: the catalog, live download progress, add, promote, remove, download, cancel",
                    "The page. It asks for the key and uses this API.", "text/html"),
    "/app.js": _page_file("pageScript", "The page's script", "The script.", "text/javascript"),
    "/app.css": _page_file("pageStyle", "The page's style sheet", "The style sheet.", "text/css"),
    "/page/{name}": _page_file(
        "pageAsset",
        "One of the page's other scripts",
        "The script.",
        "text/javascript",
        {"404": error("The page has no such file (`no_route`).")},
        parameters=[{"name": "name", "in": "path", "required": True, "schema": {"type": "string", "enum": ["live.js", "tools.js"]}}],
    ),
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
            "can tell \"reachable but the key is wrong\" from \"down\". Shows no paths, counts or secrets. It always "
            "answers: the only route whose query is not checked (a key in it is not taken).",
            any_query=True,
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
    "/api/admin/civitai/add": {
        "post": operation(
            "addReference",
            "Add the CivitAI version a URL, an AIR or an id names, as people copy them",
            {
                "200": json_response(
                    "Added; or already catalogued; or CivitAI does not allow its download. `version_id` says which version it was.",
                    one_of("Added", "AlreadyExists", "Restricted"),
                ),
                "400": error(
                    "The body is not `{\"ref\": \"...\"}` (`invalid_body`), or the reference names no CivitAI version "
                    "(`invalid_reference`)."
                ),
                "401": UNAUTHORIZED,
                "404": error(f"CivitAI has no such version or model (`civitai_not_found`); or {ROUTE_NOT_FOUND}."),
                "409": CATALOG_BUSY,
                "413": TOO_LARGE,
                "415": error("The body is not JSON (`unsupported_media_type`)."),
                "422": error("The version has no ComfyUI folder (`unsupported_type`) or no model file (`no_model_file`)."),
                "502": error("CivitAI could not be reached or answered something unusable (`upstream_*`, `civitai_*`)."),
                "503": error("CivitAI is rate limiting (`civitai_rate_limited`), or the catalog could not be saved (`write_failed`).", retry_after=True),
                "504": error("CivitAI did not answer in time (`upstream_timeout`)."),
            },
            description=f"`ref` is {WHAT_IS_TAKEN}. A URL or AIR that names a model but no version adds the model's "
            "newest version. As `POST /api/admin/civitai/add/{version_id}` otherwise.",
            body=obj({"ref": string("What was copied.", maxLength=MAX_REF_CHARS, example=EXAMPLE_REF)}, closed=True),
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
            "Remove a file's entry from whichever catalog holds it, when the file is not on disk",
            {
                "200": json_response("Removed.", ref("Removed")),
                "400": error("The file name holds a path separator or NUL (`unsafe_file_name`)."),
                "401": UNAUTHORIZED,
                "404": error(f"No entry of either catalog has this file name (`not_in_catalog`); or {ROUTE_NOT_FOUND}."),
                "409": error(
                    "The file is still on disk (`file_on_disk`), this service is downloading it (`download_active`: cancel "
                    "it first), or the catalogs kept changing (`catalog_busy`)."
                ),
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
        "post": {**operation(
            "downloadFile",
            "Download a catalogued file from CivitAI into its folder",
            {
                "200": json_response(
                    "Queued (or the job already under way for that file), or already on disk.", one_of("DownloadStarted", "AlreadyPresent")
                ),
                "400": error(
                    "The file name is not a safe single file name (`unsafe_file_name`); or the body is not `{}` or "
                    "`{\"version_id\": N}` (`invalid_body`, `invalid_version_id`)."
                ),
                "401": UNAUTHORIZED,
                "404": error(f"No catalog entry has this file name (of that version) (`not_in_catalog`); or {ROUTE_NOT_FOUND}."),
                "409": error("Downloads are switched off (`downloads_off`, DOWNLOADS=off), or the file's entry is being removed (`being_removed`)."),
                "413": TOO_LARGE,
                "415": UNSUPPORTED_MEDIA,
                "503": NOT_READY,
            },
            description="Answers at once; the download runs in the background (see `GET /api/admin/downloads` and the map's "
            "`queued` / `downloading` statuses). Takes no body, `{}`, or `{\"version_id\": N}` to say whose file of that name "
            "(two folders may hold files of one name).",
            parameters=[{"name": "file", "in": "path", "required": True, "description": "The catalogued file name.", "schema": {"type": "string"}}],
        ),
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"version_id": {"type": "integer", "minimum": 1, "maximum": MAX_ID}},
                            "additionalProperties": False,
                        }
                    }
                },
            },
        }
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
            parameters=[switch_parameter("dry_run", "true: change nothing, answer what would be added.")],
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
