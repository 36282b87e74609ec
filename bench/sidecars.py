"""A library other managers already described: 30,000 model files with sidecars (LoRA Manager,
Stability Matrix and Civitai Helper mixed), some stale, some lying. Loopback only.

    python bench/sidecars.py [--files 30000] [--file-kb 16]

Measures, from the start of `python -m service` with HASHING=on and a fake CivitAI that counts
what it is asked:
- the time until every truthful file is in the map (target: 10 s), and how many of them were
  still known only by their sidecar then (all of them: none was hashed before it was shown);
- the CivitAI lookups made for files whose sidecar has ids (target: 0);
- that every lying sidecar is caught once the background hasher has read the bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hashing import FakeCivitai, Service  # noqa: E402
from loopback import AUTH  # noqa: E402

STALE_EVERY = 20  # one sidecar in 20 is older than its model (not trusted: hashed and looked up)
LIAR_EVERY = 100  # one in 100 names other bytes and another version (caught by the hash)
FIRST_VERSION = 100_000
LIE_VERSION = 900_000


def sidecar(kind: int, name: str, size: int, sha256: str, version_id: int) -> tuple[str, dict[str, Any]]:
    """One of the three formats, as each tool writes it (the fields this service reads)."""
    stem = name.rsplit(".", 1)[0]
    files = [{"id": version_id, "name": name, "sizeKB": size / 1024, "type": "Model", "primary": True, "hashes": {"SHA256": sha256.upper()}}]
    version = {"id": version_id, "modelId": version_id, "name": f"v{version_id}", "baseModel": "SDXL 1.0",
               "model": {"name": f"Model {version_id}", "type": "LORA"}, "files": files}
    if kind == 0:
        return f"{stem}.metadata.json", {"file_name": stem, "model_name": f"Model {version_id}", "size": size, "sha256": sha256,
                                         "base_model": "SDXL 1.0", "from_civitai": True, "civitai": version}
    if kind == 1:
        return f"{stem}.cm-info.json", {"ModelId": version_id, "ModelName": f"Model {version_id}", "ModelType": "LORA", "VersionId": version_id,
                                        "VersionName": f"v{version_id}", "BaseModel": "SDXL 1.0", "Hashes": {"SHA256": sha256.upper()}}
    return f"{stem}.civitai.info", version


def make_library(models: Path, count: int, size: int, civitai: FakeCivitai) -> dict[str, set[int]]:
    """The files and their sidecars; CivitAI knows every file's real hash. Returns the versions of
    truthful, stale and lying files."""
    folder = models / "loras"
    folder.mkdir(parents=True)
    kinds: dict[str, set[int]] = {"truthful": set(), "stale": set(), "liar": set()}
    for number in range(count):
        name = f"lora_{number:06d}.safetensors"
        data = number.to_bytes(8, "big") * (size // 8)
        path = folder / name
        path.write_bytes(data)
        sha256 = hashlib.sha256(data).hexdigest()
        version_id = FIRST_VERSION + number
        civitai.knows(sha256, version_id, name)
        if number % LIAR_EVERY == 1:
            kind = "liar"
            told_sha, told_version = hashlib.sha256(b"other" + data).hexdigest(), LIE_VERSION + number
        else:
            kind = "stale" if number % STALE_EVERY == 2 else "truthful"
            told_sha, told_version = sha256, version_id
        sidecar_name, body = sidecar(number % 3, name, size, told_sha, told_version)
        sidecar_path = folder / sidecar_name
        sidecar_path.write_bytes(json.dumps(body).encode())
        if kind == "stale":
            model_mtime = path.stat().st_mtime_ns
            os.utime(sidecar_path, ns=(model_mtime - 10**9, model_mtime - 10**9))
        kinds[kind].add(version_id)
    return kinds


async def shown_entries(session: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    try:
        async with session.get(f"{base}/api/admin/models/civitai-map", headers=AUTH) as response:
            if response.status != 200:
                return {}
            return (await response.json())["by_version"]
    except aiohttp.ClientError:
        return {}


async def run(count: int, size: int) -> dict[str, Any]:
    civitai = FakeCivitai()
    runner, civitai_url = await civitai.serve()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-sidecars-") as work:
            root = Path(work)
            (root / "catalogs").mkdir()
            made = time.perf_counter()
            kinds = make_library(root / "models", count, size, civitai)
            print(f"made {count} files with sidecars in {time.perf_counter() - made:.1f} s", flush=True)
            truthful = {str(v) for v in kinds["truthful"]}
            async with aiohttp.ClientSession() as session:
                started = time.perf_counter()
                service = Service(root / "catalogs", root / "models", civitai_url, root / "service.log")
                try:
                    while True:
                        entries = await shown_entries(session, service.base)
                        if truthful <= entries.keys():
                            shown_s = time.perf_counter() - started
                            by_sidecar = sum(1 for v in truthful if entries[v].get("identified_by") == "sidecar")
                            break
                        if service.proc.poll() is not None or time.perf_counter() - started > 300:
                            raise RuntimeError(f"the truthful files were not all shown; see {service.log}")
                        await asyncio.sleep(0.05)
                    calls_when_shown, asked_when_shown = civitai.calls, civitai.hashes_asked
                    state = await service.wait_idle(session, count)
                    idle_s = time.perf_counter() - started
                    entries = await shown_entries(session, service.base)
                finally:
                    service.stop()
                    for line in service.log.read_text().splitlines():
                        if any(word in line for word in ("index ready", "hashing ", "sidecars not trusted", "identified ")):
                            print("  service:", line[:160])
                            if "hashing " in line:
                                break
    finally:
        await runner.cleanup()
    lies_shown = sum(1 for v in kinds["liar"] if str(LIE_VERSION - FIRST_VERSION + v) in entries)
    return {
        "files": count,
        "truthful": len(truthful),
        "stale": len(kinds["stale"]),
        "liars": len(kinds["liar"]),
        "all_truthful_shown_s": round(shown_s, 2),
        "shown_before_hashed": by_sidecar,
        "civitai_hashes_asked_when_shown": asked_when_shown,
        "civitai_calls_when_shown": calls_when_shown,
        "civitai_hashes_asked_in_all": civitai.hashes_asked,
        "liars_caught": state.get("sidecars_caught"),
        "lies_in_map_at_the_end": lies_shown,
        "all_hashed_and_confirmed_s": round(idle_s, 1),
        "every_file_in_the_map_at_the_end": all(str(FIRST_VERSION + n) in entries for n in range(count)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=30_000)
    parser.add_argument("--file-kb", type=int, default=16, help="size of each model file")
    args = parser.parse_args()
    result = asyncio.run(run(args.files, args.file_kb * 1024))
    print(json.dumps(result, indent=2))
    targets = {
        "every truthful file in the map within 10 s": result["all_truthful_shown_s"] <= 10,
        "none hashed before it was shown": result["shown_before_hashed"] == result["truthful"],
        "no CivitAI lookup for files whose sidecar has ids": result["civitai_hashes_asked_in_all"] == result["stale"] + result["liars"],
        "every liar caught": result["liars_caught"] == result["liars"] and result["lies_in_map_at_the_end"] == 0,
    }
    for target, met in targets.items():
        print(f"{'met ' if met else 'MISSED'}  {target}")
    sys.exit(0 if all(targets.values()) else 1)


if __name__ == "__main__":
    main()
