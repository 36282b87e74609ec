"""The generated libraries: what is written matches the truth, it streams, and an edit changes one entry."""

import os
import tracemalloc
from pathlib import Path

import orjson
import pytest


def _entries(catalog: Path) -> list[dict]:
    doc = orjson.loads(catalog.read_bytes())
    return [e for cat in doc["categories"] for e in cat["models"]]


def test_catalogs_are_orjson_indent_2_and_hold_the_truth(tmp_path: Path) -> None:
    from harness.dataset import generate

    ds = generate(1234, tmp_path / "lib")
    for name in ("models.json", "loras.json"):
        raw = (ds.catalog_dir / name).read_bytes()
        assert orjson.dumps(orjson.loads(raw), option=orjson.OPT_INDENT_2) == raw
    written = {e["civitai_version_id"]: (e, catalog) for catalog in ("models", "loras")
               for e in _entries(ds.catalog_dir / f"{catalog}.json")}
    assert len(written) == len(ds.truth) == 1234
    for t in ds.truth:
        entry, catalog = written[t.vid]
        assert (entry["file"], entry["dest"], entry["name"], entry["civitai_model_id"], catalog) == (
            t.file, t.dest, t.name, t.mid, t.catalog)
    assert sum(1 for t in ds.truth if t.catalog == "models") == round(1234 * 0.7)


def test_the_even_entries_have_their_file_on_disk(tmp_path: Path) -> None:
    from harness.dataset import generate

    ds = generate(500, tmp_path / "lib")
    on_disk = {p.relative_to(ds.models_dir).as_posix() for p in ds.models_dir.rglob("*") if p.is_file()}
    expected = {f"{t.dest}/{t.subdir}/{t.file}" if t.subdir else f"{t.dest}/{t.file}" for t in ds.truth if t.present}
    assert on_disk == expected
    assert ds.files_created == 250
    assert {t.present for t in ds.truth[1::2]} == {False}


def test_the_truth_is_a_sequence_computed_on_demand(tmp_path: Path) -> None:
    from harness.dataset import Truths

    truth = Truths(100)
    assert len(truth) == 100
    assert truth[-1] == truth[99] and truth[-1].vid == truth[0].vid + 99
    assert [t.vid for t in truth[10:13]] == [truth[0].vid + k for k in (10, 11, 12)]
    with pytest.raises(IndexError):
        truth[100]


def test_generation_streams_instead_of_holding_the_catalog(tmp_path: Path) -> None:
    from harness.dataset import generate

    tracemalloc.start()
    try:
        ds = generate(30_000, tmp_path / "lib")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = (ds.catalog_dir / "models.json").stat().st_size + (ds.catalog_dir / "loras.json").stat().st_size
    assert size > 10_000_000
    assert peak < size / 2, f"generation held {peak / 1e6:.1f} MB for {size / 1e6:.1f} MB of catalogs"


def test_a_big_catalog_is_about_the_asked_size_with_notes_only_in_models_json(tmp_path: Path) -> None:
    from harness.dataset import generate

    tracemalloc.start()
    try:
        ds = generate(300, tmp_path / "lib", catalog_bytes=6_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = ds.models_json.stat().st_size
    assert 5_900_000 <= size <= 6_100_000
    assert peak < size / 2
    models = _entries(ds.models_json)
    assert all(len(e["notes"]) > 20_000 for e in models)
    assert not any("notes" in e for e in _entries(ds.catalog_dir / "loras.json"))


def test_renaming_an_entry_replaces_the_file_and_changes_only_that_name(tmp_path: Path) -> None:
    from harness.dataset import generate, rewrite_with_new_name

    ds = generate(200, tmp_path / "lib")
    before = _entries(ds.models_json)
    inode = ds.models_json.stat().st_ino
    rewrite_with_new_name(ds.models_json, ds.truth[0].name, "Renamed \"by\" an editor")
    after = _entries(ds.models_json)
    assert ds.models_json.stat().st_ino != inode  # a new file took its place, as editors save
    assert after[0]["name"] == "Renamed \"by\" an editor"
    assert after[1:] == before[1:] and {**after[0], "name": before[0]["name"]} == before[0]
    assert sorted(os.listdir(ds.catalog_dir)) == ["loras.json", "models.json"]


@pytest.mark.parametrize("layout", ["four-spaces", "tabs", "crlf", "minified"])
def test_a_catalog_in_another_layout_is_the_same_json_and_renames_in_it_keep_that_layout(layout: str, tmp_path: Path) -> None:
    from harness.dataset import generate, relayout, rewrite_with_new_name, write_renamed

    ds = generate(200, tmp_path / "lib")
    native = ds.models_json.read_bytes()
    raw = relayout(native, layout)
    assert orjson.loads(raw) == orjson.loads(native) and raw != native
    lines = raw.splitlines(keepends=True)
    marks = {"four-spaces": b'\n    "categories"' in raw, "tabs": b'\n\t"categories"' in raw,
             "crlf": all(line.endswith(b"\r\n") for line in lines[:-1]), "minified": len(lines) == 1}
    assert marks[layout]
    write_renamed(ds.models_json, raw, ds.truth[0].name, "Renamed once")
    rewrite_with_new_name(ds.models_json, "Renamed once", "Renamed twice")
    after = ds.models_json.read_bytes()
    assert after == raw.replace(orjson.dumps(ds.truth[0].name), orjson.dumps("Renamed twice"), 1)  # the layout kept, byte for byte
    assert _entries(ds.models_json)[0]["name"] == "Renamed twice"


def test_renaming_a_name_that_is_not_there_leaves_the_file_alone(tmp_path: Path) -> None:
    from harness.dataset import generate, rewrite_with_new_name

    ds = generate(50, tmp_path / "lib")
    raw = ds.models_json.read_bytes()
    with pytest.raises(ValueError):
        rewrite_with_new_name(ds.models_json, "No such entry", "Anything")
    assert ds.models_json.read_bytes() == raw
    assert sorted(os.listdir(ds.catalog_dir)) == ["loras.json", "models.json"]


def test_the_map_check_passes_the_truth_and_counts_a_wrong_status(tmp_path: Path) -> None:
    from harness.dataset import Truths, check_map

    truth = Truths(60)
    by_version = {str(t.vid): {"status": "present" if t.present else "missing", "file": t.file, "dest": t.dest,
                               "civitai_model_id": t.mid} for t in truth}
    by_model = {str(t.mid): [t.vid] for t in truth}
    good = check_map({"by_version": by_version, "by_model": by_model}, truth)
    assert good["ok"] and good["mismatches"] == 0 and good["expected_present"] == 30
    by_version[str(truth[3].vid)]["status"] = "present"
    bad = check_map({"by_version": by_version, "by_model": by_model}, truth)
    assert not bad["ok"] and bad["mismatches"] == 1 and str(truth[3].vid) in bad["mismatch_examples"][0]
