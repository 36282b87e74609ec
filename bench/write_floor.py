"""What a save that writes the whole catalog costs on this disk before any of the service's own
work: a copy of a file of the catalog's size made by the kernel (`copy_file_range`, no bytes
through Python), its fsync, and one SHA-256 pass over it. The floor under an add to a catalog
that size, with the file replaced whole (atomic, write-through: README, "Guarantees when
writing").

    .venv/bin/python bench/write_floor.py [--mb 346] [--runs 5] [--dir FOLDER]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time

BLOCK = 1 << 20


def make_file(folder: str, size: int) -> str:
    """A file of `size` bytes of JSON-like text in `folder` (written once, then in the page cache)."""
    line = b'        {"name": "entry", "file": "model.safetensors", "hash": "' + b"0" * 64 + b'"},\n'
    block = line * (BLOCK // len(line) + 1)
    fd, path = tempfile.mkstemp(prefix="write-floor-", dir=folder)
    with os.fdopen(fd, "wb") as handle:
        left = size
        while left > 0:
            left -= handle.write(block[: min(BLOCK, left)])
    return path


def one_save(source: str) -> tuple[float, float, float]:
    """A copy of `source` beside it, its fsync, and a SHA-256 pass over it: seconds each."""
    size = os.path.getsize(source)
    target = source + ".copy"
    with open(source, "rb") as read, open(target, "wb") as write:
        started = time.perf_counter()
        copied = 0
        while copied < size:
            copied += os.copy_file_range(read.fileno(), write.fileno(), size - copied, copied, copied)
        copy_s = time.perf_counter() - started
        started = time.perf_counter()
        os.fsync(write.fileno())
        fsync_s = time.perf_counter() - started
    started = time.perf_counter()
    with open(target, "rb") as handle:
        hashlib.file_digest(handle, "sha256")
    hash_s = time.perf_counter() - started
    os.unlink(target)
    return copy_s, fsync_s, hash_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=346.0, help="the catalog's size in MB (default 346: 700,000 entries)")
    parser.add_argument("--runs", type=int, default=5, help="saves timed after one to warm the cache (default 5)")
    parser.add_argument("--dir", default=None, help="a folder on the disk to measure (default: the temp folder)")
    args = parser.parse_args()
    path = make_file(args.dir or tempfile.gettempdir(), int(args.mb * 1_000_000))
    try:
        one_save(path)  # the first copy makes room in the page cache: not what a running service sees
        runs = [one_save(path) for _ in range(args.runs)]
    finally:
        os.unlink(path)
    copy_ms, fsync_ms, hash_ms = ([1000 * run[i] for run in runs] for i in range(3))
    print(f"a {args.mb:g} MB file, {args.runs} runs, median (range):")
    for label, values in (("copy (copy_file_range)", copy_ms), ("fsync", fsync_ms), ("one SHA-256 pass", hash_ms)):
        print(f"  {label:24} {statistics.median(values):6.0f} ms ({min(values):.0f}–{max(values):.0f})")
    floor = [c + f for c, f in zip(copy_ms, fsync_ms)]
    print(f"  {'copy + fsync':24} {statistics.median(floor):6.0f} ms ({min(floor):.0f}–{max(floor):.0f}): the floor with no hashing at all")


if __name__ == "__main__":
    main()
