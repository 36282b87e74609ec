"""The catalog document: parse, validate, read entries out of it, and edit it in place.

Pure functions on the parsed JSON. Key order and fields this service does not know are
kept: orjson keeps dict insertion order both ways, and edits touch only what they name.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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


def file_digest(handle: BinaryIO) -> str:
    """`digest` of an open file's content from where it stands, read in blocks (never all of it in memory)."""
    return hashlib.file_digest(handle, "sha256").hexdigest()


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
    doc = load_json(raw)
    check_shape(doc)
    return doc


def load_json(raw: bytes) -> Any:
    """Any JSON text, integers beyond 64 bits kept as integers; CatalogFormatError when it is not JSON."""
    try:
        value = orjson.loads(raw)
        if _has_long_digit_run(raw):
            with _deep_recursion():
                value = json.loads(raw, parse_constant=_no_constants)
    except (orjson.JSONDecodeError, ValueError, RecursionError) as exc:
        raise CatalogFormatError(f"not valid JSON ({exc})") from None
    return value


def check_shape(doc: object) -> None:
    """CatalogFormatError unless the document is an object whose categories are objects with model lists."""
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


@dataclass(frozen=True, slots=True)
class Verbatim:
    """A run of entries of a models list kept as the bytes they are in the file the document
    was cut from, separators included: from the first entry's "{" to the end of the last "}".

    A plan sees only the entries it asked for as objects; runs are copied back byte for byte
    by `write_catalog` from that file, never parsed or serialized again.
    """

    start: int
    end: int


class SourceChanged(Exception):
    """The file a document's runs come from is not the one they were cut from."""


COPY_BLOCK = 1 << 20


class Source:
    """The file a document with Verbatim runs was cut from, read once from start to end.

    Runs are copied out of it in order; every byte of it, copied or not, is hashed on the
    way, so `finish` says what the file held while the copy was taken (compare it with the
    digest the document was cut from: the bytes copied are those bytes)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.position = 0
        self.hasher = hashlib.sha256()
        self._buffer = memoryview(bytearray(COPY_BLOCK))

    def copy(self, start: int, end: int, handle: BinaryIO, hasher: Any) -> None:
        """Write the file's bytes start..end to `handle`, hashing them into `hasher` too."""
        if start < self.position:
            raise SourceChanged("runs out of order")
        self._pass(start)
        self._pass(end, handle, hasher)

    def finish(self) -> str:
        """Read the rest of the file; the digest of all of it."""
        while self._read(COPY_BLOCK):
            pass
        return self.hasher.hexdigest()

    def whole(self) -> bytes:
        """All of the file's bytes (hashed too, from where the copy had got to): the fallback."""
        self.position, self.hasher = 0, hashlib.sha256()
        parts = []
        while block := self._read(COPY_BLOCK):
            parts.append(bytes(block))
        return b"".join(parts)

    def _pass(self, end: int, handle: BinaryIO | None = None, hasher: Any = None) -> None:
        while self.position < end:
            if handle is None:
                block = self._read(min(COPY_BLOCK, end - self.position))
            else:  # a copied block is hashed twice (as read, as written): on two cores at once
                block = self._read(min(COPY_BLOCK, end - self.position), hashed=False)
                read_hashed = _beside().submit(self.hasher.update, block)
                try:
                    hasher.update(block)
                    handle.write(block)
                finally:
                    read_hashed.result()  # before the buffer is read into again, whatever happened
            if not block:
                raise SourceChanged("the file is shorter than it was")

    def _read(self, size: int, hashed: bool = True) -> memoryview:
        count = os.preadv(self.fd, [self._buffer[:size]], self.position)
        block = self._buffer[:count]
        if hashed:
            self.hasher.update(block)
        self.position += count
        return block


@functools.cache
def _beside() -> ThreadPoolExecutor:
    """One thread that hashes beside the one copying (hashlib lets go of the GIL for blocks)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="catalog-hash")


os.register_at_fork(after_in_child=_beside.cache_clear)  # a forked child has the executor but not its thread


class _EntryNext:
    """Marks that the next piece is one whole entry of a models list (for an outline)."""


ENTRY_NEXT: Any = _EntryNext()


def write_catalog(handle: BinaryIO, doc: Doc, source: Source | None = None, outline: list[Any] | None = None) -> str:
    """Write to a fresh, seekable file what `serialize_catalog` returns, byte for byte, but piece
    by piece, so a huge catalog is never in memory twice (as a document and as bytes). Returns
    the content's `digest`. A document orjson cannot write is rewritten by the fallback.
    Verbatim runs are copied from `source`; then `source.finish()` says what it held.

    With `outline`, every piece written is appended to it in order (bytes, Verbatim, and
    ENTRY_NEXT before each entry written anew), so the new text's cut can be worked out
    without reading it back; a fallback rewrite clears it (nothing can be said then)."""
    hasher = hashlib.sha256()
    buffered: list[bytes] = []
    held = 0

    def flush() -> None:
        nonlocal held
        chunk = b"".join(buffered)
        buffered.clear()
        held = 0
        hasher.update(chunk)
        handle.write(chunk)

    try:
        for piece in _top_pieces(doc):
            if outline is not None:
                outline.append(piece)
            if piece is ENTRY_NEXT:
                continue
            if isinstance(piece, Verbatim):
                if source is None:
                    raise TypeError("a document with Verbatim runs needs the file they come from")
                flush()
                source.copy(piece.start, piece.end, handle, hasher)
                continue
            buffered.append(piece)
            held += len(piece)
            if held >= _DIRECT_BYTES:
                flush()
    except _Unstreamable:
        if outline is not None:
            outline.clear()
            outline.append(None)  # not a text that cuts as written
        handle.seek(0)
        handle.truncate()
        if source is not None:
            _resolve_verbatim(doc, source.whole())
        raw = serialize_catalog(doc)
        handle.write(raw)
        return digest(raw)
    buffered.append(b"\n")
    if outline is not None:
        outline.append(b"\n")
    flush()
    return hasher.hexdigest()


def _resolve_verbatim(doc: Doc, raw: bytes) -> None:
    """Parse every Verbatim run back into entries, for the writer that needs whole objects."""
    for category in doc.get("categories", []):
        models = category.get("models") if isinstance(category, dict) else None
        if isinstance(models, list) and any(isinstance(item, Verbatim) for item in models):
            items: list[Any] = []
            for item in models:
                if isinstance(item, Verbatim):
                    run = load_json(b"[" + raw[item.start : item.end] + b"]")
                    if not isinstance(run, list):
                        raise SourceChanged("a run is not a list of entries")
                    items.extend(run)
                else:
                    items.append(item)
            category["models"] = items


_DIRECT_BYTES = 1 << 16  # pieces this large go straight to the file; smaller ones are gathered first


def _dumps_indented(value: object, indent: int) -> bytes:
    try:
        text = orjson.dumps(value, option=orjson.OPT_INDENT_2)
    except orjson.JSONEncodeError:
        raise _Unstreamable() from None
    return text.replace(b"\n", b"\n" + b" " * indent) if indent else text


def _top_pieces(doc: Doc) -> Iterator[bytes | Verbatim]:
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


def _list_pieces(items: list[Any], indent: int, each: Callable[[Any, int], Iterator[bytes | Verbatim]]) -> Iterator[bytes | Verbatim]:
    pad = b" " * (indent + 2)
    yield b"[\n"
    last = len(items) - 1
    for position, item in enumerate(items):
        yield pad
        yield from each(item, indent + 2)
        yield b",\n" if position < last else b"\n"
    yield b" " * indent + b"]"


def _category_pieces(category: Any, indent: int) -> Iterator[bytes | Verbatim]:
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
            yield from _list_pieces(value, indent + 2, _entry_pieces)
        else:
            yield _dumps_indented(value, indent + 2)
        yield b",\n" if position < last else b"\n"
    yield b" " * indent + b"}"


def _entry_pieces(entry: Any, indent: int) -> Iterator[bytes | Verbatim]:
    if isinstance(entry, Verbatim):
        yield entry
    else:
        yield ENTRY_NEXT
        yield _dumps_indented(entry, indent)


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
