"""One large download from a loopback server: this service against curl on the same URL,
and the map's answer time while it runs. Loopback only.

    python bench/download.py [--size-gb 2] [--runs 3] [--tmpdir DIR]

The storage server (aiohttp serving a real file, with Range) and a fake CivitAI that
redirects /api/download/models/{id} to it, as CivitAI redirects to its storage, run in a
process of their own, so neither side shares a loop with them. Runs alternate (curl, the
service, curl, ...) and medians are compared. curl writes to a file; the service also hashes
(SHA256 against the catalog), fsyncs and renames: its time is the job's own, from its first
request to the rename. curl + fsync is shown too, for the cost of durability alone.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loopback import AUTH, ServiceProcess, free_port, map_latencies, median, ms  # noqa: E402

VERSION_ID = 4242


def make_file(path: Path, size: int) -> str:
    hasher = hashlib.sha256()
    block = os.urandom(1 << 20)
    with open(path, "wb") as handle:
        for done in range(0, size, len(block)):
            chunk = block[: min(len(block), size - done)]
            hasher.update(chunk)
            handle.write(chunk)
    return hasher.hexdigest()


def serve_forever(blob: Path, storage_port: int, civitai_port: int) -> None:
    """The storage and the fake CivitAI, in this process (run as `download.py --serve`)."""

    async def file(_request: web.Request) -> web.StreamResponse:
        return web.FileResponse(blob)

    async def download(_request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(f"http://127.0.0.1:{storage_port}/files/model.safetensors")

    async def main() -> None:
        storage, civitai = web.Application(), web.Application()
        storage.router.add_get("/files/model.safetensors", file)
        civitai.router.add_get("/api/download/models/{version_id}", download)
        for app, port in ((storage, storage_port), (civitai, civitai_port)):
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    asyncio.run(main())


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


async def service_seconds(work: Path, civitai_url: str, sha256: str, size: int, curl_url: str) -> tuple[float, list[float], list[float], list[float]]:
    """One download by the service: the job's own time, and the map's latencies idle, while curl
    downloads the same file beside it (what two busy cores alone do), and while the service downloads."""
    catalogs, models = work / "catalogs", work / "models"
    shutil.rmtree(models, ignore_errors=True)
    shutil.rmtree(catalogs, ignore_errors=True)
    (models / "loras").mkdir(parents=True)
    catalogs.mkdir()
    entry = {"name": "big", "file": "model.safetensors", "dest": "loras", "civitai_version_id": VERSION_ID, "civitai_model_id": 1,
             "hash": sha256, "size_gb": round(size / 1e9, 3)}
    (catalogs / "models.json").write_text(json.dumps({"version": 1, "categories": [{"id": "loras", "models": [entry]}]}))
    service = ServiceProcess(catalogs, models, civitai_url, work / "service.log", LOG_LEVEL="WARNING", HASHING="off")
    try:
        async with aiohttp.ClientSession() as session:
            await service.wait_ready(session)
            idle_stop = asyncio.Event()
            idle_task = asyncio.create_task(map_latencies(session, service.base, idle_stop, pause_s=0.02))
            await asyncio.sleep(3.0)
            idle_stop.set()
            idle = await idle_task
            beside_stop = asyncio.Event()
            beside_task = asyncio.create_task(map_latencies(session, service.base, beside_stop, pause_s=0.02))
            await asyncio.to_thread(curl_seconds, curl_url, work / "beside.out")
            beside_stop.set()
            beside = await beside_task
            busy_stop = asyncio.Event()
            busy_task = asyncio.create_task(map_latencies(session, service.base, busy_stop, pause_s=0.02))
            async with session.post(f"{service.base}/api/admin/models/download/model.safetensors", headers=AUTH) as response:
                job = (await response.json())["job"]
            while True:
                async with session.get(f"{service.base}/api/admin/downloads", headers=AUTH) as response:
                    state = next(j for j in (await response.json())["downloads"] if j["job"] == job)
                if state["state"] in ("done", "failed"):
                    break
                await asyncio.sleep(0.05)
            busy_stop.set()
            busy = await busy_task
            if state["state"] != "done":
                raise RuntimeError(f"the download failed: {state['error']}")
            return state["finished_at"] - state["started_at"], idle, beside, busy
    finally:
        service.stop()


def rate(size: int, seconds: list[float]) -> str:
    """Median MB/s, and the range."""
    rates = sorted(size / s / 1e6 for s in seconds)
    return f"{median(rates):.0f} MB/s ({rates[0]:.0f}–{rates[-1]:.0f})"


async def measure(args: argparse.Namespace) -> None:
    size = int(args.size_gb * 1024**3)
    with tempfile.TemporaryDirectory(prefix="bench-download-", dir=args.tmpdir) as folder:
        work = Path(folder)
        blob = work / "blob"
        sha256 = make_file(blob, size)
        storage_port, civitai_port = free_port(), free_port()
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(blob), str(storage_port), str(civitai_port)])
        url, civitai_url = f"http://127.0.0.1:{storage_port}/files/model.safetensors", f"http://127.0.0.1:{civitai_port}"
        try:
            await asyncio.sleep(1.0)
            curl: list[tuple[float, float]] = []
            ours: list[tuple[float, list[float], list[float], list[float]]] = []
            for _ in range(args.runs):  # alternating, so both meet the same moments of a noisy machine
                curl.append(await asyncio.to_thread(curl_seconds, url, work / "curl.out"))
                ours.append(await service_seconds(work, civitai_url, sha256, size, url))
        finally:
            server.terminate()
            server.wait(10)
    plain, durable, service = [c[0] for c in curl], [c[1] for c in curl], [o[0] for o in ours]
    idle = [t for o in ours for t in o[1]]
    beside = [t for o in ours for t in o[2]]
    busy = [t for o in ours for t in o[3]]
    where = args.tmpdir or tempfile.gettempdir()
    print(f"| download of {args.size_gb:g} GB over loopback into {where}, {args.runs} runs each, medians | curl {rate(size, plain)}, "
          f"curl + fsync {rate(size, durable)} | service {rate(size, service)} (SHA256, fsync and rename included) "
          f"| ratio {median(plain) / median(service):.2f} to curl, {median(durable) / median(service):.2f} to curl + fsync (target >= 0.9) |")
    print(f"| map answer while downloading (50 a second; {len(idle)}, {len(beside)} and {len(busy)} requests) | idle p50 {ms(idle, 0.5):.1f} ms, p99 {ms(idle, 0.99):.1f} ms | "
          f"while curl downloads beside it p50 {ms(beside, 0.5):.1f} ms, p99 {ms(beside, 0.99):.1f} ms | "
          f"while the service downloads p50 {ms(busy, 0.5):.1f} ms, p99 {ms(busy, 0.99):.1f} ms |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tmpdir", help="where the files go (default: the system temp folder; /dev/shm takes the disk out)")
    parser.add_argument("--serve", nargs=3, metavar=("BLOB", "STORAGE_PORT", "CIVITAI_PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_forever(Path(args.serve[0]), int(args.serve[1]), int(args.serve[2]))
    else:
        asyncio.run(measure(args))


if __name__ == "__main__":
    main()
