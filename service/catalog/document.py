"""The catalog document: its names and place, its entries, and edits in place.

Pure functions on the parsed JSON. Key order and fields this service does not know are
kept: orjson keeps dict insertion order both ways, and edits touch only what they name.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..disk.folders import same_folder
from ..map.entry import catalog_id

Doc = dict[str, Any]
Entry = dict[str, Any]

CATALOG_NAMES = ("models", "loras")


def catalog_path(catalog_dir: Path, name: str) -> Path:
    """Where a catalog lives: `<CATALOG_DIR>/<name>.json`."""
    return catalog_dir / f"{name}.json"


def empty_catalog() -> Doc:
    """A new catalog with no categories."""
    return {"version": 0, "date": _now(), "categories": []}


def iter_entries(doc: Doc) -> Iterator[tuple[Doc, Entry]]:
    """Every (category, entry) pair whose entry is an object; anything else is carried, not read."""
    for category in doc.get("categories", []):
        for entry in category.get("models", []):
            if isinstance(entry, dict):
                yield category, entry


def version_id_of(entry: Entry) -> int | None:
    """The entry's CivitAI version id, accepting an int or a string of digits."""
    return catalog_id(entry.get("civitai_version_id"))


def model_id_of(entry: Entry) -> int | None:
    """The entry's CivitAI model id, accepting an int or a string of digits."""
    return catalog_id(entry.get("civitai_model_id"))


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
        if entry.get("file") == file and (dest is None or same_folder(entry.get("dest"), dest))
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
    """Bump `version` and set `date`, as every save must. A version only moves forward: one
    written as a string of digits stays a string of digits (of any length), a number becomes
    the next whole number above it; anything else (no order to keep) becomes 1."""
    version = doc.get("version")
    if isinstance(version, str) and version.isascii() and version.isdigit():
        doc["version"] = _next_digits(version)
    elif isinstance(version, float) and math.isfinite(version) and version >= 0:
        doc["version"] = math.floor(version) + 1
    elif isinstance(version, int) and not isinstance(version, bool) and version >= 0:
        doc["version"] = version + 1
    else:
        doc["version"] = 1
    doc["date"] = _now()


def _next_digits(digits: str) -> str:
    """A string of ASCII digits plus one, as written ("007" -> "008", "99" -> "100"), whatever its length."""
    nines = len(digits) - len(digits.rstrip("9"))
    head = digits[: len(digits) - nines]
    if not head:
        return "1" + "0" * nines
    return head[:-1] + str(int(head[-1]) + 1) + "0" * nines


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M")
