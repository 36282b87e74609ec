"""What a workflow needs, timed: a 300-node workflow resolved against a 10,000-entry library, and
the memory a 50 MB PNG costs the service. Loopback only.

    python bench/workflow.py [--entries 10000] [--nodes 300] [--png-mb 50] [--runs 30]

Targets: a 300-node workflow answered in at most 100 ms (the worst of the runs, from the request
to the whole answer); a 50 MB PNG raises the service's peak memory by no more than its text
chunks (here 1 MB of workflow) plus 8 MB of buffers.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from harness.common import read_proc_status  # noqa: E402
from harness.dataset import generate  # noqa: E402
from loopback import KEY, ServiceProcess  # noqa: E402

ROUTE = "/api/admin/workflow/requirements"
LOADERS = [("CheckpointLoaderSimple", "checkpoints"), ("LoraLoader", "loras"), ("VAELoader", "vae"), ("UNETLoader", "diffusion_models")]


def workflow(nodes: int, files: list[str]) -> dict[str, Any]:
    """A UI-format workflow of `nodes` nodes: a third of them loaders naming files of the library
    (and some that are nowhere), the rest samplers and prompts with long texts."""
    built = []
    for number in range(nodes):
        if number % 3 == 0:
            kind, _folder = LOADERS[number % len(LOADERS)]
            name = files[number % len(files)] if number % 2 else f"nowhere_{number}.safetensors"
            built.append({"id": number, "type": kind, "pos": [number, number], "size": [315, 98], "widgets_values": [name, 1.0, 1.0]})
        elif number % 3 == 1:
            built.append({"id": number, "type": "CLIPTextEncode", "widgets_values": [f"a prompt {number}, embedding:neg_{number % 7}, " + "detail " * 50]})
        else:
            built.append({"id": number, "type": "KSampler", "widgets_values": [number, "randomize", 20, 7.0, "euler", "normal", 1.0]})
    return {"last_node_id": nodes, "nodes": built, "links": [], "version": 0.4}


def big_png(text: bytes, megabytes: int) -> bytes:
    """A PNG of about `megabytes` MB: a workflow text chunk, then that much pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 4096, 4096, 8, 2, 0, 0, 0))
    pixels = b"".join(chunk(b"IDAT", os.urandom(1024 * 1024)) for _ in range(megabytes))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"tEXt", b"workflow\x00" + text) + pixels + chunk(b"IEND", b"")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--nodes", type=int, default=300)
    parser.add_argument("--png-mb", type=int, default=50)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-workflow-") as work:
        dataset = generate(args.entries, Path(work))
        files = sorted(p.name for p in dataset.models_dir.rglob("*.safetensors"))[:500]
        service = ServiceProcess(dataset.catalog_dir, dataset.models_dir, "http://127.0.0.1:9", Path(work) / "service.log", HASHING="off")
        proc, base = service.proc, service.base
        try:
            async with aiohttp.ClientSession() as session:
                await service.wait_ready(session, timeout_s=120)
                graph = json.dumps(workflow(args.nodes, files)).encode()
                headers = {"X-API-Key": KEY, "Content-Type": "application/json"}
                times, models = [], 0
                for _ in range(args.runs):
                    started = time.perf_counter()
                    async with session.post(f"{base}{ROUTE}", data=graph, headers=headers) as response:
                        answer = await response.json()
                    times.append((time.perf_counter() - started) * 1000)
                    models = len(answer["models"])
                text = json.dumps({"nodes": json.loads(json.dumps(workflow(300, files)))["nodes"], "padding": "x" * (1024 * 1024)}).encode()
                png = big_png(text, args.png_mb)
                before = read_proc_status(proc.pid)
                async with session.post(f"{base}{ROUTE}", data=io.BytesIO(png), headers={"X-API-Key": KEY, "Content-Type": "image/png"}) as response:
                    status = response.status
                after = read_proc_status(proc.pid)
        finally:
            service.stop()
    worst, median = max(times), sorted(times)[len(times) // 2]
    grew_mb = (after.get("VmHWM", 0) - before.get("VmHWM", 0)) / 1024
    result = {"nodes": args.nodes, "models_listed": models, "median_ms": round(median, 1), "worst_ms": round(worst, 1),
              "png_mb": round(len(png) / 1e6, 1), "png_status": status, "peak_rss_growth_mb": round(grew_mb, 1), "text_mb": round(len(text) / 1e6, 1)}
    print(json.dumps(result, indent=2))
    targets = {f"a {args.nodes}-node workflow in at most 100 ms": worst <= 100,
               f"a {args.png_mb} MB PNG costs at most its text + 8 MB": status == 200 and grew_mb <= len(text) / 1e6 * 2 + 8}
    for target, met in targets.items():
        print(f"{'met ' if met else 'MISSED'}  {target}")
    sys.exit(0 if all(targets.values()) else 1)


if __name__ == "__main__":
    asyncio.run(main())
