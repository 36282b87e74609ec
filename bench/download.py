"""One large download from a loopback server: this service against curl on the same URL,
and the map's answer time while it runs. Loopback only.

    python bench/download.py [--size-gb 2] [--runs 2]

The storage server is aiohttp serving a real file (with Range); a fake CivitAI redirects the
service's /api/download/models/{id} to it, as CivitAI redirects to its storage. curl writes
to a file; the service also hashes (SHA256 against the catalog) and fsyncs before renaming.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

REPO = Path(__file__).resolve().parent.parent
KEY = "bench-key-0123456789abcdef"
VERSION_ID = 4242


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_file(path: Path, size: int) -> str:
    hasher = hashlib.sha256()
    block = os.urandom(1 << 20)
    with open(path, "wb") as handle:
        for done in range(0, size, len(block)):
            chunk = block[: min(len(block), size - done)]
            hasher.update(chunk)
            handle.write(chunk)
    return hasher.hexdigest()


async def serve(blob: Path) -> tuple[web.AppRunner, str, str]:
    async def file(_request: web.Request) -> web.StreamResponse:
        return web.FileResponse(blob)

    storage_port, civitai_port = free_port(), free_port()

    async def download(_request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(f"http://127.0.0.1:{storage_port}/files/model.safetensors")

    storage, civitai = web.Application(), web.Application()
    storage.router.add_get("/files/model.safetensors", file)
    civitai.router.add_get("/api/download/models/{version_id}", download)
    runners = []
    for app, port in ((storage, storage_port), (civitai, civitai_port)):
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
    return runners, f"http://127.0.0.1:{storage_port}/files/model.safetensors", f"http://127.0.0.1:{civitai_port}"  # type: ignore[return-value]


def curl_seconds(url: str, out: Path) -> tuple[float, float]:
    """curl's time, and its time plus an fsync of what it wrote (the service makes its file durable)."""
    started = time.perf_counter()
    subprocess.run(["curl", "-s", "-f", "-o", str(out), url], check=True)
    elapsed = time.perf_counter() - started
    fd = os.open(out, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    durable = time.perf_counter() - started
    out.unlink()
    return elapsed, durable


async def map_latencies(session: aiohttp.ClientSession, base: str, stop: asyncio.Event) -> list[float]:
    times = []
    while not stop.is_set():
        started = time.perf_counter()
        async with session.get(f"{base}/api/admin/models/civitai-map", headers={"X-API-Key": KEY}) as response:
            await response.read()
        times.append(time.perf_counter() - started)
        await asyncio.sleep(0.1)  # ten times a second; the extension asks every 5 s
    return times


async def service_seconds(work: Path, civitai_url: str, sha256: str, size: int) -> tuple[float, list[float], list[float]]:
    catalogs, models = work / "catalogs", work / "models"
    shutil.rmtree(models, ignore_errors=True)
    (models / "loras").mkdir(parents=True)
    catalogs.mkdir(exist_ok=True)
    entry = {"name": "big", "file": "model.safetensors", "dest": "loras", "civitai_version_id": VERSION_ID, "civitai_model_id": 1, "hash": sha256, "size_gb": round(size / 1e9, 3)}
    (catalogs / "models.json").write_text(json.dumps({"version": 1, "categories": [{"id": "loras", "models": [entry]}]}))
    port = free_port()
    env = {**os.environ, "CATALOG_DIR": str(catalogs), "MODELS_DIR": str(models), "PORT": str(port), "API_KEY": KEY,
           "CIVITAI_BASE_URL": civitai_url, "CIVITAI_FALLBACK_URL": "", "UPDATE_CHECK_INTERVAL_H": "0", "LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "service"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(f"{base}/ready") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
            idle_stop = asyncio.Event()
            idle_task = asyncio.create_task(map_latencies(session, base, idle_stop))
            await asyncio.sleep(1.0)
            idle_stop.set()
            idle = await idle_task
            busy_stop = asyncio.Event()
            busy_task = asyncio.create_task(map_latencies(session, base, busy_stop))
            started = time.perf_counter()
            async with session.post(f"{base}/api/admin/models/download/model.safetensors", headers={"X-API-Key": KEY}) as response:
                job = (await response.json())["job"]
            while True:
                async with session.get(f"{base}/api/admin/downloads", headers={"X-API-Key": KEY}) as response:
                    state = next(j for j in (await response.json())["downloads"] if j["job"] == job)
                if state["state"] in ("done", "failed"):
                    break
                await asyncio.sleep(0.1)
            elapsed = time.perf_counter() - started
            busy_stop.set()
            busy = await busy_task
            if state["state"] != "done":
                raise RuntimeError(f"the download failed: {state['error']}")
            return elapsed, idle, busy
    finally:
        proc.terminate()
        proc.wait(15)


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--tmpdir", help="where the files go (default: the system temp folder; /dev/shm takes the disk out)")
    args = parser.parse_args()
    size = int(args.size_gb * 1024**3)
    with tempfile.TemporaryDirectory(prefix="bench-download-", dir=args.tmpdir) as folder:
        work = Path(folder)
        blob = work / "blob"
        sha256 = make_file(blob, size)
        runners, url, civitai_url = await serve(blob)
        try:
            curl = [await asyncio.to_thread(curl_seconds, url, work / "curl.out") for _ in range(args.runs)]
            ours = [await service_seconds(work, civitai_url, sha256, size) for _ in range(args.runs)]
        finally:
            for runner in runners:
                await runner.cleanup()
    best_curl, best_curl_durable, best_ours = min(c[0] for c in curl), min(c[1] for c in curl), min(o[0] for o in ours)
    idle = [t for o in ours for t in o[1]]
    busy = [t for o in ours for t in o[2]]
    ratio, durable_ratio = best_curl / best_ours, best_curl_durable / best_ours
    print(f"| download of {args.size_gb:g} GB over loopback into {args.tmpdir or tempfile.gettempdir()} | curl {size / best_curl / 1e6:.0f} MB/s, "
          f"curl + fsync {size / best_curl_durable / 1e6:.0f} MB/s | service {size / best_ours / 1e6:.0f} MB/s (SHA256 and fsync included) "
          f"| ratio {ratio:.2f} to curl, {durable_ratio:.2f} to curl + fsync (target >= 0.9) |")
    print(f"| map answer while downloading | idle p50 {p(idle, 0.5):.1f} ms, p99 {p(idle, 0.99):.1f} ms | "
          f"downloading p50 {p(busy, 0.5):.1f} ms, p99 {p(busy, 0.99):.1f} ms |")


if __name__ == "__main__":
    asyncio.run(main())
