"""Worker processes and threads, and the heap the service keeps between readings (`service/workers.py`)."""

from __future__ import annotations

import gc
import weakref
from typing import Any

from service import workers


def test_garbage_waiting_when_the_heap_is_set_aside_is_collected_first() -> None:
    class Node:
        other: Any = None

    a, b = Node(), Node()
    a.other, b.other = b, a
    alive = weakref.ref(a)
    del a, b
    try:
        workers.set_long_lived_aside()
        assert alive() is None  # a cycle frozen as it waited would never be freed
    finally:
        gc.unfreeze()
