"""One catalog entry as the map shows it: which entries are shown, what of them, and with which ids.

Each entry is serialized once, when its catalog is read, into a `head` that stops just before
its status, so a map body is joined from heads and status slots (`map.status`) without
serializing anything again.
"""

from __future__ import annotations

import operator
import sys
from dataclasses import dataclass
from typing import Any

import orjson

from ..disk.folders import canonical_folder

# Every id, wherever it is written (a catalog, a path, a query, a URL, an AIR, CivitAI's answers,
# another tool's sidecar): at most the largest integer JavaScript reads exactly, since the page and
# the extension read the map's ids as JSON numbers. CivitAI's ids have eight digits.
MAX_ID = 2**53 - 1
MAX_ID_DIGITS = len(str(MAX_ID))


def json_id(value: object) -> int | None:
    """An id as JSON from outside writes it: an integer (not a boolean, not a string) in 1..MAX_ID."""
    return value if type(value) is int and 0 < value <= MAX_ID else None


def id_of_digits(raw: str) -> int | None:
    """An id written as ASCII digits, as paths, queries, URLs and catalogs write it; None for
    anything else ("0", "²", "12a", more than MAX_ID)."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > MAX_ID_DIGITS:
        return None
    number = int(raw)
    return number if 0 < number <= MAX_ID else None


def catalog_id(value: object) -> int | None:
    """A CivitAI id as catalogs write it: a JSON integer in 1..MAX_ID, or a string of ASCII digits
    (`id_of_digits`); nothing else (a boolean, a float, "²", -4, 2**70) is an id."""
    if type(value) is int:  # the common case first: this runs for every entry of every reading
        return value if 0 < value <= MAX_ID else None
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value) if 0 < value <= MAX_ID else None
    if isinstance(value, str):
        return id_of_digits(value)
    return None


@dataclass(slots=True)
class MapEntry:
    """One catalog entry as the map shows it, pre-serialized up to its status.

    Never changed once made, but not a frozen dataclass: one is made for every entry of every
    reading, and a frozen one's `__init__` (a call of `object.__setattr__` per field) costs
    four times as much."""

    version_id: int
    model_id: int | None
    file: str
    folder: str  # canonical logical folder, for presence
    catalog: str  # "models" or "loras"; "" for a file identified on disk that no catalog lists
    head: bytes
    dest: str = ""  # the folder as the catalog writes it, for downloads
    sha256: str | None = None  # the entry's `hash`, when it is a SHA256
    size: int | None = None  # bytes, from `size_gb` (CivitAI's sizeKB / 1,000,000)
    identified_by: str = ""  # of a file no catalog lists: "hash" (its bytes) or "sidecar" (another tool's word, until hashed)


# MapEntry fields read for many entries at once (`map(ENTRY_FILE, entries)`: a C loop).
ENTRY_VERSION = operator.attrgetter("version_id")
ENTRY_HEAD = operator.attrgetter("head")
ENTRY_FILE = operator.attrgetter("file")
ENTRY_MODEL = operator.attrgetter("model_id")
ENTRY_CATALOG = operator.attrgetter("catalog")
ENTRY_SHA256 = operator.attrgetter("sha256")


@dataclass(slots=True)
class CatalogEntries:
    """What the map takes from one catalog, and how many entries it had to leave out for unusable ids."""

    entries: list[MapEntry]
    unusable_ids: int = 0

    def __reduce__(self) -> tuple[object, ...]:
        # Sent back from a worker process as plain tuples: pickling 100,000 dataclass objects
        # one by one costs several times more, on both sides.
        return (_entries_from_rows, (list(map(entry_row, self.entries)), self.unusable_ids))


def _entries_from_rows(rows: list[EntryRow], unusable_ids: int) -> CatalogEntries:
    return CatalogEntries(list(map(entry_of_row, rows)), unusable_ids)


class _Unusable:
    """An entry left out of the map because an id is set but is not an id (counted, kept in the file)."""

    def __repr__(self) -> str:
        return "UNUSABLE"


UNUSABLE: Any = _Unusable()


def shown_entry(entry: dict[str, Any], catalog: str) -> MapEntry | None:
    """One catalog entry as the map shows it; None when the map does not show it (no version id,
    file or folder), UNUSABLE when an id is set but is not one ("²", -1, 2**70) or its name is
    not showable (a lone surrogate)."""
    raw_version, raw_model = entry.get("civitai_version_id"), entry.get("civitai_model_id")
    version_id = catalog_id(raw_version)
    model_id = catalog_id(raw_model)
    if (version_id is None and raw_version is not None) or (model_id is None and raw_model is not None):
        return UNUSABLE
    file, dest = entry.get("file"), entry.get("dest")
    if version_id is None or not isinstance(file, str) or not file or not isinstance(dest, str):
        return None
    name, base_model = entry.get("name"), entry.get("base_model")
    view = {
        "file": file,
        "dest": dest,
        "name": name if isinstance(name, str) else file,
        "base_model": base_model if isinstance(base_model, str) else None,
        "civitai_model_id": model_id,
        "catalog": catalog,
    }
    size = _size(entry) if "size_gb" in entry else None
    if size is not None:
        view["size_gb"] = entry["size_gb"]
    words = _trigger_words(entry) if "trigger_words" in entry else None
    if words:
        view["trigger_words"] = words
    added_at = entry.get("added_at")
    if isinstance(added_at, str) and len(added_at) == 20 and added_at.isascii() and added_at[4] == "-" and added_at[-1] == "Z":
        view["added_at"] = added_at
    try:
        head = b'"%d":' % version_id + orjson.dumps(view)[:-1] + b',"status":"'
    except orjson.JSONEncodeError:  # a lone surrogate in a name: not showable, left as it is in the file
        return UNUSABLE
    folder, dest = _folders_of(dest)
    return MapEntry(version_id, model_id, file, folder, catalog, head, dest, _sha256(entry) if "hash" in entry else None, size)


# Each distinct `dest` of the catalogs and its folder, interned once: a few dozen in a library.
_FOLDERS: dict[str, tuple[str, str]] = {}
_MAX_FOLDERS = 10_000


def _folders_of(dest: str) -> tuple[str, str]:
    """The canonical folder of a `dest`, and the `dest`, as the objects every entry of it shares."""
    folders = _FOLDERS.get(dest)
    if folders is None:
        folders = _FOLDERS[dest] = (sys.intern(canonical_folder(dest)), sys.intern(dest)) if len(_FOLDERS) < _MAX_FOLDERS else (canonical_folder(dest), dest)
    return folders


# A catalog entry as the map shows it, as a plain tuple: what a worker process sends back.
EntryRow = tuple[int, int | None, str, str, str, bytes, str, str | None, int | None]


def entry_row(entry: MapEntry) -> EntryRow:
    """A catalog entry as a plain tuple (`entry_of_row` makes it again)."""
    return (entry.version_id, entry.model_id, entry.file, entry.folder, entry.catalog, entry.head, entry.dest, entry.sha256, entry.size)


def entry_of_row(row: EntryRow) -> MapEntry:
    """A catalog entry sent as a row, sharing its folder names with this process's entries."""
    version_id, model_id, file, _folder, catalog, head, dest, sha256, size = row
    folder, dest = _folders_of(dest)
    return MapEntry(version_id, model_id, file, folder, sys.intern(catalog), head, dest, sha256, size)


def disk_entry(
    version_id: int, model_id: int | None, file: str, folder: str, name: str, base_model: str | None, sha256: str, identified_by: str = "hash"
) -> MapEntry:
    """A version identified on disk that no catalog lists: `catalog: null`, always present, and
    `identified_by` its bytes ("hash") or, until they are hashed, another tool's sidecar ("sidecar")."""
    view = {"file": file, "dest": folder, "name": name, "base_model": base_model, "civitai_model_id": model_id, "catalog": None, "identified_by": identified_by}
    head = b'"%d":' % version_id + orjson.dumps(view)[:-1] + b',"status":"'
    return MapEntry(version_id, model_id, file, sys.intern(folder), "", head, folder, sha256, None, identified_by)


def _sha256(entry: dict[str, object]) -> str | None:
    return sha256_hex(entry.get("hash"))


def sha256_hex(value: object) -> str | None:
    """A SHA256 as 64 hex digits, lower-cased; None for anything else (this runs for every
    entry of every reading, and for every hash from CivitAI, sidecars and workflows)."""
    if not isinstance(value, str) or len(value) != 64:
        return None
    try:  # hex digits in C; the white space fromhex lets between bytes makes fewer than 32 of them
        if len(bytes.fromhex(value)) != 32:
            return None
    except ValueError:
        return None
    return value.lower()


MAX_TRIGGER_WORDS = 50
MAX_TRIGGER_WORD_CHARS = 200


def _trigger_words(entry: dict[str, object]) -> list[str] | None:
    """The entry's trigger words as the map shows them: strings only, at most 50 of 200 characters."""
    words = entry.get("trigger_words")
    if not isinstance(words, list) or not words:
        return None
    kept = [word[:MAX_TRIGGER_WORD_CHARS] for word in words[:MAX_TRIGGER_WORDS] if isinstance(word, str) and word and _encodable(word)]
    return kept or None


def _encodable(text: str) -> bool:
    """False for a string JSON cannot carry (a lone surrogate): such a word is left out, not the entry."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _size(entry: dict[str, object]) -> int | None:
    value = entry.get("size_gb")
    if (type(value) is float or type(value) is int) and 0 < value < 1e6:  # JSON numbers only: not a boolean
        return round(value * 1_000_000_000)  # type: ignore[operator]
    return None


def same_entry(old: MapEntry, new: MapEntry) -> bool:
    """True when an entry is shown, and its status worked out, exactly as before. Cheaper than
    the dataclass's ==, which builds two tuples: this runs for every entry of a re-laid map."""
    return old is new or (
        old.head == new.head and old.folder == new.folder and old.sha256 == new.sha256 and old.size == new.size and old.catalog == new.catalog
    )
