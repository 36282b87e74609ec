"""The processes a run starts: the service, the ceiling server, and a fake CivitAI for adds."""


import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from .common import CEILING, CLEANUP, MAP_PATH, READY_POLL_S, REPO, SERVICE_ENV_KEYS, _killpg, _r, free_port, read_proc_status, tree_rss_kb
from .dataset import Dataset

class FakeCivitai:
    def __init__(self) -> None:
        self.port = 0
        self.hits = 0
        self.runner: web.AppRunner | None = None

    def body(self, vid: int) -> dict[str, Any]:
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
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


# --------------------------------------------------------------------------------------
# Subprocesses: the service and the ceiling server
# --------------------------------------------------------------------------------------


def tail(path: Path, n: int = 25) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


class ServiceProc:
    def __init__(self, ds: Dataset, api_key: str, civitai_url: str, extra_env: dict[str, str], cwd: str) -> None:
        self.port = free_port()
        self.cwd = cwd
        self.api_key = api_key
        self.log_path = ds.root / "service.log"
        env = {k: v for k, v in os.environ.items() if k not in SERVICE_ENV_KEYS}
        env.update(
            CATALOG_DIR=str(ds.catalog_dir),
            MODELS_DIR=str(ds.models_dir),
            HOST="127.0.0.1",
            PORT=str(self.port),
            API_KEY=api_key,
            CIVITAI_BASE_URL=civitai_url,
            CIVITAI_FALLBACK_URL="",  # never the real second origin
            UPDATE_CHECK_INTERVAL_H="0",
            LOG_LEVEL="WARNING",
        )
        env.update(extra_env)
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.t_spawn = 0.0
        self.rss_samples_kb: list[int] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> None:
        logf = open(self.log_path, "wb")
        try:
            self.t_spawn = time.perf_counter()
            self.proc = CLEANUP.add_proc(
                subprocess.Popen(
                    [sys.executable, "-m", "service"],
                    cwd=self.cwd,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        finally:
            logf.close()

    async def wait_ready(self, session: aiohttp.ClientSession, timeout_s: float) -> float:
        """Seconds from spawn until GET /ready answered 200 (polled every 20 ms)."""
        assert self.proc is not None
        deadline = self.t_spawn + timeout_s
        k = 0
        last = "no answer"
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"service exited with code {self.proc.returncode} before ready; log tail:\n{tail(self.log_path)}"
                )
            try:
                async with session.get(self.base + "/ready", timeout=aiohttp.ClientTimeout(total=2)) as r:
                    await r.read()
                    if r.status == 200:
                        return time.perf_counter() - self.t_spawn
                    last = f"HTTP {r.status}"
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
                last = type(e).__name__
            k += 1
            delay = self.t_spawn + k * READY_POLL_S - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        raise RuntimeError(f"service not ready after {timeout_s:.0f} s (last: {last}); log tail:\n{tail(self.log_path)}")

    def sample_rss(self) -> int:
        if self.proc is None:
            return 0
        kb = tree_rss_kb(self.proc.pid)
        if kb:
            self.rss_samples_kb.append(kb)
        return kb

    def hwm_kb(self) -> int:
        return read_proc_status(self.proc.pid).get("VmHWM", 0) if self.proc else 0

    def stop(self) -> dict[str, Any]:
        """SIGTERM, wait up to 15 s, then SIGKILL. Returns how the stop went."""
        if self.proc is None:
            return {}
        out: dict[str, Any] = {}
        if self.proc.poll() is None:
            t0 = time.perf_counter()
            _killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
                out["stop_s"] = _r(time.perf_counter() - t0, 3)
            except subprocess.TimeoutExpired:
                out["stop_s"] = None
                out["stop_note"] = "did not exit within 15 s of SIGTERM; killed"
        else:
            out["stop_note"] = "had already exited"
        CLEANUP.kill_proc(self.proc, grace_s=1.0)
        out["exit_code"] = self.proc.returncode
        return out


class CeilingProc:
    def __init__(self, root: Path, body: bytes, etag: str, gz_body: bytes, gz_etag: str) -> None:
        self.port = free_port()
        (root / "ceiling_body.json").write_bytes(body)
        (root / "ceiling_body.json.gz").write_bytes(gz_body)
        self.log_path = root / "ceiling.log"
        self.args = [
            sys.executable, str(CEILING), "--port", str(self.port),
            "--body", str(root / "ceiling_body.json"), f"--etag={etag}",
            "--gzip-body", str(root / "ceiling_body.json.gz"), f"--gzip-etag={gz_etag}",
        ]
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{MAP_PATH}"

    async def start(self, session: aiohttp.ClientSession) -> None:
        logf = open(self.log_path, "wb")
        try:
            self.proc = CLEANUP.add_proc(
                subprocess.Popen(self.args, cwd=str(REPO), stdin=subprocess.DEVNULL, stdout=logf,
                                 stderr=subprocess.STDOUT, start_new_session=True)
            )
        finally:
            logf.close()
        deadline = time.perf_counter() + 20
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ceiling server exited: {tail(self.log_path)}")
            try:
                async with session.get(self.url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                    await r.read()
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                pass
            await asyncio.sleep(0.05)
        raise RuntimeError("ceiling server did not start within 20 s")

    def stop(self) -> None:
        if self.proc is not None:
            CLEANUP.kill_proc(self.proc, grace_s=3.0)


# --------------------------------------------------------------------------------------
# Load generation: wrk, or an aiohttp client loop
# --------------------------------------------------------------------------------------
