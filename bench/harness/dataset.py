"""The generated libraries: catalogs of N entries over every folder kind, half their files on disk, and the truth.

Everything streams: a catalog is written entry by entry and the truth of entry i is computed
from i when asked, so a 1,000,000-entry or a 500 MB catalog never sits in the harness as
Python objects.
"""

import hashlib
import os
import re
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, overload

import orjson

from .common import FID_BASE, MID_BASE, VID_BASE

# (dest, category name, share of models.json, file extension)
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
SUBFOLDERS = [f"pack_{s:02d}" for s in range(N_SUBFOLDERS)]
CATALOG_DATE = "2026-11-23 14:05"
NOTE_LINE = "Bench notes, an unknown field the service must keep as it is. "
# Where the first entry's name is looked for when an edit changes it: it sits near the top of models.json.
EDIT_HEAD_BYTES = 1 << 20
COPY_CHUNK_BYTES = 1 << 20  # write buffer and copy chunk: streaming, never the whole file


@dataclass(frozen=True, slots=True)
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


class Truths(Sequence[Truth]):
    """The truth of entries 0..n-1, each computed from its index: models.json blocks per dest, then loras.json."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.n_models = int(round(n * 0.7))
        # models.json: contiguous blocks per dest according to the shares, the last block takes the rest.
        self.block_starts: list[int] = []
        start = 0
        for k, (_dest, _name, share, _ext) in enumerate(MODEL_DESTS):
            self.block_starts.append(start)
            start += self.n_models - start if k == len(MODEL_DESTS) - 1 else int(self.n_models * share)

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, i: int) -> Truth: ...

    @overload
    def __getitem__(self, i: slice) -> list[Truth]: ...

    def __getitem__(self, i: int | slice) -> Truth | list[Truth]:
        if isinstance(i, slice):
            return [self.truth(k) for k in range(*i.indices(self.n))]
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.truth(i)

    def __iter__(self) -> Iterator[Truth]:
        return (self.truth(i) for i in range(self.n))

    def placement(self, i: int) -> tuple[str, str, str]:
        """(dest, file extension, base model) of entry i."""
        if i < self.n_models:
            dest, _name, _share, ext = MODEL_DESTS[bisect_right(self.block_starts, i) - 1]
            return dest, ext, BASE_MODELS[i % len(BASE_MODELS)]
        return "loras", "safetensors", LORA_CATEGORIES[i % len(LORA_CATEGORIES)][2]

    def truth(self, i: int) -> Truth:
        """The truth of entry i."""
        dest, ext, _base = self.placement(i)
        return Truth(
            vid=VID_BASE + i, mid=MID_BASE + i // 3, fid=FID_BASE + i,
            file=f"bench_{dest}_{i:06d}_v{i % 3 + 1}.{ext}", dest=dest,
            subdir=SUBFOLDERS[i % N_SUBFOLDERS] if i % SUBFOLDER_EVERY == 0 else "",
            present=i % 2 == 0, catalog="models" if i < self.n_models else "loras",
            name=f"Bench {dest} model {i // 3} v{i % 3 + 1}",
        )

    def entry(self, i: int, notes: str = "") -> dict[str, Any]:
        """The catalog entry of entry i (with a "notes" field when `notes` is given)."""
        t = self.truth(i)
        _dest, _ext, base_model = self.placement(i)
        entry: dict[str, Any] = {
            "name": t.name,
            "file": t.file,
            "dest": t.dest,
            "source": "civitai",
            "civitai_version_id": t.vid,
            "civitai_model_id": t.mid,
            "civitai_file_id": t.fid,
            "size_gb": round(0.05 + (i % 97) * 0.07, 3),
            "base_model": base_model,
            "tags": TAGS[i % len(TAGS)],
            "hash": hashlib.sha256(b"bench%d" % i).hexdigest().upper(),
        }
        if notes:
            entry["notes"] = notes
        return entry


@dataclass
class Dataset:
    """One generated library on disk and its truth."""
    n: int
    root: Path
    catalog_dir: Path
    models_dir: Path
    truth: Truths
    gen_seconds: float
    files_created: int

    @property
    def models_json(self) -> Path:
        """The catalog the edits and the adds change."""
        return self.catalog_dir / "models.json"


Category = tuple[str, str, Iterable[dict[str, Any]]]  # (id, name, entries)


def write_catalog(out: BinaryIO, categories: Iterable[Category]) -> None:
    """Write a catalog entry by entry, byte for byte as orjson.dumps(doc, option=OPT_INDENT_2) would."""
    out.write(b'{\n  "version": 1,\n  "date": ' + orjson.dumps(CATALOG_DATE) + b',\n  "categories": [')
    any_category = False
    for cat_id, cat_name, entries in categories:
        out.write((b"," if any_category else b"") + b'\n    {\n      "id": ' + orjson.dumps(cat_id)
                  + b',\n      "name": ' + orjson.dumps(cat_name) + b',\n      "models": [')
        any_category = True
        any_entry = False
        for entry in entries:
            body = orjson.dumps(entry, option=orjson.OPT_INDENT_2).replace(b"\n", b"\n        ")
            out.write((b"," if any_entry else b"") + b"\n        " + body)
            any_entry = True
        out.write(b"\n      ]\n    }" if any_entry else b"]\n    }")
    out.write(b"\n  ]\n}" if any_category else b"]\n}")


def notes_for(catalog_bytes: int, n: int) -> str:
    """A notes string that makes models.json of n entries about `catalog_bytes` long (0: none)."""
    per_entry = catalog_bytes // max(1, int(round(n * 0.7))) - 480  # an entry without notes is about 480 bytes
    if catalog_bytes <= 0 or per_entry <= 0:
        return ""
    return (NOTE_LINE * (per_entry // len(NOTE_LINE) + 1))[:per_entry]


def generate(n: int, root: Path, models_parent: Path | None = None, catalog_bytes: int = 0) -> Dataset:
    """N entries: ~70% models.json spread over all dests, ~30% loras.json; half the files exist.

    The catalogs go to <root>/catalogs, the models folder to <models_parent or root>/models.
    With `catalog_bytes`, every models.json entry carries a long "notes" string so that the
    file is about that big.
    """
    t0 = time.perf_counter()
    catalog_dir = root / "catalogs"
    models_dir = (models_parent or root) / "models"
    catalog_dir.mkdir(parents=True)
    models_dir.mkdir(parents=True)
    truth = Truths(n)
    notes = notes_for(catalog_bytes, n)
    ends = truth.block_starts[1:] + [truth.n_models]
    model_cats: list[Category] = [
        (dest, cat_name, (truth.entry(i, notes) for i in range(start, end)))
        for (dest, cat_name, _share, _ext), start, end in zip(MODEL_DESTS, truth.block_starts, ends)
    ]
    # loras.json: all dest "loras", entry i in category i % 4.
    first_lora = truth.n_models
    lora_cats: list[Category] = [
        (cat_id, cat_name, (truth.entry(i) for i in range(first_lora + (k - first_lora) % len(LORA_CATEGORIES), n,
                                                           len(LORA_CATEGORIES))))
        for k, (cat_id, cat_name, _base) in enumerate(LORA_CATEGORIES)
    ]
    for name, cats in (("models.json", model_cats), ("loras.json", lora_cats)):
        with open(catalog_dir / name, "wb", buffering=COPY_CHUNK_BYTES) as out:
            write_catalog(out, cats)

    # Folders (all dests, plus the subfolders), then the present half of the files.
    for dest, *_ in MODEL_DESTS:
        (models_dir / dest).mkdir(exist_ok=True)
        for sub in SUBFOLDERS:
            (models_dir / dest / sub).mkdir(exist_ok=True)
    created = 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    base = str(models_dir)
    for i in range(0, n, 2):  # the even entries are present
        t = truth.truth(i)
        path = f"{base}/{t.dest}/{t.subdir}/{t.file}" if t.subdir else f"{base}/{t.dest}/{t.file}"
        os.close(os.open(path, flags, 0o644))
        created += 1
    return Dataset(n, root, catalog_dir, models_dir, truth, time.perf_counter() - t0, created)


def atomic_write_json(path: Path, doc: Any) -> None:
    """Editor-style save: write a temp file next to the target, then os.replace it."""
    _replace_with(path, lambda out: out.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2)))


def rewrite_with_new_name(path: Path, old_name: str, new_name: str) -> None:
    """Editor-style save of `path` with one entry renamed, copied in chunks (the entry must be near the top)."""
    old = re.compile(rb'("name":\s*)' + re.escape(orjson.dumps(old_name)))
    new = orjson.dumps(new_name)

    def copy(out: BinaryIO) -> None:
        with open(path, "rb") as src:
            head = src.read(EDIT_HEAD_BYTES)
            head, found = old.subn(lambda match: match.group(1) + new, head, count=1)
            if not found:
                raise ValueError(f"{old_name!r} is not in the first {EDIT_HEAD_BYTES} bytes of {path.name}")
            out.write(head)
            while chunk := src.read(COPY_CHUNK_BYTES):
                out.write(chunk)

    _replace_with(path, copy)


# Layouts other programs save a catalog in, made from this service's (two-space indents, LF).
LAYOUTS = ("four-spaces", "tabs", "crlf", "minified")
_MAX_DEPTH = 32  # deeper than any generated catalog is indented


def relayout(raw: bytes, layout: str) -> bytes:
    """A catalog written with two-space indents, in another layout, the same JSON (C speed: JSON
    text holds line breaks only between tokens, and \\x01 nowhere)."""
    if layout == "minified":
        return orjson.dumps(orjson.loads(raw))
    if layout == "crlf":
        return raw.replace(b"\n", b"\r\n")
    unit = {"four-spaces": b"    ", "tabs": b"\t"}[layout]
    for depth in range(_MAX_DEPTH, 0, -1):  # deepest first: a shallower indent is a prefix of a deeper one
        raw = raw.replace(b"\n" + b"  " * depth, b"\n" + b"\x01" * depth)
    return raw.replace(b"\x01", unit)


def write_renamed(path: Path, raw: bytes, old_name: str, new_name: str) -> None:
    """Editor-style save of `raw` as `path` with one entry (near the top) renamed."""
    old = re.compile(rb'("name":\s*)' + re.escape(orjson.dumps(old_name)))
    head, found = old.subn(lambda match: match.group(1) + orjson.dumps(new_name), raw[:EDIT_HEAD_BYTES], count=1)
    if not found:
        raise ValueError(f"{old_name!r} is not in the first {EDIT_HEAD_BYTES} bytes")
    view = memoryview(raw)
    _replace_with(path, lambda out: (out.write(head), out.write(view[EDIT_HEAD_BYTES:])))


def _replace_with(path: Path, write: Callable[[BinaryIO], object]) -> None:
    tmp = path.with_name(f".{path.name}.bench-{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_map(doc: Any, truth: Sequence[Truth], extra_vids: int = 0) -> dict[str, Any]:
    """Compare the full map with the generated ground truth (one pass over the truth)."""
    res: dict[str, Any] = {"ok": False}
    if not isinstance(doc, dict) or not isinstance(doc.get("by_version"), dict):
        res["problem"] = "body has no by_version object"
        return res
    bv = doc["by_version"]
    bm = doc.get("by_model") if isinstance(doc.get("by_model"), dict) else {}
    res["by_version_count"] = len(bv)
    res["by_model_count"] = len(bm)
    res["expected_versions"] = len(truth)
    res["present_count"] = sum(1 for v in bv.values() if isinstance(v, dict) and v.get("status") == "present")
    mismatches: list[str] = []
    n_bad = 0
    expected_present = 0
    model_ids: set[int] = set()
    for t in truth:
        expected_present += t.present
        model_ids.add(t.mid)
        e = bv.get(str(t.vid))
        problem = None
        if not isinstance(e, dict):
            problem = "missing from by_version"
        elif e.get("status") != ("present" if t.present else "missing"):
            problem = f"status {e.get('status')!r}, expected {'present' if t.present else 'missing'}"
            if t.subdir:
                problem += f" (file in subfolder {t.dest}/{t.subdir})"
        elif e.get("file") != t.file or e.get("dest") != t.dest:
            problem = f"file/dest {e.get('file')!r}/{e.get('dest')!r}"
        elif e.get("civitai_model_id") not in (t.mid, str(t.mid)):
            problem = f"civitai_model_id {e.get('civitai_model_id')!r}"
        if problem:
            n_bad += 1
            if len(mismatches) < 5:
                mismatches.append(f"vid {t.vid}: {problem}")
    res["expected_models"] = len(model_ids)
    res["expected_present"] = expected_present
    if bm:
        missing_models = sum(1 for mid in model_ids if str(mid) not in bm)
        if missing_models:
            n_bad += missing_models
            mismatches.append(f"{missing_models} model ids missing from by_model")
    res["mismatches"] = n_bad
    res["mismatch_examples"] = mismatches
    res["ok"] = n_bad == 0 and len(bv) == len(truth) + extra_vids
    return res
