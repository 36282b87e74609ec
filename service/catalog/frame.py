"""The structure around a cut text's entries, checked once and kept as the frame a plan edits.

Nothing is taken on trust. The structure, with every entry replaced by a stand-in that it
holds nowhere else (`_skeleton`), is parsed as JSON and must hold exactly one stand-in for
each entry, all of them in categories' "models" lists (each entry was parsed as an object on
its own when it was cut). Both true, the whole text is valid JSON with those entries in those
places.
"""

from __future__ import annotations

import operator
import secrets
from typing import TYPE_CHECKING, Any

import orjson

from .codec import (
    CatalogFormatError,
    CatalogUnwritable,
    check_shape,
    load_json,
    serialize_catalog,
)
from .document import Doc
from .layout import Unsplittable

if TYPE_CHECKING:
    from .text import Piece

_PREFIX = operator.attrgetter("prefix")

SKELETON_LIMIT = 8 << 20  # structure beyond this is not a catalog worth cutting: read whole (in a worker process: faster at 1M entries than a cut here)


def _skeleton(pieces: dict[int, Piece], keys: list[int], tail: bytes) -> tuple[bytes, Any]:
    """The text with each entry replaced by a stand-in, and the value it parses to: `true` (one
    object however many entries) where the structure holds no `true` a file could have put in
    a models list, else a string no file holds."""
    parts = list(map(_PREFIX, map(pieces.__getitem__, keys)))  # C speed: no Python loop over entries
    if sum(map(len, parts)) + len(keys) + len(tail) > SKELETON_LIMIT:
        raise Unsplittable("the structure around the entries is too large to cut")
    parts.append(tail)
    stand_in = _STAND_IN if any(b"true" in part for part in set(parts)) else b"true"
    return stand_in.join(parts), (True if stand_in == b"true" else _STAND_IN_TEXT)


# What stands in for each cut entry in the structure that is checked: a value the structure
# does not hold otherwise (`_stand_in`), so none can be written where an entry should be, and
# one that cannot run into the bytes after it as a number would ("0e1"). Exactly one per entry,
# all in models lists, means every one of them is.
_STAND_IN_TEXT = f"cut entry {secrets.token_hex(8)}"  # random to this process
_STAND_IN = b'"' + _STAND_IN_TEXT.encode() + b'"'


def checked_frame(pieces: dict[int, Piece], keys: list[int], tail: bytes) -> bytes:
    """The text's `Text.frame`, once the text with each entry replaced by a stand-in is found
    to parse as a catalog holding exactly one stand-in for each entry, all in models lists."""
    skeleton, stand_in = _skeleton(pieces, keys, tail)
    doc = _parse_skeleton(skeleton)
    del skeleton
    found = 0
    for category in doc.get("categories", []):
        models = category.get("models", [])
        for item in models:
            if not (item is True if stand_in is True else type(item) is str and item == stand_in):
                raise Unsplittable("a models list holds something that is not a cut entry")
        found += len(models)
    if found != len(keys):
        raise Unsplittable("an entry was cut somewhere other than a models list")
    return frame_of(doc, len)


def frame_of(doc: Doc, count: Any) -> bytes:
    """The document as JSON with each models list replaced by `count(list)` (read it back with
    `load_json`). Unsplittable when it cannot be written back unchanged."""
    framed = dict(doc)
    if isinstance(categories := doc.get("categories"), list):
        framed["categories"] = [
            {**category, "models": count(models)} if isinstance(models := category.get("models"), list) else category
            for category in categories
        ]
    return dumped_frame(framed)


def dumped_frame(frame: Doc) -> bytes:
    try:
        return orjson.dumps(frame)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits, or deep nesting, around the entries
        try:
            return serialize_catalog(frame)
        except CatalogUnwritable:
            raise Unsplittable("the structure around the entries cannot be written back unchanged") from None


def _parse_skeleton(skeleton: bytes) -> Doc:
    try:
        doc = load_json(skeleton)
        check_shape(doc)
    except CatalogFormatError as exc:
        raise Unsplittable(str(exc)) from None
    return doc
