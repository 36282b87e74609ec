"""The route table: every route of the app, once. The app wraps each handler in the request
pipeline (`pipeline`), OpenAPI documents each (a test checks both ways), and the page and the
extension call them."""

from __future__ import annotations

from typing import NamedTuple

from .events import civitai_map_events
from .library_views import library_duplicates, model_preview
from .openapi import openapi_json
from .pipeline import Handler
from .views import (
    add_reference,
    add_version,
    api_health,
    cancel_download,
    check_updates,
    civitai_image,
    civitai_map,
    download_file,
    health,
    import_library,
    list_downloads,
    model_updates,
    page,
    page_asset,
    page_script,
    page_style,
    promote_to_lora,
    ready,
    remove_from_catalog,
)
from .workflow_views import workflow_requirements


class Route(NamedTuple):
    """One route: its method and path, its handler, whether it answers 503 `not_ready` until the
    index is built, and the query parameters it takes (any other is a 400 that names it; the
    pipeline checks both before the handler runs)."""

    method: str
    path: str
    handler: Handler
    needs_index: bool = False
    query: tuple[str, ...] | None = ()  # None: any (the connection check, which always answers)
    streams_body: bool = False  # reads its own body, with its own limits (not the JSON check)


ROUTES: tuple[Route, ...] = (
    Route("GET", "/", page),
    Route("GET", "/app.js", page_script),
    Route("GET", "/app.css", page_style),
    Route("GET", "/page/{name}", page_asset),
    Route("GET", "/health", health),
    Route("GET", "/ready", ready),
    Route("GET", "/api/health", api_health, query=None),  # the connection check always answers
    Route("GET", "/api/admin/models/civitai-map", civitai_map, needs_index=True, query=("versions", "models")),
    Route("GET", "/api/admin/models/civitai-map/events", civitai_map_events, needs_index=True),
    Route("POST", "/api/admin/civitai/add", add_reference),
    Route("POST", "/api/admin/civitai/add/{version_id}", add_version),
    Route("POST", "/api/admin/civitai/promote-to-lora/{version_id}", promote_to_lora),
    Route("DELETE", "/api/admin/models/{filename}/catalog", remove_from_catalog),
    Route("POST", "/api/admin/models/download/{file}", download_file, needs_index=True),
    Route("GET", "/api/admin/downloads", list_downloads),
    Route("DELETE", "/api/admin/downloads/{job}", cancel_download),
    Route("GET", "/api/admin/civitai/image/{image_id}", civitai_image),
    Route("POST", "/api/admin/library/import", import_library, query=("dry_run",)),  # checks the index itself, after its own 400 and 409
    Route("GET", "/api/admin/library/duplicates", library_duplicates),
    Route("GET", "/api/admin/models/preview/{version_id}", model_preview, needs_index=True, query=("full",)),
    Route("GET", "/api/admin/models/updates", model_updates),
    Route("POST", "/api/admin/models/updates/check", check_updates, needs_index=True),
    Route("POST", "/api/admin/workflow/requirements", workflow_requirements, needs_index=True, query=("download",), streams_body=True),
    Route("GET", "/api/openapi.json", openapi_json),
)
