"""Route handlers for the library as a whole: previews of the models on disk, and duplicates."""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from ..errors import Conflict, NotFound
from ..sidecars.images import NotAnImage, PreviewGone, read_image
from .appkeys import HASHER, LIBRARY, THUMBNAILS
from .params import path_id, switch
from .pipeline import not_ready

# A preview is served as an image and nothing else: never sniffed into HTML, never run.
IMAGE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "private, max-age=300",
}


async def model_preview(request: web.Request) -> web.Response:
    """The preview image beside a version's file: a small WebP thumbnail, or the image as it is (?full=true)."""
    version_id = path_id(request.match_info, "version_id", "version id", "invalid_version_id")
    full = switch(request.query.get("full", "false"), "full")
    index = request.app[LIBRARY].index
    found = index.preview_of(version_id)
    if found is None:
        raise NotFound(f"No preview image of version {version_id} is on disk.", code="no_preview")
    model, path = found
    try:
        if full:
            body, media_type = await _read(path)
        else:
            body, media_type = await request.app[THUMBNAILS].get(path), "image/webp"
    except NotAnImage as exc:
        if isinstance(exc, PreviewGone):  # gone since it was seen: the map stops offering it until it is seen again
            index.hashes_changed(index.set_previews({model: None}), ())
        raise NotFound(f"The preview of version {version_id} cannot be shown: {exc}.", code="no_preview") from None
    return web.Response(body=body, content_type=media_type, headers=IMAGE_HEADERS)


async def _read(path: str) -> tuple[bytes, str]:
    return await asyncio.to_thread(read_image, path)


async def library_duplicates(request: web.Request) -> web.Response:
    """Files whose bytes are kept in more than one place, with their sizes, the most wasted first."""
    hasher = request.app[HASHER]
    if hasher is None:
        raise Conflict("Hashing is off (HASHING=off), so no duplicate can be known.", code="hashing_off")
    if not request.app[LIBRARY].ready:
        raise not_ready()
    body = await hasher.duplicates()
    return web.Response(body=orjson.dumps(body), content_type="application/json", headers={"Cache-Control": "no-store"})
