"""The map body's parts in chunks (`service/map/chunks.py`): a copy costs the chunks that changed."""

from __future__ import annotations

import itertools

import pytest

from service.map import chunks as chunks_module
from service.map.chunks import ChunkedParts


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunks_module, "CHUNK_PARTS", 4)


def flat(chunks: tuple[tuple[bytes, ...], ...]) -> list[bytes]:
    return list(itertools.chain.from_iterable(chunks))


def test_a_copy_holds_the_parts_as_they_were_and_shares_every_chunk_left_alone() -> None:
    parts = ChunkedParts([b"%d" % n for n in range(10)])
    first = parts.chunks()
    assert [len(chunk) for chunk in first] == [4, 4, 2] and flat(first) == parts.items
    parts[5] = b"five"
    parts[-1] = b"last"  # counted from the end: the last chunk
    second = parts.chunks()
    assert flat(first)[5] == b"5" and flat(first)[-1] == b"9"  # a published copy never changes
    assert flat(second) == parts.items
    assert second[0] is first[0] and second[1] is not first[1] and second[2] is not first[2]
    assert parts.chunks()[1] is second[1]  # nothing written since: the very same chunks


def test_an_insert_moves_every_chunk_after_it() -> None:
    parts = ChunkedParts([b"%d" % n for n in range(8)])
    first = parts.chunks()
    parts.insert(-3, [b"a", b"b", b"c"])
    second = parts.chunks()
    assert flat(second) == parts.items == [b"0", b"1", b"2", b"3", b"4", b"a", b"b", b"c", b"5", b"6", b"7"]
    assert second[0] is first[0] and len(second) == 3
    parts.insert(0, [b"x"])
    assert flat(parts.chunks()) == parts.items



def test_an_insert_before_the_start_goes_first_as_in_a_list() -> None:
    parts = ChunkedParts([b"a", b"b"])
    parts.chunks()
    parts.insert(-5, [b"x"])
    assert flat(parts.chunks()) == parts.items == [b"x", b"a", b"b"]
