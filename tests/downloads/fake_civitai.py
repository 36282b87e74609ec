"""A loopback CivitAI for downloads: the download route redirects to a storage server on
another port, which serves real bytes with Range, and can drop, stall, refuse or lie."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Blob:
    data: bytes
    drop_after: int | None = None  # close the connection after this many bytes, once
    hold_at: int | None = None  # stop sending at this offset until `release` is set
    release: asyncio.Event = field(default_factory=asyncio.Event)
    chunk: int = 64 * 1024
    ignore_range: bool = False  # answer every request with the whole file (200)
    short_by: int = 0  # a server that lies: says and sends this many bytes fewer than the file has
    flip_at: int | None = None  # send the byte at this offset wrong
    close_every: int | None = None  # close each connection after sending this many bytes (at full speed)
    hide_length: bool = False  # no Content-Length: the body ends when the connection does
    refuse_ranges: bool = False  # answer every request with a Range 416
    overlong: int = 0  # send this many bytes more than a ranged answer's Content-Range says (with hide_length)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class FakeCivitai:
    """State shared by the two fake servers; tests set blobs and failures, then read `requests`."""

    blobs: dict[int, Blob] = field(default_factory=dict)  # version id -> file served
    refuse: dict[int, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)  # version id -> statuses to answer first
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)  # (server, path, headers)
    storage_url: str = ""
    redirect_to: str | None = None  # override the Location (e.g. a hostile scheme)
    versions: dict[int, dict[str, Any]] = field(default_factory=dict)  # model-version bodies, for adds
    images: dict[str, bytes] = field(default_factory=dict)  # name -> bytes served at /images/{name}
    image_redirects: dict[str, str] = field(default_factory=dict)  # name -> the Location /images/{name} redirects to
    models: dict[int, dict[str, Any]] = field(default_factory=dict)  # model bodies, for update checks

    def civitai_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/download/models/{version_id}", self._download)
        app.router.add_get("/api/v1/model-versions/{version_id}", self._version)
        app.router.add_get("/images/{name}", self._image)
        app.router.add_get("/api/v1/models", self._models)
        return app

    async def _models(self, request: web.Request) -> web.Response:
        ids = [int(part) for part in request.query.get("ids", "").split(",") if part]
        return web.json_response({"items": [self.models[model_id] for model_id in ids if model_id in self.models]})

    async def _image(self, request: web.Request) -> web.Response:
        self.requests.append(("civitai", request.path_qs, dict(request.headers)))
        if request.match_info["name"] in self.image_redirects:
            return web.Response(status=302, headers={"Location": self.image_redirects[request.match_info["name"]]})
        data = self.images.get(request.match_info["name"])
        return web.Response(body=data, content_type="image/png") if data is not None else web.Response(status=404)

    async def _version(self, request: web.Request) -> web.Response:
        body = self.versions.get(int(request.match_info["version_id"]))
        return web.json_response(body) if body is not None else web.json_response({"error": "not found"}, status=404)

    def storage_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/files/{version_id}", self._serve)
        return app

    async def _download(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(("civitai", request.path_qs, dict(request.headers)))
        version_id = int(request.match_info["version_id"])
        pending = self.refuse.get(version_id)
        if pending:
            status, headers = pending.pop(0)
            return web.Response(status=status, headers=headers, text="refused")
        if version_id not in self.blobs:
            return web.Response(status=404, text="no such file")
        location = self.redirect_to or f"{self.storage_url}/files/{version_id}?token=signed"
        raise web.HTTPTemporaryRedirect(location)

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(("storage", request.path_qs, dict(request.headers)))
        blob = self.blobs[int(request.match_info["version_id"])]
        data = served(blob)
        start = 0
        range_header = request.headers.get("Range")
        if range_header and blob.refuse_ranges:
            return web.Response(status=416, text="no ranges here")
        response = web.StreamResponse()
        if range_header and not blob.ignore_range:
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            response.set_status(206)
            response.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        if blob.hide_length:
            response.force_close()
        else:
            response.content_length = len(data) - start
        response.content_type = "application/octet-stream"
        await response.prepare(request)
        if range_header and blob.overlong:
            await response.write(data[start:] + b"x" * blob.overlong)
            await response.write_eof()
            return response
        position = start
        sent = 0
        while position < len(data):
            if blob.close_every is not None and sent >= blob.close_every:
                assert request.transport is not None
                request.transport.close()
                return response
            if blob.hold_at is not None and position >= blob.hold_at and not blob.release.is_set():
                await blob.release.wait()
            end = min(position + blob.chunk, len(data), position + (blob.close_every or len(data)) - sent)
            if blob.hold_at is not None and position < blob.hold_at < end:
                end = blob.hold_at
            if blob.drop_after is not None and end > blob.drop_after:
                await response.write(data[position : blob.drop_after])
                blob.drop_after = None
                assert request.transport is not None
                request.transport.close()  # a dropped connection, mid-body
                return response
            await response.write(data[position:end])
            sent += end - position
            position = end
        await response.write_eof()
        return response


def served(blob: Blob) -> bytes:
    """The bytes the storage server sends for a blob, lies included."""
    data = blob.data[: len(blob.data) - blob.short_by]
    if blob.flip_at is not None:
        data = data[: blob.flip_at] + bytes([data[blob.flip_at] ^ 0xFF]) + data[blob.flip_at + 1 :]
    return data


def headers_of(fake: FakeCivitai, server: str) -> list[dict[str, Any]]:
    return [headers for name, _path, headers in fake.requests if name == server]


FAKE_SHUTDOWN_S = 1.0


async def started(aiohttp_server: Any) -> FakeCivitai:
    """A FakeCivitai with both servers running on loopback ports (`fake.civitai` is CivitAI's)."""
    fake = FakeCivitai()
    # Torn down before the service it serves (fixtures end in reverse order): a transfer the
    # service still has open is cut after a second instead of held for aiohttp's 60 s default.
    storage = await aiohttp_server(fake.storage_app(), shutdown_timeout=FAKE_SHUTDOWN_S)
    fake.storage_url = str(storage.make_url("")).rstrip("/")
    fake.civitai = await aiohttp_server(fake.civitai_app(), shutdown_timeout=FAKE_SHUTDOWN_S)  # type: ignore[attr-defined]
    return fake
