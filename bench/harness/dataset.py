"""The generated libraries: catalogs of N entries over every folder kind, half their files on disk, and the truth to check the map against."""


import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .common import FID_BASE, MID_BASE, VID_BASE

MODEL_DESTS = [
    ("checkpoints", "Checkpoints", 0.28, "safetensors"),
    ("loras", "LoRAs", 0.22, "safetensors"),
    ("vae", "VAE", 0.05, "safetensors"),
    ("embeddings", "Embeddings", 0.15, "pt"),
    ("controlnet", "ControlNet", 0.10, "safetensors"),
    ("upscale_models", "Upscale models", 0.05, "pth"),
    ("diffusion_models", "Diffusion models", 0.15, "safetensors"),
]
LORA_CATEGORIES = [
    ("illustrious_loras", "Illustrious LoRAs", "Illustrious"),
    ("sdxl_loras", "SDXL LoRAs", "SDXL 1.0"),
    ("pony_loras", "Pony LoRAs", "Pony"),
    ("flux_loras", "Flux LoRAs", "Flux.1 D"),
]
BASE_MODELS = ["Illustrious", "SDXL 1.0", "Pony", "Flux.1 D", "SD 1.5", "NoobAI"]
TAGS = [[], ["anime"], ["style", "painterly"], ["character"], ["realistic", "photo"], ["concept"]]
SUBFOLDER_EVERY = 5  # every 5th entry's file lives in a subfolder of its dest
N_SUBFOLDERS = 37


@dataclass
class Truth:
    """Ground truth for one generated entry."""

    vid: int
    mid: int
    fid: int
    file: str
    dest: str
    subdir: str  # "" or the subfolder the file lives in (when present)
    present: bool
    catalog: str  # "models" or "loras"
    name: str


@dataclass
class Dataset:
    n: int
    root: Path
    catalog_dir: Path
    models_dir: Path
    truth: list[Truth]
    gen_seconds: float
    files_created: int


def _entry(i: int, dest: str, ext: str, base_model: str, catalog: str) -> tuple[dict[str, Any], Truth]:
    vid, mid, fid = VID_BASE + i, MID_BASE + i // 3, FID_BASE + i
    fname = f"bench_{dest}_{i:06d}_v{i % 3 + 1}.{ext}"
    name = f"Bench {dest} model {i // 3} v{i % 3 + 1}"
    present = i % 2 == 0
    subdir = f"pack_{i % N_SUBFOLDERS:02d}" if i % SUBFOLDER_EVERY == 0 else ""
    entry = {
        "name": name,
        "file": fname,
        "dest": dest,
        "source": "civitai",
        "civitai_version_id": vid,
        "civitai_model_id": mid,
        "civitai_file_id": fid,
        "size_gb": round(0.05 + (i % 97) * 0.07, 3),
        "base_model": base_model,
        "tags": TAGS[i % len(TAGS)],
        "hash": hashlib.sha256(b"bench%d" % i).hexdigest().upper(),
    }
    return entry, Truth(vid, mid, fid, fname, dest, subdir, present, catalog, name)


def generate(n: int, root: Path, models_parent: Path | None = None) -> Dataset:
    """N entries: ~70% models.json spread over all dests, ~30% loras.json; half the files exist.

    The catalogs go to <root>/catalogs, the models folder to <models_parent or root>/models.
    """
    t0 = time.perf_counter()
    catalog_dir = root / "catalogs"
    models_dir = (models_parent or root) / "models"
    catalog_dir.mkdir(parents=True)
    models_dir.mkdir(parents=True)
    n_models = int(round(n * 0.7))
    truth: list[Truth] = []

    # models.json: contiguous blocks per dest according to the shares.
    model_cats: list[dict[str, Any]] = []
    i = 0
    for k, (dest, cat_name, share, ext) in enumerate(MODEL_DESTS):
        count = n_models - i if k == len(MODEL_DESTS) - 1 else int(n_models * share)
        models = []
        for _ in range(count):
            entry, t = _entry(i, dest, ext, BASE_MODELS[i % len(BASE_MODELS)], "models")
            models.append(entry)
            truth.append(t)
            i += 1
        model_cats.append({"id": dest, "name": cat_name, "models": models})

    # loras.json: all dest "loras", categories by base model.
    lora_cats: list[dict[str, Any]] = [{"id": cid, "name": cname, "models": []} for cid, cname, _ in LORA_CATEGORIES]
    while i < n:
        k = i % len(LORA_CATEGORIES)
        entry, t = _entry(i, "loras", "safetensors", LORA_CATEGORIES[k][2], "loras")
        lora_cats[k]["models"].append(entry)
        truth.append(t)
        i += 1

    date = "2026-11-23 14:05"
    opts = orjson.OPT_INDENT_2
    (catalog_dir / "models.json").write_bytes(orjson.dumps({"version": 1, "date": date, "categories": model_cats}, option=opts))
    (catalog_dir / "loras.json").write_bytes(orjson.dumps({"version": 1, "date": date, "categories": lora_cats}, option=opts))

    # Folders (all dests, plus the subfolders), then the present half of the files.
    for dest, *_ in MODEL_DESTS:
        (models_dir / dest).mkdir(exist_ok=True)
        for s in range(N_SUBFOLDERS):
            (models_dir / dest / f"pack_{s:02d}").mkdir(exist_ok=True)
    created = 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    base = str(models_dir)
    for t in truth:
        if t.present:
            path = f"{base}/{t.dest}/{t.subdir}/{t.file}" if t.subdir else f"{base}/{t.dest}/{t.file}"
            os.close(os.open(path, flags, 0o644))
            created += 1
    return Dataset(n, root, catalog_dir, models_dir, truth, time.perf_counter() - t0, created)


def atomic_write_json(path: Path, doc: Any) -> None:
    """Editor-style save: write a temp file next to the target, then os.replace it."""
    tmp = path.with_name(f".{path.name}.bench-{os.getpid()}.tmp")
    data = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------
# Fake CivitAI (in-process aiohttp server on loopback)
# --------------------------------------------------------------------------------------
