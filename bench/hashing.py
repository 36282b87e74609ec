"""Knowing every file on disk: hashing speed against sha256sum, a restart, 30,000 files'
CivitAI calls, and the map's latency while hashing runs. Loopback only.

    python bench/hashing.py [--size-gb 2] [--files 8] [--small 30000] [--runs 2]

The service runs as `python -m service` with HASHING=on and a fake CivitAI (an aiohttp server
in this process) that knows every file's hash and counts the calls. The files are read once
before the runs, so both sides hash from the page cache: the comparison is of hashing, not
of the disk.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loopback import AUTH, ServiceProcess, free_port, map_latencies, ms  # noqa: E402

CATALOG_ENTRIES = 1000  # the map the latency is measured on: a realistic body, not an empty one


class FakeCivitai:
    """Answers POST /api/v1/model-versions/by-hash for the hashes it was told, and counts calls."""

    def __init__(self) -> None:
        self.versions: dict[str, dict[str, Any]] = {}
        self.calls = 0
        self.hashes_asked = 0

    def knows(self, sha256: str, version_id: int, file: str) -> None:
        self.versions[sha256.upper()] = {
            "id": version_id,
            "modelId": version_id,
            "name": f"v{version_id}",
            "baseModel": "SDXL 1.0",
            "model": {"name": f"Model {version_id}", "type": "LORA"},
            "files": [{"id": version_id, "name": file, "type": "Model", "primary": True, "sizeKB": 1, "hashes": {"SHA256": sha256.upper()}}],
        }

    async def by_hash(self, request: web.Request) -> web.Response:
        asked = await request.json()
        self.calls += 1
        self.hashes_asked += len(asked)
        return web.json_response([self.versions[h] for h in asked if h in self.versions])

    async def serve(self) -> tuple[web.AppRunner, str]:
        app = web.Application(client_max_size=16 << 20)
        app.router.add_post("/api/v1/model-versions/by-hash", self.by_hash)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner, f"http://127.0.0.1:{port}"


def make_files(folder: Path, count: int, size: int, civitai: FakeCivitai, first_version: int) -> list[Path]:
    """`count` model files of `size` bytes, each with distinct bytes CivitAI knows."""
    folder.mkdir(parents=True, exist_ok=True)
    block = os.urandom(min(size, 1 << 20))
    paths = []
    for index in range(count):
        path = folder / f"file_{index:05d}.safetensors"
        hasher = hashlib.sha256()
        with open(path, "wb") as handle:
            head = index.to_bytes(8, "big")
            handle.write(head)
            hasher.update(head)
            left = size - len(head)
            while left > 0:
                chunk = block[: min(len(block), left)]
                handle.write(chunk)
                hasher.update(chunk)
                left -= len(chunk)
        civitai.knows(hasher.hexdigest(), first_version + index, path.name)
        paths.append(path)
    return paths


def write_catalog(catalogs: Path) -> None:
    catalogs.mkdir(parents=True, exist_ok=True)
    entries = [
        {"name": f"Model {i}", "file": f"cat_{i}.safetensors", "dest": "checkpoints", "civitai_version_id": 10_000_000 + i, "civitai_model_id": 10_000_000 + i}
        for i in range(CATALOG_ENTRIES)
    ]
    (catalogs / "models.json").write_text(json.dumps({"version": 1, "categories": [{"id": "checkpoints", "models": entries}]}))


class Service(ServiceProcess):
    """The service with hashing on, and what it says about its hashing."""

    def __init__(self, catalogs: Path, models: Path, civitai_url: str, log: Path) -> None:
        super().__init__(catalogs, models, civitai_url, log, HASHING="on", HASH_SETTLE_S="0", LOG_LEVEL="INFO")

    async def hashing(self, session: aiohttp.ClientSession) -> dict[str, Any] | None:
        try:
            async with session.get(f"{self.base}/ready") as response:
                return (await response.json())["hashing"]
        except (aiohttp.ClientError, KeyError, ValueError):
            return None

    async def wait_idle(self, session: aiohttp.ClientSession, files: int, timeout_s: float = 1800) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = await self.hashing(session)
            if state and state["state"] == "idle" and state["files_hashed"] >= files and state["waiting_for_lookup"] == 0:
                return state
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service stopped; see {self.log}")
            await asyncio.sleep(0.05)
        raise RuntimeError("hashing did not finish in time")

    def hashed_rate(self) -> tuple[int, float, float]:
        """From the log: files, GB and seconds of the last 'hashed N files' line."""
        found = re.findall(r"hashed (\d+) files \(([\d.]+) GB\) in ([\d.]+) s", self.log.read_text())
        files, gb, seconds = found[-1]
        return int(files), float(gb), float(seconds)


def sha256sum_seconds(paths: list[Path]) -> float:
    started = time.perf_counter()
    subprocess.run(["sha256sum", *map(str, paths)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def openssl_seconds(paths: list[Path]) -> float | None:
    """OpenSSL's own SHA256 over the same files (uses the CPU's SHA instructions, as hashlib does)."""
    try:
        started = time.perf_counter()
        subprocess.run(["openssl", "dgst", "-sha256", *map(str, paths)], check=True, stdout=subprocess.DEVNULL)
    except (OSError, subprocess.CalledProcessError):
        return None
    return time.perf_counter() - started


def warm(paths: list[Path]) -> None:
    for path in paths:
        with open(path, "rb") as handle:
            while handle.read(8 << 20):
                pass


async def big_files(work: Path, civitai: FakeCivitai, civitai_url: str, size_gb: float, count: int, runs: int) -> None:
    size = int(size_gb * 1e9 / count)
    models = work / "big-models"
    paths = make_files(models / "loras", count, size, civitai, 1)
    total = size * count
    warm(paths)
    ours: list[float] = []
    theirs: list[float] = []
    openssl: list[float | None] = []
    idle: list[float] = []
    busy: list[float] = []
    restart: dict[str, Any] = {}
    async with aiohttp.ClientSession() as session:
        for run in range(runs):
            theirs.append(await asyncio.to_thread(sha256sum_seconds, paths))
            openssl.append(await asyncio.to_thread(openssl_seconds, paths))
            catalogs = work / f"big-catalogs-{run}"
            write_catalog(catalogs)
            service = Service(catalogs, models, civitai_url, work / f"big-{run}.log")
            try:
                while ((await service.hashing(session)) or {}).get("state") != "hashing":  # ready, and at work
                    await asyncio.sleep(0.01)
                done = asyncio.Event()
                latencies = asyncio.create_task(map_latencies(session, service.base, done))
                await service.wait_idle(session, count)
                done.set()
                busy += await latencies
                quiet = asyncio.Event()
                latencies = asyncio.create_task(map_latencies(session, service.base, quiet))
                await asyncio.sleep(3.0)
                quiet.set()
                idle += await latencies
                ours.append(service.hashed_rate()[2])
            finally:
                service.stop()
            if run == 0:  # the same files and store again: nothing is hashed, CivitAI is not asked
                calls_before = civitai.calls
                again = Service(catalogs, models, civitai_url, work / "big-restart.log")
                try:
                    state = await again.wait_idle(session, count)
                    restart = {"hashed": state["hashed_this_run"], "calls": civitai.calls - calls_before}
                finally:
                    again.stop()
    best_ours, best_theirs = min(ours), min(theirs)
    print(f"| hashing {count} files, {total / 1e9:.1f} GB (page cache) | sha256sum {total / best_theirs / 1e6:.0f} MB/s | "
          f"service {total / best_ours / 1e6:.0f} MB/s | ratio {best_theirs / best_ours:.2f} (target >= 0.9) |")
    measured = [t for t in openssl if t is not None]
    if measured:
        best = min(measured)
        print(f"| the same against `openssl dgst -sha256` | openssl {total / best / 1e6:.0f} MB/s | service {total / best_ours / 1e6:.0f} MB/s | ratio {best / best_ours:.2f} |")
    print(f"| a restart on the same files | {restart.get('hashed')} files hashed again, {restart.get('calls')} CivitAI calls (target 0) |")
    print(f"| map answer ({CATALOG_ENTRIES} entries; {len(idle)} and {len(busy)} requests) | idle p50 {ms(idle, 0.5):.1f} ms, p99 {ms(idle, 0.99):.1f} ms | "
          f"while hashing p50 {ms(busy, 0.5):.1f} ms, p99 {ms(busy, 0.99):.1f} ms | ratio {ms(busy, 0.99) / ms(idle, 0.99):.2f} (target <= 1.2) |")


async def many_files(work: Path, civitai: FakeCivitai, civitai_url: str, count: int) -> None:
    models = work / "many-models"
    per_folder = 1000
    for start in range(0, count, per_folder):
        make_files(models / "loras" / f"set{start // per_folder:03d}", min(per_folder, count - start), 1024, civitai, 1_000_000 + start)
    catalogs = work / "many-catalogs"
    write_catalog(catalogs)
    calls_before = civitai.calls
    async with aiohttp.ClientSession() as session:
        service = Service(catalogs, models, civitai_url, work / "many.log")
        started = time.perf_counter()
        try:
            while ((await service.hashing(session)) or {}).get("state") not in ("hashing", "identifying"):
                await asyncio.sleep(0.01)
            done = asyncio.Event()
            latencies = asyncio.create_task(map_latencies(session, service.base, done))
            state = await service.wait_idle(session, count)
            elapsed = time.perf_counter() - started
            done.set()
            busy = await latencies
            quiet = asyncio.Event()
            latencies = asyncio.create_task(map_latencies(session, service.base, quiet))
            await asyncio.sleep(3.0)
            quiet.set()
            idle = await latencies
            async with session.get(f"{service.base}/api/admin/models/civitai-map", headers=AUTH) as response:
                shown = sum(1 for e in (await response.json())["by_version"].values() if e["catalog"] is None)
        finally:
            service.stop()
    calls = civitai.calls - calls_before
    print(f"| {count:,} small files identified | {calls} CivitAI calls (target <= {count // 100:,}) | {state['identified']:,} identified, "
          f"{shown:,} shown with catalog null | {elapsed:.1f} s from start |")
    print(f"| map answer while they are hashed and identified ({len(busy)} requests; the map grows to {CATALOG_ENTRIES + shown:,} entries) | "
          f"p50 {ms(busy, 0.5):.1f} ms, p99 {ms(busy, 0.99):.1f} ms | afterwards p50 {ms(idle, 0.5):.1f} ms, p99 {ms(idle, 0.99):.1f} ms |")


BUSY_LOOP = "while True:\n    sum(range(1000000))\n"


async def busy_machine(work: Path, civitai: FakeCivitai, civitai_url: str, seconds: float = 12.0) -> None:
    """Hashing while every core is kept busy by other programs (ComfyUI at work): the map must
    still answer at once, hashing must still move, and a stop must not wait for the file."""
    models = work / "busy-models"
    make_files(models / "loras", 4, 500_000_000, civitai, 5_000_000)
    catalogs = work / "busy-catalogs"
    write_catalog(catalogs)
    hogs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(os.cpu_count() or 2)]
    try:
        async with aiohttp.ClientSession() as session:
            service = Service(catalogs, models, civitai_url, work / "busy.log")
            try:
                await service.wait_ready(session)
                done = asyncio.Event()
                latencies = asyncio.create_task(map_latencies(session, service.base, done))
                await asyncio.sleep(seconds)
                done.set()
                busy = await latencies
                state = await service.hashing(session) or {}
            finally:
                stopping = time.perf_counter()
                service.stop()
                stopped = time.perf_counter() - stopping
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    print(f"| with every core kept busy by {len(hogs)} other processes, {seconds:.0f} s | map p50 {ms(busy, 0.5):.1f} ms, "
          f"p99 {ms(busy, 0.99):.1f} ms, worst {max(busy) * 1000:.0f} ms | {state.get('bytes_hashed', 0) / 1e9:.1f} GB hashed meanwhile | "
          f"stop on SIGTERM {stopped:.1f} s |")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=2.0, help="total size of the big files")
    parser.add_argument("--files", type=int, default=8, help="how many big files")
    parser.add_argument("--small", type=int, default=30_000, help="how many small files to identify")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--tmpdir", help="where the files go (default: the system temp folder)")
    args = parser.parse_args()
    civitai = FakeCivitai()
    runner, civitai_url = await civitai.serve()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-hashing-", dir=args.tmpdir) as folder:
            await big_files(Path(folder), civitai, civitai_url, args.size_gb, args.files, args.runs)
            await many_files(Path(folder), civitai, civitai_url, args.small)
            await busy_machine(Path(folder), civitai, civitai_url)
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
