"""A catalog's bytes: its digest, parsing (orjson, or the standard library where orjson would
change a value), the shape check, and writing it back in this service's layout, whole or a
piece at a time with runs copied from the file it was read from."""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import orjson

from .copying import Source, SourceChanged
from .document import Doc


def digest(raw: bytes) -> str:
    """The content hash used to recognise a catalog already read or written."""
    return hashlib.sha256(raw).hexdigest()


def file_digest(handle: BinaryIO) -> str:
    """`digest` of an open file's content from where it stands, read in blocks (never all of it in memory)."""
    return hashlib.file_digest(handle, "sha256").hexdigest()


class CatalogFormatError(ValueError):
    """The bytes are not a catalog this service can read (bad JSON or wrong shape)."""


# A run of 19+ digits may be an integer beyond 64 bits, which orjson reads as a float. The
# standard library keeps such integers. Only a run where a JSON number can start counts (after
# `:`, `[`, `,`, white space or a minus sign): digits inside a SHA256 string, which most real
# catalogs hold, follow a letter or a quote and must not send every parse down the slow path.
# Found by mapping digits to "1", those starters to "2" and everything else to "0", a block at
# a time: much faster than a regular expression on a huge catalog, and never a copy of all of it. A match inside some other string only costs the slower parse.
LONG_DIGIT_RUN = 19
_NUMBER_STARTS = b":[, \t\r\n-"
_CLASSES = bytes(0x31 if 0x30 <= byte <= 0x39 else 0x32 if byte in _NUMBER_STARTS else 0x30 for byte in range(256))
_SCAN_BLOCK = 1 << 22


_NEEDLE = b"2" + b"1" * LONG_DIGIT_RUN


def _has_long_digit_run(raw: bytes) -> bool:
    needle = _NEEDLE
    if len(raw) <= _SCAN_BLOCK:  # an entry: one translate, no view or generator (this runs for every entry cut)
        return needle in raw.translate(_CLASSES)
    view = memoryview(raw)
    return any(
        needle in bytes(view[start : start + _SCAN_BLOCK + LONG_DIGIT_RUN]).translate(_CLASSES)
        for start in range(0, len(raw), _SCAN_BLOCK)
    )


def plain_numbers(raw: bytes | memoryview) -> bool:
    """True when every number in this text reads the same with orjson as with the standard
    library (no integer beyond 64 bits can be in it), so orjson alone may parse any part of it."""
    return not _has_long_digit_run(bytes(raw) if isinstance(raw, memoryview) else raw)


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


def no_constants(name: str) -> object:
    """`parse_constant` for the standard library's JSON: NaN and Infinity are not JSON."""
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
                value = json.loads(raw, parse_constant=no_constants)
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
