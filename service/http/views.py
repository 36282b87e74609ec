"""Route handlers: validate, call the domain, answer JSON. No logic that belongs elsewhere."""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from .. import __version__
from ..catalog.plans import ImportCandidate
from ..civitai.images import image_resources
from ..errors import Conflict, Invalid, NotFound
from ..hashes.survey import completed
from ..map.entry import MAX_ID, json_id
from .appkeys import (
    CIVITAI,
    DOWNLOADS,
    EDITOR,
    HASHER,
    LIBRARY,
    PREVIEWS,
    UPDATES,
    WATCHER,
)
from .params import accepts_gzip, etag_matches, ids_in_query, path_id, switch
from .pipeline import AUTHENTICATED, not_ready

JSON = "application/json"
# Larger bodies go out a piece at a time: a whole one would be copied per slow connection (the
# transport keeps what the socket does not take), so a slow client costs at most this much.
# Each piece written waits for the socket to drain: pieces of a mebibyte, since smaller ones
# cost a round of the event loop each (a third of the map's throughput at 256 KiB).
STREAM_THRESHOLD = 4 * 1024 * 1024
STREAM_CHUNK = 1024 * 1024


async def health(request: web.Request) -> web.Response:
    """Liveness: the process serves."""
    return web.json_response({"status": "ok"})


async def api_health(request: web.Request) -> web.Response:
    """The extension's connection check: up, and whether the key it sent is right (never a 401)."""
    body = {"status": "ok", "authenticated": bool(request.get(AUTHENTICATED)), "app_version": __version__}
    return web.Response(body=orjson.dumps(body), content_type=JSON, headers={"Cache-Control": "no-store"})


async def ready(request: web.Request) -> web.Response:
    """Readiness: index built, watcher alive, catalogs parsed. 503 otherwise."""
    library, watcher = request.app[LIBRARY], request.app[WATCHER]
    catalogs = {
        name: {
            **({"state": "ok"} if state.error is None else {"state": "unusable", "reason": state.error}),
            "entries_with_unusable_ids": state.unusable_ids,
        }
        for name, state in library.catalogs.items()
    }
    watcher_ok = watcher.state == "running"
    is_ready = library.ready and watcher_ok and library.healthy_catalogs
    body = {
        "ready": is_ready,
        "index": {"state": "ready" if library.ready else "building", "versions": len(library.index), "files_on_disk": len(library.presence)},
        "watcher": {"state": watcher.state, "mode": watcher.mode},
        "catalogs": catalogs,
        "model_folders": {
            "configured": len(library.sources),
            "missing_or_unreadable": len(library.unreadable),
            "offline": len(library.presence.offline),
        },
        "hashing": hasher.progress.as_json() if (hasher := request.app[HASHER]) is not None else {"state": "off"},
    }
    status = HTTPStatus.OK if is_ready else HTTPStatus.SERVICE_UNAVAILABLE
    return web.Response(status=status, body=orjson.dumps(body), content_type=JSON, headers={"Cache-Control": "no-store"})


async def civitai_map(request: web.Request) -> web.Response:
    """The map of every catalogued version, or of some versions/models with ?versions= / ?models=."""
    library = request.app[LIBRARY]
    query = request.rel_url.query
    if "versions" in query or "models" in query:
        body = library.index.point_answer(ids_in_query(query, "versions"), ids_in_query(query, "models"))
        return web.Response(body=body, content_type=JSON, headers={"Cache-Control": "no-cache"})
    snapshot = library.index.snapshot
    wants_gzip = accepts_gzip(request.headers.get("Accept-Encoding", ""))
    etag = snapshot.gzip_etag if wants_gzip else snapshot.etag
    headers = {"ETag": etag, "Cache-Control": "no-cache", "Vary": "Accept-Encoding"}
    if etag_matches(request.headers.get("If-None-Match"), etag):
        return web.Response(status=HTTPStatus.NOT_MODIFIED, headers=headers)
    if wants_gzip:
        headers["Content-Encoding"] = "gzip"
        return await _send(request, await snapshot.gzip_body(), headers)
    sliced = await snapshot.sliced()
    if sliced is not None:
        return await _stream(request, sliced.size, sliced, headers)
    return await _send(request, await snapshot.full_body(), headers)


async def _send(request: web.Request, body: bytes, headers: dict[str, str]) -> web.StreamResponse:
    """Small bodies in one write; large ones in slices of the shared bytes, so a slow client
    holds at most a slice in its socket buffer instead of a copy of the whole map."""
    if len(body) <= STREAM_THRESHOLD or request.method == "HEAD":
        return web.Response(body=body, content_type=JSON, headers=headers)
    view = memoryview(body)
    return await _stream(request, len(body), (view[start : start + STREAM_CHUNK] for start in range(0, len(body), STREAM_CHUNK)), headers)


async def _stream(request: web.Request, size: int, pieces: Iterable[bytes | memoryview], headers: dict[str, str]) -> web.StreamResponse:
    """A body of `size` bytes written a piece at a time (none for HEAD)."""
    response = web.StreamResponse(headers=headers)
    response.content_type = JSON
    response.content_length = size
    await response.prepare(request)
    if request.method != "HEAD":
        for piece in pieces:
            await response.write(piece)
    await response.write_eof()
    return response


async def add_version(request: web.Request) -> web.Response:
    """Add a CivitAI version to models.json."""
    answer = await request.app[EDITOR].add(path_id(request.match_info, "version_id", "version id", "invalid_version_id"))
    return web.json_response(answer, dumps=_dumps)


async def add_reference(request: web.Request) -> web.Response:
    """Add the CivitAI version a URL, an AIR or an id names: body `{"ref": "..."}`."""
    body = await _body_object(request, {"ref"}, 'Send the version as {"ref": "<a civitai.com URL, an AIR or a version id>"}.')
    if "ref" not in body:
        raise Invalid('Send the version as {"ref": "<a civitai.com URL, an AIR or a version id>"}.', code="invalid_body")
    answer = await request.app[EDITOR].add_reference(body["ref"])
    return web.json_response(answer, dumps=_dumps)


async def promote_to_lora(request: web.Request) -> web.Response:
    """Move a LoRA from models.json to loras.json."""
    answer = await request.app[EDITOR].promote(path_id(request.match_info, "version_id", "version id", "invalid_version_id"))
    return web.json_response(answer, dumps=_dumps)


async def remove_from_catalog(request: web.Request) -> web.Response:
    """Remove an entry (by file name) from whichever catalog holds it, when its file is not on disk
    and no download of it is under way."""
    file = request.match_info["filename"]
    with request.app[DOWNLOADS].removing(file):
        answer = await request.app[EDITOR].remove(file)
    return web.json_response(answer, dumps=_dumps)


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


async def _body_object(request: web.Request, keys: set[str], shape: str) -> dict[str, Any]:
    """A mutation's JSON body (the pipeline checked it is JSON; none is `{}`): an object of no
    other keys than `keys`, else Invalid saying `shape`."""
    body = orjson.loads((await request.read()).strip() or b"{}") if request.body_exists else {}
    if not isinstance(body, dict):
        raise Invalid(shape, code="invalid_body")
    unknown = sorted(set(body) - keys)
    if unknown:
        raise Invalid(f"{shape} {', '.join(repr(key[:40]) for key in unknown[:5])} is not known.", code="invalid_body")
    return body


async def download_file(request: web.Request) -> web.Response:
    """Queue a download of a catalogued file (of one version, with body `{"version_id": N}`: two
    folders may hold files of one name); answers at once with the job."""
    body = await _body_object(request, {"version_id"}, 'The body is `{}` or `{"version_id": <the version whose file to download>}`.')
    version_id = None
    if "version_id" in body and (version_id := json_id(body["version_id"])) is None:
        raise Invalid(f"version_id must be a version id (a whole number from 1 to {MAX_ID}).", code="invalid_version_id")
    answer = request.app[DOWNLOADS].start(request.match_info["file"], version_id)
    return web.json_response(answer, dumps=_dumps)


async def list_downloads(request: web.Request) -> web.Response:
    """Every download job, newest first."""
    body = {"downloads": request.app[DOWNLOADS].listing()}
    return web.Response(body=orjson.dumps(body), content_type=JSON, headers={"Cache-Control": "no-store"})


async def cancel_download(request: web.Request) -> web.Response:
    """Cancel a download and remove its partial file (or forget a finished job)."""
    answer = await request.app[DOWNLOADS].cancel(request.match_info["job"])
    return web.json_response(answer, dumps=_dumps)


async def import_library(request: web.Request) -> web.Response:
    """Catalog the files identified on disk that no catalog lists (?dry_run=true: only say what would be)."""
    dry_run = switch(request.query.get("dry_run", "false"), "dry_run")
    hasher = request.app[HASHER]
    if hasher is None:
        raise Conflict("Hashing is off (HASHING=off), so no file is identified and none can be imported.", code="hashing_off")
    if not request.app[LIBRARY].ready:  # after the checks that no waiting mends
        raise not_ready()
    identified = await completed(request.app[CIVITAI], hasher.on_disk())
    candidates = [ImportCandidate(item.file, item.folder, item.identity.version) for item in identified if item.identity.version]
    answer = await request.app[EDITOR].import_files(candidates, dry_run)
    if not dry_run:
        paths = {(item.folder, item.file): item.path for item in identified}
        for added in answer["added"]:
            path = paths.get((added["dest"], added["file"]))
            if path is not None and type(added.get("version_id")) is int:
                request.app[PREVIEWS].want(added["version_id"], path)
    answer["not_identified"] = hasher.progress.not_identified()
    answer["not_identified_files"], answer["not_identified_count"] = hasher.not_identified()
    return web.json_response(answer, dumps=_dumps)


async def model_updates(request: web.Request) -> web.Response:
    """Catalogued models with a version newer than every catalogued one, as of the last check."""
    body = request.app[UPDATES].answer()
    return web.Response(body=orjson.dumps(body), content_type=JSON, headers={"Cache-Control": "no-store"})


async def check_updates(request: web.Request) -> web.Response:
    """Start an update check now (unless one runs); answers at once."""
    return web.json_response(request.app[UPDATES].start_check(), dumps=_dumps)


async def civitai_image(request: web.Request) -> web.Response:
    """An image's resources on CivitAI, each with its catalog status."""
    image_id = path_id(request.match_info, "image_id", "image id", "invalid_image_id")
    body = await image_resources(request.app[CIVITAI], request.app[LIBRARY].index, image_id)
    return web.Response(body=orjson.dumps(body), content_type=JSON, headers={"Cache-Control": "no-store"})


STATIC = Path(__file__).parent / "static"
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


async def page(request: web.Request) -> web.StreamResponse:
    """The page for people (no key needed to load it; it asks for the key and uses the API)."""
    return web.FileResponse(STATIC / "index.html", headers={**PAGE_HEADERS, "Content-Type": "text/html; charset=utf-8"})


async def page_script(request: web.Request) -> web.StreamResponse:
    """The page's script."""
    return web.FileResponse(STATIC / "app.js", headers={**PAGE_HEADERS, "Content-Type": "text/javascript; charset=utf-8"})


# The page's other scripts, by name: nothing else of the static folder is served this way.
PAGE_SCRIPTS = frozenset({"live.js", "tools.js"})


async def page_asset(request: web.Request) -> web.StreamResponse:
    """One of the page's other scripts (`/page/live.js`, `/page/tools.js`)."""
    name = request.match_info["name"]
    if name not in PAGE_SCRIPTS:
        raise NotFound("The page has no such file.", code="no_route")
    return web.FileResponse(STATIC / name, headers={**PAGE_HEADERS, "Content-Type": "text/javascript; charset=utf-8"})


async def page_style(request: web.Request) -> web.StreamResponse:
    """The page's style sheet."""
    return web.FileResponse(STATIC / "app.css", headers={**PAGE_HEADERS, "Content-Type": "text/css; charset=utf-8"})
