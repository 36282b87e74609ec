"""Where the memory of a started library goes: each of its large containers with what it holds
(sys.getsizeof over every object reached from it, an object shared with a container named
earlier counted there only), largest first. Starts the library in this process on existing
folders (a dataset of bench/run.py: `<root>/catalogs`, `<root>/models`).

    .venv/bin/python bench/memory_by_structure.py ROOT
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.disk.scan import FolderSource
from service.library.library import Library

LARGE = 20_000  # a container with more items than this is measured whole
LEAVES = (str, bytes, int, float, bool, type(None))


def attributes(value: object) -> dict[str, Any]:
    found = dict(vars(value)) if hasattr(value, "__dict__") else {}
    for kind in type(value).__mro__:
        for name in getattr(kind, "__slots__", ()):
            if isinstance(name, str) and hasattr(value, name):
                found[name] = getattr(value, name)
    return found


def deep_size(root: object, seen: set[int]) -> int:
    total, stack = 0, [root]
    while stack:
        value = stack.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        total += sys.getsizeof(value)
        if isinstance(value, LEAVES):
            continue
        if isinstance(value, dict):
            stack += value.keys()
            stack += value.values()
        elif isinstance(value, (list, tuple, set, frozenset)):
            stack += value
        elif type(value).__module__.startswith("service"):
            stack += attributes(value).values()
    return total


def large_containers(value: object, path: str, seen: set[int], found: list[tuple[str, object]], depth: int = 0) -> None:
    if depth > 6 or id(value) in seen or isinstance(value, LEAVES):
        return
    if isinstance(value, (dict, list, tuple, set)) and len(value) > LARGE:
        found.append((path, value))
        return
    seen.add(id(value))
    if isinstance(value, dict) and len(value) < 50:
        children = {f"[{key!r}]": item for key, item in value.items()}
    elif isinstance(value, (list, tuple)) and len(value) < 50:
        children = {f"[{at}]": item for at, item in enumerate(value)}
    elif type(value).__module__.startswith("service"):
        children = {f".{name}": item for name, item in attributes(value).items()}
    else:
        return
    for name, child in children.items():
        large_containers(child, path + name, seen, found, depth + 1)


async def started(root: Path) -> Library:
    library = Library(root / "catalogs", (FolderSource(str(root / "models")),))
    await library.start()
    return library


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    library = asyncio.run(started(parser.parse_args().root))
    with open("/proc/self/status") as status:
        print(f"RSS {int(status.read().split('VmRSS:')[1].split()[0]) // 1024} MB")
    found: list[tuple[str, object]] = []
    large_containers(library, "library", set(), found)
    seen: set[int] = set()
    sizes = sorted(((deep_size(value, seen), path, len(value)) for path, value in found), reverse=True)  # type: ignore[arg-type]
    for size, path, items in sizes:
        print(f"{size / 1e6:8.1f} MB  {items:>9,} items  {path}")
    print(f"{sum(size for size, _, _ in sizes) / 1e6:8.1f} MB in all")


if __name__ == "__main__":
    main()
