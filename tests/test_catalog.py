"""The catalog document as pure logic: which ids are usable, faithful parse and save, stamping."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from service.catalog.codec import (
    _SCAN_BLOCK,
    CatalogFormatError,
    _has_long_digit_run,
    digest,
    parse_catalog,
    serialize_catalog,
    write_catalog,
)
from service.catalog.document import model_id_of, stamp, version_id_of
from service.catalog.reading import extract_entries


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (7, 7),
        ("7", 7),
        ("2514310", 2514310),
        (0, None),
        (-3, None),
        ("0", None),
        (True, None),
        (7.0, None),
        (None, None),
        ("", None),
        (" 7", None),
        ("+7", None),
        ("²", None),  # str.isdigit() is true, int() fails
        ("①", None),
        ("٣", None),  # Arabic-Indic three: int() reads it, but it is not how ids are written
        ("1" * 16, 1111111111111111),
        (str(2**53 - 1), 2**53 - 1),  # the largest JavaScript reads exactly (the page, the extension)
        (2**53 - 1, 2**53 - 1),
        (str(2**53), None),
        (2**53, None),
        ("9" * 20, None),
        (2**63, None),
        (123456789012345678901234567890, None),
    ],
)
def test_only_ascii_digits_and_json_integers_are_ids(value: object, expected: int | None) -> None:
    assert version_id_of({"civitai_version_id": value}) == expected
    assert model_id_of({"civitai_model_id": value}) == expected


def test_unusable_ids_are_counted_absent_ones_are_not() -> None:
    doc = {
        "categories": [
            {
                "models": [
                    {"civitai_version_id": "²", "civitai_model_id": 1, "file": "a", "dest": "loras"},
                    {"civitai_version_id": 2, "civitai_model_id": "①", "file": "b", "dest": "loras"},
                    {"civitai_version_id": 3, "file": "c", "dest": "loras"},
                    {"file": "hf.safetensors"},
                    {"civitai_version_id": None},
                ]
            }
        ]
    }
    found = extract_entries(doc, "models")
    assert [e.version_id for e in found.entries] == [3] and found.unusable_ids == 2


BIG = b"123456789012345678901234567890"


def run_in_thread(work: Callable[[], bytes]) -> bytes:
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(work).result()


def test_an_integer_beyond_64_bits_survives_a_save() -> None:
    raw = b'{"version": 1, "categories": [], "extra": {"big": %s, "neg": -%s, "u64": 18446744073709551615}}' % (BIG, BIG)
    doc = parse_catalog(raw)
    assert doc["extra"]["big"] == int(BIG)
    saved = serialize_catalog(doc)
    assert b'"big": %s' % BIG in saved and b'"neg": -%s' % BIG in saved
    assert parse_catalog(saved) == doc


def test_a_long_digit_run_inside_a_string_changes_nothing() -> None:
    raw = b'{"categories": [], "note": "%s", "f": 1.5}' % BIG
    doc = parse_catalog(raw)
    assert doc == {"categories": [], "note": BIG.decode(), "f": 1.5}
    assert parse_catalog(serialize_catalog(doc)) == doc


@pytest.mark.parametrize(
    "raw, slow",
    [
        (b'{"hash": "a%sb"}' % BIG, False),  # a SHA256 with a long run of digits, as most real catalogs hold
        (b'{"hash": "%s"}' % BIG, False),  # at the start of a string
        (b'{"n": %s}' % BIG, True),
        (b'{"n":-%s}' % BIG, True),
        (b'{"n": [1,\n  %s]}' % BIG, True),
        (b'{"n": 1234567890123456789.5}', True),  # any 19-digit number: the careful parse decides
    ],
)
def test_only_numbers_with_a_long_run_of_digits_take_the_careful_parse(raw: bytes, slow: bool) -> None:
    assert _has_long_digit_run(raw) is slow


def test_a_long_run_of_digits_across_scan_blocks_is_found() -> None:
    raw = b'{"n": ' + b" " * (_SCAN_BLOCK - 7) + BIG + b"}"
    assert _has_long_digit_run(raw)
    assert parse_catalog(raw)["n"] == int(BIG)


@pytest.mark.parametrize("depth", [255, 600, 1000])
@pytest.mark.parametrize("big", [b"1", BIG])
def test_deep_unknown_fields_are_saved_faithfully_in_a_worker_thread(depth: int, big: bytes) -> None:
    raw = b'{"categories": [], "deep": ' + b"[" * depth + big + b"]" * depth + b"}"
    saved = run_in_thread(lambda: serialize_catalog(parse_catalog(raw)))  # as mutations run it
    assert b"".join(saved.split()) == b"".join(raw.split())  # the same document, only laid out
    assert serialize_catalog(parse_catalog(saved)) == saved


def test_save_keeps_orjsons_layout_when_it_can_and_the_same_layout_when_it_cannot() -> None:
    plain = {"version": 1, "categories": [{"id": "a", "models": [{"x": "ü", "t": []}]}], "e": {}}
    with_big = {**plain, "big": 2**70}
    fast, slow = serialize_catalog(plain), serialize_catalog(with_big)
    assert slow == fast[:-3] + b',\n  "big": %d\n}\n' % 2**70
    assert "ü".encode() in slow


def test_nan_is_not_a_catalog_even_through_the_fallback_parser() -> None:
    with pytest.raises(CatalogFormatError):
        parse_catalog(b'{"categories": [], "big": %s, "x": NaN}' % BIG)


@pytest.mark.parametrize(
    ("version", "after"),
    [
        (41, 42), ("41", "42"), (41.0, 42), (0, 1), (None, 1), ("x", 1), (True, 1), (-5, 1), ("٣", 1),
        (2.5, 3), (0.5, 1), ("007", "008"), ("199", "200"), ("9" * 25, "1" + "0" * 25), ("1" * 5000, "1" * 4999 + "2"),
        (float("inf"), 1),
    ],
)
def test_stamp_increments_the_version_whatever_way_it_is_written(version: object, after: object) -> None:
    doc: dict[str, object] = {"version": version}
    stamp(doc)
    assert doc["version"] == after and type(doc["version"]) is type(after)
    assert isinstance(doc["date"], str)


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {"categories": []},
        {"version": 1, "date": "d", "categories": [{"id": "a", "name": "A", "models": []}]},
        {"version": 1, "categories": [{"id": "a", "models": [{"x": 1, "t": [], "o": {}, "n": {"k": [1, {"z": None}]}}, {"y": "ü\\n"}]}, {"id": "b"}, "odd", []], "z": {"q": [1, 2]}},
        {"categories": [{"models": [{"x": 1}], "after": {"k": "v"}, "models2": []}], "tail": True},
        {"categories": [{"models": ["not an entry", 3, None]}]},
        {"categories": [{"id": "a", "models": [{"big": 2**70}]}]},  # orjson cannot: the fallback writes it
        {"categories": {"not": "a list"}, "x": 1.5},
    ],
)
def test_writing_piece_by_piece_gives_the_same_bytes(tmp_path: Path, doc: dict[str, object]) -> None:
    with open(tmp_path / "out.json", "w+b") as handle:
        content_digest = write_catalog(handle, doc)
    written = (tmp_path / "out.json").read_bytes()
    assert written == serialize_catalog(doc)
    assert content_digest == digest(written)


def test_a_long_integer_across_a_scan_block_boundary_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    import service.catalog.codec

    monkeypatch.setattr(service.catalog.codec, "_SCAN_BLOCK", 16)
    for pad in range(40):
        raw = b'{"categories": [], "p": "' + b"x" * pad + b'", "big": %s}' % BIG
        assert parse_catalog(raw)["big"] == int(BIG), pad
