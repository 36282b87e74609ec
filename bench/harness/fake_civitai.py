"""A fake CivitAI on loopback (in-process aiohttp server) that answers any version id, for the adds."""

import hashlib
from typing import Any

import orjson
from aiohttp import web


class FakeCivitai:
    """Answers /api/v1/model-versions/<id> for any id, like CivitAI would; counts the hits."""
    def __init__(self) -> None:
        self.port = 0
        self.hits = 0
        self.runner: web.AppRunner | None = None

    def body(self, vid: int) -> dict[str, Any]:
        """The model-version answer for vid."""
        mid = vid - 4_000_000 if vid > 4_000_000 else vid + 1
        fid = vid + 500_000
        base = f"http://127.0.0.1:{self.port}"
        return {
            "id": vid,
            "modelId": mid,
            "name": "v1.0",
            "createdAt": "2026-11-20T10:00:00.000Z",
            "updatedAt": "2026-11-20T10:00:00.000Z",
            "status": "Published",
            "baseModel": "SDXL 1.0",
            "baseModelType": "Standard",
            "description": None,
            "trainedWords": [],
            "usageControl": "Download",
            "stats": {"downloadCount": 1234, "ratingCount": 0, "rating": 0, "thumbsUpCount": 56},
            "model": {"name": f"Model {mid}", "type": "LORA", "nsfw": False, "poi": False},
            "files": [
                {
                    "id": fid,
                    "name": f"bench_{vid}.safetensors",
                    "type": "Model",
                    "primary": True,
                    "sizeKB": 223000.5,
                    "metadata": {"fp": "fp16", "size": "full", "format": "SafeTensor"},
                    "pickleScanResult": "Success",
                    "virusScanResult": "Success",
                    "scannedAt": "2026-11-20T10:05:00.000Z",
                    "hashes": {
                        "AutoV2": hashlib.sha256(b"v%d" % vid).hexdigest()[:10].upper(),
                        "SHA256": hashlib.sha256(b"v%d" % vid).hexdigest().upper(),
                        "CRC32": "8F3A2B1C",
                        "BLAKE3": hashlib.blake2b(b"v%d" % vid, digest_size=32).hexdigest().upper(),
                    },
                    "downloadUrl": f"{base}/api/download/models/{vid}",
                }
            ],
            "images": [],
            "downloadUrl": f"{base}/api/download/models/{vid}",
        }

    async def start(self) -> None:
        """Listen on a free loopback port."""
        async def version(request: web.Request) -> web.Response:
            self.hits += 1
            try:
                vid = int(request.match_info["vid"])
            except ValueError:
                return web.json_response({"error": "Invalid id"}, status=400)
            return web.Response(body=orjson.dumps(self.body(vid)), content_type="application/json")

        async def other(request: web.Request) -> web.Response:
            self.hits += 1
            return web.json_response({"error": "Not found"}, status=404)

        app = web.Application()
        app.router.add_get("/api/v1/model-versions/{vid}", version)
        app.router.add_route("*", "/{tail:.*}", other)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        """Stop listening."""
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def base_url(self) -> str:
        """What the service gets as CIVITAI_BASE_URL."""
        return f"http://127.0.0.1:{self.port}"
