"""The statuses the map can say, defined once: OpenAPI, the events, the page and the README
take them from here (or are checked against them by a test).

In a map body each entry ends with a status slot: its status and the fields that go with it,
as bytes ready to be joined (`"present"}`, `"downloading","dl_bytes":1,"dl_total":2}`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    """Where a catalogued version's file is."""

    PRESENT = "present"  # on disk (maybe under another name: `local_file`; maybe other bytes: `hash_mismatch`)
    MISSING = "missing"  # not on disk (a stopped part: `partial_bytes`; a failed download: `dl_error`)
    QUEUED = "queued"  # waiting for a download slot
    DOWNLOADING = "downloading"  # being downloaded: by this service, or a part that keeps changing (`dl_bytes`, `dl_total`)
    UNAVAILABLE = "unavailable"  # missing, and a model folder that could hold it is offline

    @property
    def description(self) -> str:
        """What the status means, for people (OpenAPI and the README)."""
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    Status.PRESENT: "the file is on disk (`local_file` when under another name or folder; `hash_mismatch` when its bytes are not the entry's `hash`)",
    Status.MISSING: "the file is not on disk (`partial_bytes` when a stopped partial download of it is, which a Download resumes; `dl_error` `{code, detail, at}` when its last download failed)",
    Status.QUEUED: "a download of it waits for a slot",
    Status.DOWNLOADING: "it is being downloaded: by this service, or a partial file that changed within `STALE_PART_S` (`dl_bytes`, `dl_total`)",
    Status.UNAVAILABLE: "it is not on disk, and a model folder that could hold it is offline",
}


def slot(status: Status, fields: bytes = b"") -> bytes:
    """The end of an entry in a map body: the status, then `fields` (`,"key":value...`)."""
    return status.value.encode() + b'"' + fields + b"}"


PRESENT = slot(Status.PRESENT)
MISSING = slot(Status.MISSING)
QUEUED = slot(Status.QUEUED)
UNAVAILABLE = slot(Status.UNAVAILABLE)
PRESENT_MISMATCH = slot(Status.PRESENT, b',"hash_mismatch":true')  # on disk, but not the bytes the entry's `hash` names
DOWNLOADING = Status.DOWNLOADING.value.encode() + b'"'  # how a downloading slot starts
_BY_NAME = {status.value.encode(): status for status in Status}
_OF_COMMON_SLOT = {PRESENT: Status.PRESENT, MISSING: Status.MISSING, QUEUED: Status.QUEUED, UNAVAILABLE: Status.UNAVAILABLE, PRESENT_MISMATCH: Status.PRESENT}

Changes = dict[int, Status | None]  # version id -> its status, or None when it left the map
Listener = Callable[[str, Changes], None]


def status_of(slot_bytes: bytes) -> Status:
    """The status a slot says."""
    known = _OF_COMMON_SLOT.get(slot_bytes)  # the slots most versions hold: one lookup, no slice
    return known if known is not None else _BY_NAME[slot_bytes[: slot_bytes.index(b'"')]]


@dataclass(frozen=True, slots=True)
class Transfer:
    """A file on its way into a folder: queued, or downloading with bytes so far of a total (if known)."""

    state: str  # "queued" or "downloading"
    done: int = 0
    total: int | None = None

    def slot(self) -> bytes:
        """The end of a map entry: its status, and the progress the extension shows."""
        if self.state == "queued":
            return QUEUED
        total = b"null" if self.total is None else b"%d" % self.total
        return slot(Status.DOWNLOADING, b',"dl_bytes":%d,"dl_total":%s' % (self.done, total))
