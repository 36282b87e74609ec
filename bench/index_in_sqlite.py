"""What the map's facts would cost held in SQLite instead of Python objects: one row per version
(its ids, file, folder, SHA-256, size, head, and its chunk's key and length in the catalog's
text), indexed by version, file, hash, model and chunk key, in memory. It measures the memory,
the time to fill and index the table, and a lookup; the service does not use it (see
bench/README.md, "a million entries, part four").

    .venv/bin/python bench/index_in_sqlite.py [--entries 1000000]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sqlite3
import time
from collections.abc import Iterator

COLUMNS = "version INTEGER PRIMARY KEY, model INTEGER, file TEXT, folder INTEGER, catalog INTEGER, sha256 BLOB, size INTEGER, head BLOB, chunk_key INTEGER, chunk_length INTEGER"
INDEXES = ("file", "sha256", "model", "chunk_key")
FIRST_VERSION = 3_000_000


def rss_mb() -> int:
    with open("/proc/self/status") as status:
        return int(status.read().split("VmRSS:")[1].split()[0]) // 1024


def rows(count: int) -> Iterator[tuple[object, ...]]:
    """Rows shaped like the benchmark's dataset: three versions a model, a 200-byte head."""
    for i in range(count):
        version, model, file = FIRST_VERSION + i, 1_000_000 + i // 3, f"bench_checkpoints_{i:06d}_v1.safetensors"
        head = b'"%d":{"file":"%s","dest":"checkpoints","name":"Bench checkpoints model %d v1","base_model":"Illustrious","civitai_model_id":%d,"catalog":"models","size_gb":0.05,"status":"' % (
            version, file.encode(), i // 3, model)
        yield version, model, file, 1, 1, hashlib.sha256(file.encode()).digest(), 50_000_000 + i, head, hash(file), 480


def per_lookup_us(db: sqlite3.Connection, sql: str, keys: list[object]) -> float:
    started = time.perf_counter()
    for key in keys:
        db.execute(sql, (key,)).fetchall()
    return 1e6 * (time.perf_counter() - started) / len(keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    args = parser.parse_args()
    before = rss_mb()
    db = sqlite3.connect(":memory:")
    db.execute("PRAGMA cache_size = -4000000")  # an in-memory database lives in its cache
    db.execute(f"CREATE TABLE entries ({COLUMNS})")
    started = time.perf_counter()
    db.executemany("INSERT INTO entries VALUES (?,?,?,?,?,?,?,?,?,?)", rows(args.entries))
    filled = time.perf_counter()
    for column in INDEXES:
        db.execute(f"CREATE INDEX by_{column} ON entries({column})")
    indexed = time.perf_counter()
    print(f"{args.entries:,} rows: filled in {filled - started:.2f} s (the rows made in Python included), "
          f"indexed in {indexed - filled:.2f} s, memory +{rss_mb() - before} MB")
    picks = random.Random(1).sample(range(args.entries), min(20_000, args.entries))
    versions = [FIRST_VERSION + i for i in picks]
    files = [f"bench_checkpoints_{i:06d}_v1.safetensors" for i in picks]
    print(f"a lookup by version {per_lookup_us(db, 'SELECT head, file, sha256 FROM entries WHERE version = ?', versions):.1f} µs, "
          f"by file {per_lookup_us(db, 'SELECT version FROM entries WHERE file = ?', files):.1f} µs")
    started = time.perf_counter()
    total = sum(len(head) for (head,) in db.execute("SELECT head FROM entries ORDER BY version"))
    print(f"every head in order of version: {time.perf_counter() - started:.2f} s ({total / 1e6:.0f} MB)")


if __name__ == "__main__":
    main()
