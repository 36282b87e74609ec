"""The measures behind bench/README's "a million entries, part four", on small inputs: each
measures what it says and leaves nothing behind."""

import sqlite3
import sys

import index_in_sqlite
import write_floor


def test_a_save_floor_copies_the_file_whole_and_removes_its_copy(tmp_path) -> None:
    source = write_floor.make_file(str(tmp_path), 3_000_000)
    copy_s, fsync_s, hash_s = write_floor.one_save(source)
    assert min(copy_s, fsync_s, hash_s) > 0
    assert [path.name for path in tmp_path.iterdir()] == [source.rsplit("/", 1)[1]]
    with open(source, "rb") as handle:
        assert len(handle.read()) == 3_000_000


def test_the_sqlite_prototype_holds_one_row_per_version_found_by_each_index(monkeypatch, capsys) -> None:
    db = sqlite3.connect(":memory:")
    db.execute(f"CREATE TABLE entries ({index_in_sqlite.COLUMNS})")
    db.executemany("INSERT INTO entries VALUES (?,?,?,?,?,?,?,?,?,?)", index_in_sqlite.rows(30))
    assert db.execute("SELECT count(DISTINCT version), count(DISTINCT model) FROM entries").fetchone() == (30, 10)
    head, file = db.execute("SELECT head, file FROM entries WHERE version = ?", (index_in_sqlite.FIRST_VERSION + 7,)).fetchone()
    assert head.startswith(b'"%d":{"file":"%s"' % (index_in_sqlite.FIRST_VERSION + 7, file.encode())) and head.endswith(b'"status":"')
    monkeypatch.setattr(sys, "argv", ["index_in_sqlite.py", "--entries", "2000"])
    index_in_sqlite.main()
    out = capsys.readouterr().out
    assert "2,000 rows" in out and "a lookup by version" in out
