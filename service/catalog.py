"""The catalog document: parse, validate, read entries out of it, and edit it in place.

Pure functions on the parsed JSON. Key order and fields this service does not know are
kept: orjson keeps dict insertion order both ways, and edits touch only what they name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

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


# A run of 19+ digits may be an integer beyond 64 bits, which orjson reads as a float. The
# standard library keeps such integers. Only a run where a JSON number can start counts (after
# `:`, `[`, `,`, white space or a minus sign): digits inside a SHA256 string, which most real
# catalogs hold, follow a letter or a quote and must not send every parse down the slow path.
# Found by mapping digits to "1", those starters to "2" and everything else to "0", a block at
# a time: ten times faster than a regular expression on a 500 MB catalog, and never a copy of
# all of it. A match inside some other string only costs the slower parse.
LONG_DIGIT_RUN = 19
_NUMBER_STARTS = b":[, \t\r\n-"
_CLASSES = bytes(0x31 if 0x30 <= byte <= 0x39 else 0x32 if byte in _NUMBER_STARTS else 0x30 for byte in range(256))
_SCAN_BLOCK = 1 << 22


def _has_long_digit_run(raw: bytes) -> bool:
    needle = b"2" + b"1" * LONG_DIGIT_RUN
    view = memoryview(raw)
    return any(
        needle in bytes(view[start : start + _SCAN_BLOCK + LONG_DIGIT_RUN]).translate(_CLASSES)
        for start in range(0, len(raw), _SCAN_BLOCK)
    )


# orjson reads 1,024 levels but writes 254; the standard library writes them all given the room.
_DEEP_RECURSION_LIMIT = 20_000
_recursion_lock = threading.Lock()


class CatalogUnwritable(ValueError):
    """The document cannot be written back exactly as it was read."""


@contextlib.contextmanager
def _deep_recursion() -> Iterator[None]:
    """Room for the standard library's recursive parser and writer to go as deep as orjson reads."""
    with _recursion_lock:
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, _DEEP_RECURSION_LIMIT))
        try:
            yield
        finally:
            sys.setrecursionlimit(limit)


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def parse_catalog(raw: bytes) -> Doc:
    """Parse catalog bytes; raise CatalogFormatError with a reason a person can act on.

    Values survive a later save exactly: integers beyond 64 bits are read as integers.
    """
    if not raw.strip():
        raise CatalogFormatError("the file is empty")
    try:
        doc = orjson.loads(raw)
        if _has_long_digit_run(raw):
            with _deep_recursion():
                doc = json.loads(raw, parse_constant=_no_constants)
    except (orjson.JSONDecodeError, ValueError, RecursionError) as exc:
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
    """Bytes to write: two-space indented UTF-8 JSON with a final newline, as people edit it.

    orjson writes what it can; a document it cannot write faithfully (an integer beyond 64
    bits, nesting deeper than 254 levels) is written by the standard library in the same
    layout. CatalogUnwritable when neither can, so nothing is ever saved altered.
    """
    try:
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"
    except orjson.JSONEncodeError:
        pass
    try:
        with _deep_recursion():
            text = json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False)
    except (ValueError, TypeError, RecursionError) as exc:
        raise CatalogUnwritable(f"it holds a value that cannot be written back unchanged ({exc})") from None
    try:
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:  # a lone surrogate escape (\ud800) read by the standard library: keep it escaped
        return json.dumps(doc, indent=2, ensure_ascii=True).encode("ascii") + b"\n"


class _Unstreamable(Exception):
    """orjson cannot write a piece: the whole document goes through `serialize_catalog` instead."""


def write_catalog(handle: BinaryIO, doc: Doc) -> str:
    """Write to a fresh, seekable file what `serialize_catalog` returns, byte for byte, but piece
    by piece, so a huge catalog is never in memory twice (as a document and as bytes). Returns
    the content's `digest`. A document orjson cannot write is rewritten by the fallback."""
    hasher = hashlib.sha256()
    buffered: list[bytes] = []
    try:
        for piece in _top_pieces(doc):
            buffered.append(piece)
            if len(buffered) >= 512:
                chunk = b"".join(buffered)
                buffered.clear()
                hasher.update(chunk)
                handle.write(chunk)
    except _Unstreamable:
        handle.seek(0)
        handle.truncate()
        raw = serialize_catalog(doc)
        handle.write(raw)
        return digest(raw)
    buffered.append(b"\n")
    chunk = b"".join(buffered)
    hasher.update(chunk)
    handle.write(chunk)
    return hasher.hexdigest()


def _dumps_indented(value: object, indent: int) -> bytes:
    try:
        text = orjson.dumps(value, option=orjson.OPT_INDENT_2)
    except orjson.JSONEncodeError:
        raise _Unstreamable() from None
    return text.replace(b"\n", b"\n" + b" " * indent) if indent else text


def _top_pieces(doc: Doc) -> Iterator[bytes]:
    """orjson's OPT_INDENT_2 layout, with the category lists and their entries written one by one."""
    if not doc:
        yield b"{}"
        return
    yield b"{\n"
    last = len(doc) - 1
    for position, (key, value) in enumerate(doc.items()):
        if not isinstance(key, str):
            raise _Unstreamable()
        yield b"  " + orjson.dumps(key) + b": "
        if key == "categories" and isinstance(value, list) and value:
            yield from _list_pieces(value, 2, _category_pieces)
        else:
            yield _dumps_indented(value, 2)
        yield b",\n" if position < last else b"\n"
    yield b"}"


def _list_pieces(items: list[Any], indent: int, each: Callable[[Any, int], Iterator[bytes]]) -> Iterator[bytes]:
    pad = b" " * (indent + 2)
    yield b"[\n"
    last = len(items) - 1
    for position, item in enumerate(items):
        yield pad
        yield from each(item, indent + 2)
        yield b",\n" if position < last else b"\n"
    yield b" " * indent + b"]"


def _category_pieces(category: Any, indent: int) -> Iterator[bytes]:
    models = category.get("models") if isinstance(category, dict) else None
    if not isinstance(models, list) or not models:
        yield _dumps_indented(category, indent)
        return
    pad = b" " * (indent + 2)
    yield b"{\n"
    last = len(category) - 1
    for position, (key, value) in enumerate(category.items()):
        if not isinstance(key, str):
            raise _Unstreamable()
        yield pad + orjson.dumps(key) + b": "
        if key == "models":
            yield from _list_pieces(value, indent + 2, lambda entry, at: iter((_dumps_indented(entry, at),)))
        else:
            yield _dumps_indented(value, indent + 2)
        yield b",\n" if position < last else b"\n"
    yield b" " * indent + b"}"


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
    """Bump `version` and set `date`, as every save must. A version written as a string of
    digits stays a string; one written as a whole float becomes an integer."""
    version = doc.get("version")
    if isinstance(version, str) and _is_ascii_number(version):
        doc["version"] = str(int(version) + 1)
    elif isinstance(version, float) and version.is_integer() and version >= 0:
        doc["version"] = int(version) + 1
    elif isinstance(version, int) and not isinstance(version, bool) and version >= 0:
        doc["version"] = version + 1
    else:
        doc["version"] = 1
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


MAX_ID = 2**63 - 1


def _is_ascii_number(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 18


def _int_id(value: object) -> int | None:
    """A positive JSON integer below 2**63, or a string of ASCII digits; nothing else is an id."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 < value <= MAX_ID else None
    if isinstance(value, str) and _is_ascii_number(value):
        number = int(value)
        return number if number > 0 else None
    return None


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M")
