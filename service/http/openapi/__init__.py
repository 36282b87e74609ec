"""The published API description (OpenAPI 3.1), built once and served as bytes.

Every route of the app is described here; tests/test_openapi.py checks both directions
(each route documented, each documented operation routed) and that real answers fit the
schemas, and deploy/schemathesis.sh fuzzes the live service against it. When a handler's
answer changes shape, change its schema here too. The map's statuses come from `map.status`.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from ... import PROGRAM, __version__
from .build import JSON, Schema
from .paths import PATHS
from .schemas import SCHEMAS


def _build() -> Schema:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": PROGRAM,
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
