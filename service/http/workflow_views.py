"""What a workflow needs: `POST /api/admin/workflow/requirements` takes a ComfyUI workflow (JSON
in either format) or a PNG / WebP ComfyUI saved, answers each model it loads and where it stands,
and with ?download=true queues every one it can fetch."""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import orjson
from aiohttp import web

from ..civitai.lookup import BATCH, Identity, look_up
from ..downloads.huggingface import is_file_url
from ..errors import Invalid, ServiceError, UnsupportedMedia
from ..workflows.containers import read_workflow
from ..workflows.models import needs_of
from ..workflows.requirements import Resolved, resolve, summary
from .appkeys import CIVITAI, DOWNLOADS, EDITOR, LIBRARY, SETTINGS
from .params import switch

logger = logging.getLogger(__name__)

TAKEN_TYPES = {"application/json", "image/png", "image/webp", "application/octet-stream", ""}
MAX_HASHES_ASKED = 5 * BATCH  # embedded hashes asked of CivitAI for one workflow


async def workflow_requirements(request: web.Request) -> web.Response:
    """Each model the workflow loads: present, in a catalog, identified on CivitAI, or unknown."""
    download = switch(request.query.get("download", "false"), "download")
    if request.content_type not in TAKEN_TYPES:
        raise UnsupportedMedia("Send the workflow as JSON, or the PNG or WebP image ComfyUI saved it in.")
    found = await read_workflow(request.content.read, declared_json=request.content_type == "application/json")
    if found.workflow is None and found.prompt is None:
        raise Invalid(f"That {found.container.upper()} holds no ComfyUI workflow.", code="no_workflow")
    needs = await asyncio.to_thread(needs_of, found.workflow, found.prompt)  # a graph of 10,000 nodes costs the loop nothing
    identities, civitai_error = await _ask_civitai(request, sorted({n.sha256 for n in needs if n.sha256}))
    library = request.app[LIBRARY]
    hf_base = request.app[SETTINGS].huggingface_base_url
    resolved = resolve(needs, library.index, library.presence, identities, functools.partial(is_file_url, base_url=hf_base))
    answer: dict[str, Any] = {"container": found.container, "models": [item.as_json() for item in resolved], **summary(resolved, len(needs))}
    if civitai_error is not None:
        answer["civitai_error"] = civitai_error
    if download:
        answer["downloads"] = await _fetch_missing(request, resolved)
    return web.Response(body=orjson.dumps(answer), content_type="application/json", headers={"Cache-Control": "no-store"})


async def _ask_civitai(request: web.Request, hashes: list[str]) -> tuple[dict[str, Identity], str | None]:
    """What CivitAI says of the hashes a workflow embeds (100 a call); its failure is said, not raised."""
    identities: dict[str, Identity] = {}
    for start in range(0, min(len(hashes), MAX_HASHES_ASKED), BATCH):
        try:
            found, _calls = await look_up(request.app[CIVITAI], hashes[start : start + BATCH])
        except ServiceError as exc:
            return identities, exc.detail
        identities.update(found)
    return identities, None


async def _fetch_missing(request: web.Request, resolved: list[Resolved]) -> list[dict[str, Any]]:
    """Queue a download for each model a catalog lists and the disk lacks, and add then queue each
    CivitAI version found; through the one download queue, with its guarantees."""
    editor, downloads = request.app[EDITOR], request.app[DOWNLOADS]
    outcomes: list[dict[str, Any]] = []
    for item in resolved:
        name = item.need.name
        try:
            if item.state == "in_catalog" and item.status not in ("downloading", "queued"):
                started = downloads.start(item.need.file, item.version_id)
                outcomes.append({"name": name, **started})
            elif item.state == "identified" and item.source == "civitai" and item.version_id is not None:
                added = await editor.add(item.version_id)
                if added.get("status") == "restricted":
                    outcomes.append({"name": name, "status": "restricted", "detail": added.get("reason")})
                    continue
                outcomes.append({"name": name, "added": added.get("status"), **downloads.start(added["file"], item.version_id)})
            elif item.state == "identified" and item.source == "huggingface" and item.need.url is not None:
                if item.need.folder is None:
                    outcomes.append({"name": name, "status": "refused", "code": "unknown_folder", "detail": "The workflow does not say which model folder it goes in."})
                    continue
                subfolder = item.need.name.rpartition("/")[0]
                folder = f"{item.need.folder}/{subfolder}" if subfolder else item.need.folder
                outcomes.append({"name": name, **downloads.start_url(item.need.url, folder, item.need.file)})
        except ServiceError as exc:
            outcomes.append({"name": name, "status": "refused", "code": exc.code, "detail": exc.detail})
    return outcomes
