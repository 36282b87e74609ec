"""The catalog document: parse, validate, read entries out of it, and edit it in place.

Pure functions on the parsed JSON. Key order and fields this service does not know are
kept: orjson keeps dict insertion order both ways, and edits touch only what they name.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

Doc = dict[str, Any]
Entry = dict[str, Any]

CATALOG_NAMES = ("models", "loras")


def catalog_path(catalog_dir: Path, name: str) -> Path:
    """Where a catalog lives: `<CATALOG_DIR>/<name>.json`."""
    return catalog_dir / f"{name}.json"


def digest(raw: bytes) -> str:
    """The content hash used to recognise a catalog already read or written."""
    return hashlib.sha256(raw).hexdigest()


class CatalogFormatError(ValueError):
    """The bytes are not a catalog this service can read (bad JSON or wrong shape)."""


def empty_catalog() -> Doc:
    """A new catalog with no categories."""
    return {"version": 0, "date": _now(), "categories": []}


def parse_catalog(raw: bytes) -> Doc:
    """Parse catalog bytes; raise CatalogFormatError with a reason a person can act on."""
    if not raw.strip():
        raise CatalogFormatError("the file is empty")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CatalogFormatError(f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise CatalogFormatError("the top level is not a JSON object")
    categories = doc.get("categories", [])
    if not isinstance(categories, list):
        raise CatalogFormatError('"categories" is not a list')
    for position, category in enumerate(categories):
        if not isinstance(category, dict):
            raise CatalogFormatError(f"category #{position + 1} is not an object")
        if not isinstance(category.get("models", []), list):
            raise CatalogFormatError(f'"models" of category #{position + 1} is not a list')
    return doc


def serialize_catalog(doc: Doc) -> bytes:
    """Bytes to write: two-space indented UTF-8 JSON with a final newline, as people edit it."""
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"


def iter_entries(doc: Doc) -> Iterator[tuple[Doc, Entry]]:
    """Every (category, entry) pair whose entry is an object; anything else is carried, not read."""
    for category in doc.get("categories", []):
        for entry in category.get("models", []):
            if isinstance(entry, dict):
                yield category, entry


def version_id_of(entry: Entry) -> int | None:
    """The entry's CivitAI version id, accepting an int or a string of digits."""
    return _int_id(entry.get("civitai_version_id"))


def model_id_of(entry: Entry) -> int | None:
    """The entry's CivitAI model id, accepting an int or a string of digits."""
    return _int_id(entry.get("civitai_model_id"))


def find_version(doc: Doc, version_id: int) -> tuple[Doc, Entry] | None:
    """The first (category, entry) holding that CivitAI version."""
    for category, entry in iter_entries(doc):
        if version_id_of(entry) == version_id:
            return category, entry
    return None


def find_file(doc: Doc, file: str, dest: str | None = None) -> list[tuple[Doc, Entry]]:
    """Every (category, entry) with that file name, in that folder when one is given."""
    return [
        (category, entry)
        for category, entry in iter_entries(doc)
        if entry.get("file") == file and (dest is None or _same_folder(entry.get("dest"), dest))
    ]


def add_entry(doc: Doc, category_id: str, category_name: str, entry: Entry) -> None:
    """Append an entry to a category, creating the category at the end when missing."""
    category = ensure_category(doc, category_id, category_name)
    category["models"].append(entry)


def ensure_category(doc: Doc, category_id: str, category_name: str) -> Doc:
    """The category with that id, created (with an empty model list) when missing."""
    categories = doc.setdefault("categories", [])
    for category in categories:
        if category.get("id") == category_id:
            category.setdefault("models", [])
            return category
    category = {"id": category_id, "name": category_name, "models": []}
    categories.append(category)
    return category


def remove_entries(doc: Doc, doomed: list[Entry]) -> int:
    """Remove exactly these entry objects (by identity); return how many went."""
    ids = {id(entry) for entry in doomed}
    removed = 0
    for category in doc.get("categories", []):
        models = category.get("models", [])
        kept = [entry for entry in models if id(entry) not in ids]
        removed += len(models) - len(kept)
        if len(kept) != len(models):
            category["models"] = kept
    return removed


def stamp(doc: Doc) -> None:
    """Bump `version` and set `date`, as every save must."""
    version = doc.get("version")
    doc["version"] = version + 1 if isinstance(version, int) and not isinstance(version, bool) else 1
    doc["date"] = _now()


def canonical_folder(dest: str) -> str:
    """A folder with ComfyUI's legacy aliases folded into one name (unet -> diffusion_models, ...)."""
    first, sep, rest = dest.strip("/").partition("/")
    return FOLDER_ALIASES.get(first, first) + sep + rest


FOLDER_ALIASES = {
    "unet": "diffusion_models",
    "clip": "text_encoders",
    "t2i_adapter": "controlnet",
}


def _same_folder(a: object, b: str) -> bool:
    return isinstance(a, str) and canonical_folder(a) == canonical_folder(b)


def _int_id(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str) and value.isdigit() and len(value) <= 18:
        number = int(value)
        return number if number > 0 else None
    return None


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M")
