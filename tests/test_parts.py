"""Partial downloads as the map reads them (`map.parts`): growing is `downloading`, stopped is
`missing` with its bytes and the last job's error. Pure: facts applied to the presence by hand."""

from __future__ import annotations

import time

import orjson

from service.disk.presence import Presence
from service.disk.scan import FolderSource, PathFact
from service.map.index import CivitaiIndex
from service.map.layout import build_layout
from service.map.status import Transfer

from .helpers import eventually
from .test_index import entry

ROOT = "/models"
PART = f"{ROOT}/loras/v1.safetensors.part"


def index_with_part(size: int | None, changed_ago: float, stale_s: float = 60.0) -> CivitaiIndex:
    presence = Presence((FolderSource(ROOT),))
    if size is not None:
        presence.apply([PathFact(PART, "file", complete=False, size=size, mtime=time.time() - changed_ago)])
    index = CivitaiIndex(presence)
    index.parts.stale_s = stale_s
    index.set_layout(build_layout([[entry(1)]]))
    return index


def shown(index: CivitaiIndex) -> dict[str, object]:
    return orjson.loads(index.snapshot.body)["by_version"]["1"]


def test_a_part_changed_lately_is_downloading_and_one_left_alone_is_missing_with_its_bytes() -> None:
    growing = shown(index_with_part(300, changed_ago=1.0))
    assert (growing["status"], growing["dl_bytes"]) == ("downloading", 300)
    left = shown(index_with_part(300, changed_ago=61.0))
    assert (left["status"], left["partial_bytes"]) == ("missing", 300) and "dl_error" not in left
    nothing = shown(index_with_part(None, changed_ago=0))
    assert nothing["status"] == "missing" and "partial_bytes" not in nothing


def test_a_part_our_job_left_reads_stopped_at_once_with_the_jobs_error() -> None:
    index = index_with_part(300, changed_ago=0.5)  # the last write, half a second before the job ended
    index.set_transfer("v1.safetensors", "loras", None)
    index.job_ended("v1.safetensors", "loras", "connection_lost", "the connection dropped")
    after = shown(index)
    assert (after["status"], after["partial_bytes"]) == ("missing", 300)
    assert after["dl_error"]["code"] == "connection_lost" and after["dl_error"]["detail"] == "the connection dropped"
    assert abs(after["dl_error"]["at"] - time.time()) < 5
    assert index.slot_fields(1) == {"partial_bytes": 300, "dl_error": after["dl_error"]}


def test_a_part_written_after_our_job_ended_is_anothers_download() -> None:
    index = index_with_part(300, changed_ago=0.5)
    index.job_ended("v1.safetensors", "loras")  # cancelled: no error
    assert shown(index)["status"] == "missing" and "dl_error" not in shown(index)
    index.presence.apply([PathFact(PART, "file", complete=False, size=400, mtime=time.time() + 0.01)])
    index.files_changed(["v1.safetensors"])
    assert (shown(index)["status"], shown(index)["dl_bytes"]) == ("downloading", 400)


def test_a_part_our_job_never_wrote_stays_the_other_programs_while_it_changes() -> None:
    index = index_with_part(300, changed_ago=0.5)
    index.job_ended("v1.safetensors", "loras", "downloading_elsewhere", "held by another process", wrote_part=False)
    assert shown(index)["status"] == "downloading"


def test_the_next_download_clears_the_last_error() -> None:
    index = index_with_part(None, changed_ago=0)
    index.job_ended("v1.safetensors", "loras", "hash_mismatch", "not the expected bytes")
    assert shown(index)["dl_error"]["code"] == "hash_mismatch"
    index.set_transfer("v1.safetensors", "loras", Transfer("queued"))
    assert shown(index)["status"] == "queued"
    index.set_transfer("v1.safetensors", "loras", None)
    assert shown(index)["status"] == "missing" and "dl_error" not in shown(index) and index.slot_fields(1) is None


async def test_a_part_first_seen_from_a_skewed_clock_reads_stopped_once_it_stops() -> None:
    presence = Presence((FolderSource("/models"),))
    presence.apply([PathFact(PART, "file", complete=False, size=100, mtime=time.time() + 3600)])  # a clock an hour ahead
    index = CivitaiIndex(presence)
    index.parts.stale_s = 0.3
    index.set_layout(build_layout([[entry(1)]]))
    assert shown(index)["status"] == "downloading"
    presence.apply([PathFact(PART, "file", complete=False, size=200, mtime=time.time())])  # rewritten at the right time, then left
    index.files_changed(["v1.safetensors"])

    async def stopped() -> bool:
        return shown(index)["status"] == "missing"

    try:
        await eventually(stopped, timeout=5, what="the part read as stopped")
        assert shown(index)["partial_bytes"] == 200
    finally:
        index.parts.close()
