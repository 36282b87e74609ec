"""Catalogs cut at their entries (service/catalog/text.py, cutting.py, splice.py): a cut must show exactly what a whole
parse shows, a re-cut must name every version that moved, and a save spliced from a cut
must write the very bytes a whole rewrite writes."""

from __future__ import annotations

import copy
import functools
import hashlib
import itertools
import json
import os
import pickle
import random
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from service.catalog import frame as frame_module
from service.catalog import text as spans
from service.catalog.codec import (
    CatalogFormatError,
    digest,
    parse_catalog,
    serialize_catalog,
)
from service.catalog.copying import COPY_BLOCK, Source
from service.catalog.cutting import load_text, recut_file
from service.catalog.plans import plan_add, plan_promote, plan_remove
from service.catalog.reading import (
    cut_rows,
    extract_entries,
    read_catalog,
    read_changes,
    whole_reading,
)
from service.catalog.rows import CutRows
from service.catalog.store import CatalogStore, StaleRead
from service.catalog.text import Text, Unsplittable
from service.catalog.transaction import Wanted, run_transaction
from service.civitai.routing import MappedVersion
from service.library.catalogs import moved_versions

from .helpers import entry

SEEDS = range(12)


def random_entry(rng: random.Random, version: int) -> dict[str, Any]:
    """An entry as people's catalogs hold them, with the odd ones they also hold."""
    dest = rng.choice(["checkpoints", "loras", "loras/sdxl", "vae", "../escape"])
    found = entry(version, f"file_{version}_{rng.randrange(3)}.safetensors", dest, model_id=rng.randrange(1, 40))
    roll = rng.random()
    if roll < 0.08:
        found["civitai_version_id"] = rng.choice(["12x", -3, True, 1.5, None])  # not an id: left out of the map
    elif roll < 0.14:
        del found["file"]
    elif roll < 0.2:
        found["notes"] = {"nested": [{"deep": "value"}, 1, "ünïcode ✓"], "n": None}
    elif roll < 0.26:
        found["hash"] = "ab" * 32
        found["size"] = rng.randrange(1, 10**9)
    return found


def random_doc(rng: random.Random, entries: int = 60) -> dict[str, Any]:
    categories = []
    for number in range(rng.randint(1, 4)):
        models: list[Any] = []
        for _ in range(rng.randint(0, entries)):
            if models and rng.random() < 0.07:
                models.append(copy.deepcopy(rng.choice(models)))  # the very same entry twice
            else:
                models.append(random_entry(rng, rng.randrange(1, entries)))  # small range: versions repeat
        categories.append({"id": f"c{number}", "name": f"Category {number}", "models": models})
    doc: dict[str, Any] = {"version": 3, "date": "2026-11-23 14:05", "categories": categories}
    if rng.random() < 0.3:
        doc["extra"] = {"kept": [1, 2, {"a": "b"}]}
    return doc


def raw_of(doc: dict[str, Any], rng: random.Random | None = None) -> bytes:
    """Written as this service writes, or (sometimes) as Python's json module does."""
    if rng is not None and rng.random() < 0.3:
        return json.dumps(doc, indent=2).encode() + b"\n"
    return serialize_catalog(doc)


def indented_with_tabs(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent="\t").encode()


# Layouts other programs write, each cut at its own entries' line breaks and indents.
LAYOUTS = {
    "four-spaces": lambda doc: json.dumps(doc, indent=4).encode(),
    "tabs": indented_with_tabs,
    "crlf": lambda doc: serialize_catalog(doc).replace(b"\n", b"\r\n"),
    "crlf-tabs": lambda doc: indented_with_tabs(doc).replace(b"\n", b"\r\n") + b"\r\n",
    "minified": lambda doc: orjson.dumps(doc),
    "one-line": lambda doc: json.dumps(doc).encode(),  # ", " between entries
    "first-entry-on-the-list-line": lambda doc: re.sub(rb"\[\n\s*\{", b"[{", json.dumps(doc, indent=1).encode()),
}


def writer(layout: str | None) -> Any:
    """Write a catalog this service's way (sometimes json's indent=2), or in another program's layout."""
    if layout is None:
        return raw_of
    write = LAYOUTS[layout]
    return lambda doc, rng=None: write(doc)


# Every seed in this service's layout, one in each other one.
CASES = [pytest.param(seed, None, id=f"{seed}-native") for seed in SEEDS] + [
    pytest.param(seed, layout, id=f"{seed}-{layout}") for layout, seed in zip(LAYOUTS, itertools.cycle(SEEDS[:3]))
]


@pytest.fixture(params=[None, "four-spaces", "crlf-tabs", "minified"], ids=["native", "four-spaces", "crlf-tabs", "minified"])
def layout(request: pytest.FixtureRequest) -> Any:
    return writer(request.param)


def whole(raw: bytes, name: str = "models") -> tuple[dict[int, Any], int]:
    found = extract_entries(parse_catalog(raw), name)
    loaded = whole_reading(digest(raw), found)
    return loaded.shown, loaded.unusable


def cut_of(raw: bytes, before: Text | None = None, name: str = "models") -> spans.Loaded:
    return load_text(raw, name, digest(raw), before)


def windows_hold(text: Text, raw: bytes) -> None:
    """Every window of a cut says truly which bytes and which chunks it holds."""
    at = 0
    for window in text.windows:
        assert at <= window.start < window.end <= len(raw)
        assert window.key == spans.window_key(raw[window.start : window.end])
        assert text.ends[window.stop - 1] == window.end
        assert window.first == 0 and window.start == 0 or text.ends[window.first - 1] == window.start
        at = window.end


def same_text(a: Text, b: Text) -> None:
    """Two cuts of one text are the same cut, column by column."""
    assert (a.digest, a.size, a.keys, a.tail, a.frame) == (b.digest, b.size, b.keys, b.tail, b.frame)
    assert a.pieces == b.pieces
    assert (a.ends, a.versions, a.files) == (b.ends, b.versions, b.files)


@pytest.mark.parametrize(("seed", "layout"), CASES)
def test_a_cut_shows_what_a_whole_parse_shows(seed: int, layout: str | None) -> None:
    rng = random.Random(seed)
    raw = writer(layout)(random_doc(rng), rng)
    loaded = cut_of(raw)
    assert (loaded.shown, loaded.unusable) == whole(raw)
    assert loaded.text is not None and loaded.text.size == len(raw)


def edit(rng: random.Random, doc: dict[str, Any]) -> None:
    """One edit as people and other programs make them."""
    models = [category["models"] for category in doc["categories"]]
    target = rng.choice(models)
    roll = rng.random()
    if roll < 0.25 and target:
        rng.choice(target)["name"] = f"renamed {rng.random()}"
    elif roll < 0.45 and target:
        target.pop(rng.randrange(len(target)))
    elif roll < 0.65:
        target.insert(rng.randrange(len(target) + 1), random_entry(rng, rng.randrange(1, 80)))
    elif roll < 0.75 and len(target) > 1:
        i, j = rng.sample(range(len(target)), 2)
        target[i], target[j] = target[j], target[i]
    elif roll < 0.85:
        doc["categories"].append({"id": f"new{rng.random()}", "name": "New", "models": [random_entry(rng, rng.randrange(1, 80))]})
    elif target:
        rng.choice(target)["civitai_version_id"] = rng.choice([rng.randrange(1, 80), "bad"])


@pytest.fixture(params=[spans.WINDOW, 700, 3000], ids=["one-window", "tiny-windows", "small-windows"])
def window(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Cut in windows of this many bytes: small ones make the test catalogs many windows long."""
    monkeypatch.setattr(spans, "WINDOW", request.param)
    return request.param


@pytest.mark.parametrize(("seed", "layout"), CASES)
def test_a_recut_equals_a_fresh_cut_and_names_every_moved_version(seed: int, layout: str | None, window: int, monkeypatch: pytest.MonkeyPatch) -> None:
    write = writer(layout)
    rng = random.Random(seed)
    doc = random_doc(rng)
    before = cut_of(write(doc))
    for _ in range(8):
        for _ in range(rng.randint(1, 3)):
            edit(rng, doc)
        raw = write(doc)
        read = []
        real = spans.read_piece
        monkeypatch.setattr(spans, "read_piece", lambda chunk, *a: read.append(chunk) or real(chunk, *a))
        again = cut_of(raw, before.text)
        monkeypatch.setattr(spans, "read_piece", real)
        fresh = cut_of(raw)
        assert again.text is not None and fresh.text is not None
        same_text(again.text, fresh.text)
        windows_hold(again.text, raw)
        assert (again.shown, again.unusable) == (fresh.shown, fresh.unusable) == whole(raw)
        assert again.changed is not None and moved_versions(before.shown, fresh.shown) <= again.changed
        assert len(read) <= len(set(fresh.text.keys) - set(before.text.keys))  # only chunks it had not seen
        before = again


@pytest.mark.parametrize(("seed", "layout"), CASES)
def test_a_recut_read_in_place_shows_what_a_whole_parse_shows(seed: int, layout: str | None, window: int, tmp_path: Path) -> None:
    """An outside edit read where it lies (the digest, the windows checked, the stretch between
    read): the same cut as a fresh one, the map's entries as a whole parse gives them, and every
    version that moved named, the ones the map showed otherwise (dirty) among them."""
    write = writer(layout)
    rng = random.Random(seed)
    doc = random_doc(rng)
    path = tmp_path / "models.json"
    path.write_bytes(write(doc))
    before = cut_of(path.read_bytes())
    partial = 0
    for _ in range(8):
        for _ in range(rng.randint(1, 3)):
            edit(rng, doc)
        raw = write(doc)
        path.write_bytes(raw)
        shown = dict(before.shown)
        dirty = set(rng.sample(sorted(shown), min(2, len(shown)))) if rng.random() < 0.4 else set()
        for version in dirty:  # what this service's own saves made the map show, since the cut
            del shown[version]
        assert before.text is not None
        reading = read_changes(path, "models", before.digest, before.text, shown, dirty)
        fresh = cut_of(raw)
        assert fresh.text is not None
        if reading is None:  # too much changed to be worth it: read whole
            before = fresh
            continue
        loaded = reading.loaded
        assert loaded is not None and loaded.text is not None and loaded.partial and reading.digest == digest(raw)
        partial += 1
        same_text(loaded.text, fresh.text)
        windows_hold(loaded.text, raw)
        assert (loaded.shown, loaded.unusable) == (fresh.shown, fresh.unusable) == whole(raw)
        assert loaded.changed is not None and (moved_versions(before.shown, fresh.shown) | dirty) <= loaded.changed
        before = loaded
    if window <= 700:  # many windows: most edits leave most of them as they were
        assert partial


@pytest.mark.parametrize("where", ["first", "middle", "last"])
@pytest.mark.parametrize("change", ["renamed", "added", "removed"])
def test_entries_changed_within_a_list_take_the_structure_over_unparsed(where: str, change: str, layout: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spans, "WINDOW", 2000)
    doc = {"version": 1, "categories": [{"id": c, "name": c, "models": [entry(v, f"f{v}") for v in range(k, k + 150)]} for c, k in (("a", 1), ("b", 1000))]}
    path = tmp_path / "models.json"
    path.write_bytes(layout(doc))
    before = cut_of(path.read_bytes())
    models = doc["categories"][1]["models"]
    at = {"first": 0, "middle": 75, "last": 149}[where]
    if change == "renamed":
        models[at]["name"] = "Renamed"
    elif change == "added":
        models.insert(at, entry(5000, "new"))
    else:
        del models[at]
    raw = layout(doc)
    path.write_bytes(raw)
    assert before.text is not None
    parsed = []
    real = frame_module._parse_skeleton
    monkeypatch.setattr(frame_module, "_parse_skeleton", lambda skeleton: parsed.append(skeleton) or real(skeleton))
    reading = read_changes(path, "models", before.digest, before.text, before.shown, set())
    assert reading is not None and reading.loaded is not None and reading.loaded.text is not None
    text = reading.loaded.text
    assert not parsed and "frame" in text.__dict__  # the plain commas between entries prove it: the counts are moved
    monkeypatch.setattr(frame_module, "_parse_skeleton", real)
    fresh = cut_of(raw)
    assert fresh.text is not None
    same_text(text, fresh.text)  # the frame, counts moved, is the one a fresh cut parses
    assert reading.loaded.shown == whole(raw)[0]


def test_an_unchanged_file_is_known_by_its_digest(tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    path.write_bytes(serialize_catalog(random_doc(random.Random(1))))
    before = cut_of(path.read_bytes())
    assert before.text is not None
    reading = read_changes(path, "models", before.digest, before.text, before.shown, set())
    assert reading is not None and reading.loaded is None and reading.digest == before.digest


def same_reading(a: Any, b: Any) -> None:
    """Two readings of one text hold the same cut: chunks, pieces (but their content hashes), windows and entries."""
    assert a.digest == b.digest and a.loaded.unusable == b.loaded.unusable and a.loaded.shown == b.loaded.shown
    ta, tb = a.loaded.text, b.loaded.text
    assert ta.keys == tb.keys and ta.windows == tb.windows and ta.tail == tb.tail and ta.frame == tb.frame
    assert list(ta.ends) == list(tb.ends) and ta.versions == tb.versions and ta.files == tb.files
    for key in ta.keys:
        pa, pb = ta.pieces[key], tb.pieces[key]
        assert (pa.prefix, pa.length, pa.version, pa.file, pa.shown, pa.unusable) == (pb.prefix, pb.length, pb.version, pb.file, pb.shown, pb.unusable)


@pytest.mark.parametrize("seed", range(6))
def test_a_catalog_cut_by_a_worker_is_read_here_as_if_cut_here(seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("service.catalog.cutting.FILE_BLOCK", 2048)  # many blocks, and entries longer than one
    doc = random_doc(random.Random(seed))
    path = tmp_path / "loras.json"
    path.write_bytes(serialize_catalog(doc))
    cut = pickle.loads(pickle.dumps(cut_rows(path, "loras")))  # as a worker process sends it back
    assert cut is not None

    here = read_catalog(path, "loras", None, None)

    def parse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("an entry was parsed here")

    monkeypatch.setattr("service.catalog.text.read_piece", parse)
    same_reading(read_catalog(path, "loras", None, None, cut=cut), here)


def test_a_worker_cut_of_another_text_is_not_used(tmp_path: Path) -> None:
    rng = random.Random(11)
    doc = random_doc(rng)
    path = tmp_path / "loras.json"
    path.write_bytes(serialize_catalog(doc))
    cut = cut_rows(path, "loras")
    assert cut is not None
    edit(rng, doc)
    path.write_bytes(serialize_catalog(doc))  # saved again after the worker cut it
    same_reading(read_catalog(path, "loras", None, None, cut=cut), read_catalog(path, "loras", None, None))


def test_a_worker_sends_nothing_for_a_catalog_that_does_not_cut_and_leaves_the_collector_as_it_was(tmp_path: Path) -> None:
    import gc

    path = tmp_path / "loras.json"
    path.write_bytes(b'{"version": 1, "categories": [{"id": "c", "name": "C", "models": [1, 2, 3]}]}')
    assert gc.isenabled()
    assert cut_rows(path, "loras") is None and cut_rows(tmp_path / "absent.json", "loras") is None
    assert gc.isenabled()


def test_rows_that_do_not_fit_the_text_are_refused_and_the_text_cut_here(tmp_path: Path) -> None:
    path = tmp_path / "loras.json"
    path.write_bytes(serialize_catalog(random_doc(random.Random(12), entries=80)))
    cut = cut_rows(path, "loras")
    assert cut is not None and len(cut.rows) > 2
    shifted = [(row[0], row[1] + 1, *row[2:]) if at == 1 else row for at, row in enumerate(cut.rows)]
    for rows in (shifted, cut.rows[:-1], [*cut.rows, cut.rows[-1]]):
        wrong = CutRows(cut.digest, cut.prefixes, rows)
        same_reading(read_catalog(path, "loras", None, None, cut=wrong), read_catalog(path, "loras", None, None))


def test_a_structure_broken_between_entries_is_never_taken_over(window: int, tmp_path: Path) -> None:
    """A re-cut whose chunks are all entries after a plain comma trusts the structure around
    them without parsing it again; a comma lost between two entries is not that, and the
    file is found broken, not read."""
    doc = {"version": 1, "categories": [{"id": "c", "name": "C", "models": [entry(v, f"f{v}") for v in range(1, 200)]}]}
    path = tmp_path / "models.json"
    raw = serialize_catalog(doc)
    path.write_bytes(raw)
    before = cut_of(raw)
    assert before.text is not None
    middle = raw.index(b"},\n        {", len(raw) // 2)
    path.write_bytes(raw[:middle] + b"}\n        {" + raw[middle + len(b"},\n        {") :])  # a comma lost
    assert read_changes(path, "models", before.digest, before.text, before.shown, set()) is None
    reading = read_catalog(path, "models", before.digest, before.text, shown=before.shown, dirty=set())
    assert reading.loaded is None and reading.unparsable


def test_a_file_changed_while_it_is_read_is_read_again_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(7)
    doc = random_doc(rng)
    path = tmp_path / "models.json"
    path.write_bytes(serialize_catalog(doc))
    before = cut_of(path.read_bytes())
    assert before.text is not None
    edit(rng, doc)
    path.write_bytes(serialize_catalog(doc))
    edit(rng, doc)
    last = serialize_catalog(doc) + b"\n"
    real = recut_file

    def written_meanwhile(fd: int, *args: Any) -> Any:
        with open(path, "r+b") as handle:  # another program saves in place while the file is read
            handle.write(last)
        return real(fd, *args)

    monkeypatch.setattr("service.catalog.reading.recut_file", written_meanwhile)
    assert read_changes(path, "models", before.digest, before.text, before.shown, set()) is None
    monkeypatch.setattr("service.catalog.reading.recut_file", real)
    reading = read_catalog(path, "models", before.digest, before.text, shown=before.shown, dirty=set())
    assert reading.loaded is not None and reading.digest == digest(last)
    assert (reading.loaded.shown, reading.loaded.unusable) == whole(last)


def entry_outside_models(doc: dict[str, Any]) -> bytes:
    doc["categories"][0]["notes"] = [{"an": "object at an entry's depth"}]
    return serialize_catalog(doc)


def a_string_among_entries(doc: dict[str, Any]) -> bytes:
    doc["categories"][0]["models"].insert(1, "not an entry")
    return serialize_catalog(doc)


def a_number_cut_as_an_entry(doc: dict[str, Any]) -> bytes:
    raw = serialize_catalog(doc)
    return raw.replace(b'"name": "Model 1",', b'"name": "Model 1"', 1)  # no longer JSON inside the entry


@pytest.mark.parametrize(
    "write",
    [
        pytest.param(lambda doc: re.sub(rb'(.*"models": \[)\n\s*\{', rb"\1{", json.dumps(doc, indent=4).encode(), flags=re.S), id="indented-then-inline"),
        pytest.param(entry_outside_models, id="entry-outside-models"),
        pytest.param(a_string_among_entries, id="not-an-object"),
        pytest.param(a_number_cut_as_an_entry, id="broken-entry"),
    ],
)
def test_a_text_that_does_not_cut_this_way_is_read_whole(write: Any) -> None:
    doc = {"version": 1, "date": "x", "categories": [{"id": "c", "name": "C", "models": [entry(1, "a.safetensors"), entry(2, "b.safetensors")]}]}
    doc["categories"].append({"id": "d", "name": "D", "models": [entry(3, "c.safetensors")]})
    raw = write(doc)
    with pytest.raises((Unsplittable, CatalogFormatError)):
        cut_of(raw)


def test_a_broken_structure_between_entries_does_not_cut() -> None:
    raw = serialize_catalog({"version": 1, "categories": [{"id": "c", "name": "C", "models": [entry(1, "a"), entry(2, "b")]}]})
    broken = raw.replace(b"},\n        {", b"}\n        {", 1)  # a comma lost between two entries
    with pytest.raises(Unsplittable):
        cut_of(broken)
    with pytest.raises(CatalogFormatError):
        parse_catalog(broken)


# --- saves spliced from a cut ---------------------------------------------------------------


def stores_in(folder: Path, docs: dict[str, dict[str, Any]]) -> dict[str, CatalogStore]:
    folder.mkdir()
    for name, doc in docs.items():
        (folder / f"{name}.json").write_bytes(serialize_catalog(doc))
    return {name: CatalogStore(folder / f"{name}.json") for name in docs}


def undated(raw: bytes) -> bytes:
    """The bytes without the times a save writes (the catalog's `date`, an added entry's `added_at`)."""
    return re.sub(rb'"(date|added_at)": "[^"]*"', rb'"\1": ""', raw)


def lora(version: int) -> dict[str, Any]:
    return entry(version, f"lora_{version}.safetensors", "loras", model_id=version * 10)


def plans(rng: random.Random, models: dict[str, Any]) -> list[tuple[Any, Wanted]]:
    """Random adds, promotions and removals, with what each asks about."""
    listed = [e for c in models["categories"] for e in c["models"] if isinstance(e.get("civitai_version_id"), int)]
    out: list[tuple[Any, Wanted]] = []
    for _ in range(6):
        roll = rng.random()
        if roll < 0.4:
            version = rng.choice([rng.randrange(1, 60), rng.randrange(1000, 2000)])  # often one already catalogued
            new = entry(version, f"new_{version}.safetensors", "checkpoints", model_id=77)
            mapped = MappedVersion(new, rng.choice(["checkpoints", "c1", "fresh"]), None)
            out.append((functools.partial(plan_add, mapped=mapped), Wanted(frozenset({version}), frozenset({new["file"]}))))
        elif roll < 0.7:
            version = rng.choice([e["civitai_version_id"] for e in listed] or [1])
            out.append((functools.partial(plan_promote, version_id=version), Wanted(frozenset({version}))))
        else:
            file = rng.choice([e.get("file") for e in listed if isinstance(e.get("file"), str)] or ["none"])
            out.append((functools.partial(plan_remove, file=file, on_disk=lambda _entry: False), Wanted(files=frozenset({file}))))
    return out


def texts_of(stores: dict[str, CatalogStore]) -> dict[str, Text]:
    found = {}
    for name, store in stores.items():
        loaded = cut_of(store.path.read_bytes(), name=name)
        assert loaded.text is not None
        found[name] = loaded.text
    return found


@pytest.mark.parametrize("seed", SEEDS)
def test_spliced_saves_write_what_whole_saves_write(seed: int, window: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    models = random_doc(rng)
    for category in models["categories"]:
        category["models"][1:1] = [lora(rng.randrange(1, 60)) for _ in range(3)]
        category["models"][-1:-1] = [lora(61), lora(61)]  # one version in many places: a promotion takes many entries out
    docs = {"models": models, "loras": random_doc(rng, 10)}
    spliced, whole_ = stores_in(tmp_path / "spliced", docs), stores_in(tmp_path / "whole", docs)
    texts = texts_of(spliced)
    for plan, wanted in [*plans(rng, models), (functools.partial(plan_promote, version_id=61), Wanted(frozenset({61})))]:
        a = run_transaction(spliced, plan, wanted, texts)
        b = run_transaction(whole_, plan)
        assert (type(a.error), a.answer) == (type(b.error), b.answer)
        assert not a.unread and a.written.keys() == b.written.keys()  # every save taken into the map as it was written
        for name in ("models", "loras"):
            assert undated(spliced[name].path.read_bytes()) == undated(whole_[name].path.read_bytes())
        for name, saved in a.written.items():
            raw = spliced[name].path.read_bytes()
            assert saved.digest == digest(raw)
            fresh = cut_of(raw, name=name)
            assert saved.text is not None and fresh.text is not None
            same_text(saved.text, fresh.text)  # the cut worked out from the write is the file's cut
            windows_hold(saved.text, raw)
            edited = parse_catalog(raw)  # and an outside edit after it is cut as a fresh cut would
            edit(rng, edited)
            outside = serialize_catalog(edited)
            same_text(cut_of(outside, saved.text, name).text, cut_of(outside, name=name).text)
            assert saved.changes is not None
            for version, shown in saved.changes.items():
                assert fresh.shown.get(version) == shown
        texts = {**texts, **{name: saved.text for name, saved in a.written.items() if saved.text is not None}}


def test_a_spliced_save_that_needs_the_fallback_writer_writes_the_same(tmp_path: Path) -> None:
    big = entry(5, "big.safetensors", size=2**70)  # beyond 64 bits: orjson cannot write it
    docs = {"models": {"version": 1, "date": "x", "categories": [{"id": "c", "name": "C", "models": [entry(1, "a"), big, entry(9, "z")]}]},
            "loras": {"version": 1, "date": "x", "categories": []}}
    spliced, whole_ = stores_in(tmp_path / "spliced", docs), stores_in(tmp_path / "whole", docs)
    plan = functools.partial(plan_remove, file="big.safetensors", on_disk=lambda _entry: False)
    other = functools.partial(plan_add, mapped=MappedVersion(entry(7, "new.safetensors", size=2**71), "c", None))
    for step, wanted in ((other, Wanted(frozenset({7}), frozenset({"new.safetensors"}))), (plan, Wanted(files=frozenset({"big.safetensors"})))):
        a = run_transaction(spliced, step, wanted, texts_of(spliced))
        b = run_transaction(whole_, step)
        assert a.error is None and a.answer == b.answer
        assert undated(spliced["models"].path.read_bytes()) == undated(whole_["models"].path.read_bytes())
        saved = a.written["models"]
        assert saved.digest == digest(spliced["models"].path.read_bytes())
    assert parse_catalog(spliced["models"].path.read_bytes())["categories"][0]["models"][-1]["size"] == 2**71


def test_a_save_in_place_after_the_cut_is_never_copied_over(tmp_path: Path) -> None:
    docs = {"models": {"version": 1, "date": "x", "categories": [{"id": "c", "name": "C", "models": [entry(1, "a"), entry(2, "b")]}]}}
    store = stores_in(tmp_path / "c", docs)["models"]
    text = texts_of({"models": store})["models"]
    reading = store.read_spliced(text, {3}, set())
    try:
        raw = store.path.read_bytes()
        seen = os.stat(store.path)
        changed = raw.replace(b"Model 2", b"Model X")  # same size, same file, other bytes
        with open(store.path, "r+b") as handle:
            handle.write(changed)
        os.utime(store.path, ns=(seen.st_atime_ns, seen.st_mtime_ns))
        with pytest.raises(StaleRead):
            store.write(reading)
    finally:
        reading.close()
    assert store.path.read_bytes() == changed  # the other save stands


def test_a_source_says_what_the_file_held_while_it_was_copied(tmp_path: Path) -> None:
    """Runs of several blocks (hashed as read and as written on two threads) come out whole and in order."""
    path = tmp_path / "f"
    data = random.Random(5).randbytes(3 * COPY_BLOCK + 12345)
    path.write_bytes(data)
    out = tmp_path / "out"
    fd = os.open(path, os.O_RDONLY)
    try:
        source = Source(fd)
        with open(out, "wb") as handle:
            hasher = hashlib.sha256()
            source.copy(10, 20, handle, hasher)
            source.copy(5000, 2 * COPY_BLOCK + 7, handle, hasher)
            source.copy(3 * COPY_BLOCK, 3 * COPY_BLOCK + 100, handle, hasher)
            assert source.finish() == digest(data)
        copied = data[10:20] + data[5000 : 2 * COPY_BLOCK + 7] + data[3 * COPY_BLOCK : 3 * COPY_BLOCK + 100]
        assert out.read_bytes() == copied and hasher.hexdigest() == digest(copied)
    finally:
        os.close(fd)


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_a_save_to_a_catalog_in_another_layout_writes_it_whole_in_this_services(name: str, tmp_path: Path) -> None:
    """A cut of another layout is never spliced (its runs would mix two layouts in one file):
    the save writes the document whole, as a save of an uncut file does, and the cut it hands
    the map is that of the file written."""
    docs = {"models": {"version": 1, "date": "x", "categories": [{"id": "c", "name": "C", "models": [entry(v, f"f{v}") for v in range(1, 40)]}]},
            "loras": {"version": 1, "date": "x", "categories": []}}
    spliced, whole_ = stores_in(tmp_path / "spliced", docs), stores_in(tmp_path / "whole", docs)
    for stores in (spliced, whole_):
        stores["models"].path.write_bytes(LAYOUTS[name](docs["models"]))
    texts = texts_of(spliced)
    assert texts["models"].layout.end != b"\n        }"
    plan = functools.partial(plan_add, mapped=MappedVersion(entry(77, "new.safetensors"), "c", None))
    a = run_transaction(spliced, plan, Wanted(frozenset({77}), frozenset({"new.safetensors"})), texts)
    b = run_transaction(whole_, plan)
    assert a.error is None and a.answer == b.answer
    raw = spliced["models"].path.read_bytes()
    assert undated(raw) == undated(whole_["models"].path.read_bytes())
    assert b"\n        {\n" in raw and b"\r" not in raw and b"\t" not in raw  # this service's layout
    saved = a.written["models"]
    assert saved.digest == digest(raw)
    assert cut_of(raw).shown[77].file == "new.safetensors"


@pytest.mark.parametrize("seed", SEEDS[:4])
def test_a_catalog_re_formatted_into_another_layout_keeps_what_the_map_shows(seed: int) -> None:
    """No chunk of a re-formatted text is the same, but most entries are: each is known by its
    content, shown by the very objects it was, and the cut is the one a fresh cut makes."""
    rng = random.Random(seed)
    doc = random_doc(rng)
    before = cut_of(raw_of(doc))
    for layout in LAYOUTS:
        edit(rng, doc)
        raw = LAYOUTS[layout](doc)
        assert before.text is not None
        again, fresh = cut_of(raw, before.text), cut_of(raw)
        assert again.text is not None and fresh.text is not None and again.text.layout == fresh.text.layout != before.text.layout
        same_text(again.text, fresh.text)
        assert (again.shown, again.unusable) == whole(raw)
        kept = [version for version, shown in again.shown.items() if before.shown.get(version) == shown]
        assert kept and all(again.shown[version] is before.shown[version] for version in kept)
        assert again.changed is None  # the map compares what it shows
        before = again


@pytest.mark.parametrize(("seed", "layout"), CASES[::3])
@pytest.mark.parametrize("block", [300, 2000])
def test_a_file_cut_a_block_at_a_time_is_the_cut_of_its_whole_text(seed: int, layout: str | None, block: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks smaller than most entries (each then grows until an entry ends in it) and blocks
    of several: the same cut as the text held whole, and the same map as a whole parse."""
    from service.catalog import cutting

    monkeypatch.setattr(cutting, "FILE_BLOCK", block)
    rng = random.Random(seed)
    doc = random_doc(rng)
    doc["categories"][0]["models"].insert(0, {**entry(99, "long.safetensors"), "notes": "x" * 5000})  # longer than any block
    raw = writer(layout)(doc, rng)
    path = tmp_path / "models.json"
    path.write_bytes(raw)
    reading = read_catalog(path, "models", None, None)
    assert reading.loaded is not None and reading.loaded.text is not None
    same_text(reading.loaded.text, cut_of(raw).text)  # type: ignore[arg-type]
    windows_hold(reading.loaded.text, raw)
    assert (reading.loaded.shown, reading.loaded.unusable) == whole(raw)


MISPLACED = {"civitai_version_id": 5, "file": "f5", "dest": "checkpoints"}


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"categories":[{"id":"c","meta":{"models":[' + orjson.dumps(MISPLACED) + b']},"models":[0]}]}', id="inline-nested-models"),
        pytest.param(serialize_catalog({"categories": [{"id": "c", "meta": [MISPLACED], "models": [0]}]}), id="an-entry's-depth-outside-models"),
        pytest.param(b'{"categories":[{"id":"c","meta":{"models":[' + orjson.dumps(MISPLACED) + b'e1]},"models":[0]}]}', id="not-json"),
        pytest.param(serialize_catalog({"categories": [{"id": "c", "meta": [MISPLACED], "models": [1]}]}), id="a-one"),
        pytest.param(serialize_catalog({"categories": [{"id": "c", "meta": [MISPLACED], "models": [True]}]}), id="a-true"),
        pytest.param(serialize_catalog({"categories": [{"id": "c", "meta": [MISPLACED], "models": ["cut entry 0123456789abcdef"]}]}), id="a-string"),
    ],
)
def test_an_entry_outside_a_models_list_is_never_taken_for_one(raw: bytes) -> None:
    """What stands in for a cut entry can be neither written in a models list (a 0 balanced an
    entry cut elsewhere) nor run into the bytes after it (0e1 is a number)."""
    try:
        expected = whole(raw)
    except CatalogFormatError:
        expected = None
    try:
        loaded = cut_of(raw)
    except (Unsplittable, CatalogFormatError):
        return
    assert expected is not None and (loaded.shown, loaded.unusable) == expected


def test_a_one_line_file_cut_short_inside_a_nested_entry_does_not_cut() -> None:
    raw = b'{"categories":[{"id":"c","models":[{"n":{"a":{},"b":{},"c":{},"d":{},"e":{},"f":{},"g":{},"h":{}},"x":'
    with pytest.raises((Unsplittable, CatalogFormatError)):
        cut_of(raw)


def test_entries_with_many_braces_are_scanned_over_their_own_length(monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry whose end is not among its first closing braces is scanned, over a window about
    its own size: never the rest of the text for each entry (that was quadratic)."""
    from service.catalog import layout as layout_module

    scanned: list[int] = []
    real = layout_module._SCAN
    monkeypatch.setattr(layout_module, "_SCAN", lambda text, at: scanned.append(len(text)) or real(text, at))
    models = [{**entry(v, f"f{v}.safetensors"), "name": "x" + "}" * 10} for v in range(1, 2001)]
    raw = orjson.dumps({"categories": [{"id": "c", "models": models}]})
    loaded = cut_of(raw)
    assert (loaded.shown, loaded.unusable) == whole(raw)
    assert len(scanned) == 2001 and sum(scanned[1:]) < 20 * len(raw)  # the first: the layout learnt from the first entry



def test_a_file_whose_structure_will_be_too_large_is_not_cut_to_the_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first block says how much structure the whole text holds: far over what is checked,
    the rest is not cut in vain before the file is parsed whole (a million entries)."""
    from service.catalog import cutting

    monkeypatch.setattr(cutting, "FILE_BLOCK", 4000)
    monkeypatch.setattr(cutting, "SKELETON_LIMIT", 2000)
    monkeypatch.setattr(frame_module, "SKELETON_LIMIT", 2000)
    doc = {"categories": [{"id": "c", "name": "C", "models": [entry(v, f"f{v}.safetensors") for v in range(1, 801)]}]}
    raw = serialize_catalog(doc)
    path = tmp_path / "models.json"
    path.write_bytes(raw)
    read: list[bytes] = []
    real = spans.read_piece
    monkeypatch.setattr(spans, "read_piece", lambda chunk, *a: read.append(chunk) or real(chunk, *a))
    reading = read_catalog(path, "models", None, None)
    assert reading.loaded is not None and reading.loaded.text is None  # parsed whole
    assert reading.loaded.shown == whole(raw)[0]
    assert 0 < len(read) < 100  # the first block's entries, not all 800


def test_a_reading_works_out_the_columns_the_next_re_cut_needs(tmp_path: Path) -> None:
    """Where each chunk ends, its version and its file are worked out by the reading, in its
    thread, not by the first edit's re-cut (a stall of the first edit after a start)."""
    path = tmp_path / "models.json"
    path.write_bytes(serialize_catalog({"categories": [{"id": "c", "name": "C", "models": [entry(v, f"f{v}") for v in range(1, 50)]}]}))
    reading = read_catalog(path, "models", None, None)
    assert reading.loaded is not None and reading.loaded.text is not None
    assert {"ends", "versions", "files", "frame"} <= reading.loaded.text.__dict__.keys()
