"""Worker processes and threads, and the heap the service keeps between readings (`service/workers.py`)."""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import time
import weakref
from typing import Any

import pytest

from service import workers


class Node:
    other: Any = None


def garbage_cycle() -> weakref.ref[Node]:
    """Two objects that only refer to each other: garbage only the cyclic collector frees."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_garbage_waiting_when_the_heap_is_set_aside_is_collected_first() -> None:
    alive = garbage_cycle()
    try:
        workers.set_long_lived_aside()
        assert alive() is None  # a cycle frozen as it waited would never be freed
    finally:
        gc.unfreeze()


def test_the_collector_waits_until_the_last_overlapping_pause_ends() -> None:
    assert gc.isenabled()
    outer = workers.collector_paused()
    outer.__enter__()
    with workers.collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()  # the outer build is still under way
    outer.__exit__(None, None, None)
    assert gc.isenabled()


def test_a_collector_paused_by_someone_else_stays_paused() -> None:
    gc.disable()
    try:
        with workers.collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_build_said_to_be_long_lived_is_set_aside_once_its_garbage_is_collected() -> None:
    before = gc.get_freeze_count()
    try:
        with workers.collector_paused() as pause:
            kept = Node()  # alive: set aside, not collected
            alive = garbage_cycle()
            pause.set_aside = True
        assert alive() is None  # the cycle made during the build was collected, not frozen
        assert gc.get_freeze_count() > before and gc.is_tracked(kept)
    finally:
        gc.unfreeze()


def test_a_build_whose_garbage_is_not_worth_a_walk_is_set_aside_without_one() -> None:
    before = gc.get_freeze_count()
    try:
        with workers.collector_paused(set_aside=True) as pause:
            alive = garbage_cycle()
            pause.collect = False
        assert gc.get_freeze_count() > before
        gc.collect()
        assert alive() is not None  # set aside with the build, not walked
    finally:
        gc.unfreeze()
        gc.collect()
    assert alive() is None


def test_one_pause_that_wants_the_garbage_collected_gets_its_walk() -> None:
    try:
        outer = workers.collector_paused(set_aside=True)
        outer.__enter__().collect = False
        with workers.collector_paused(set_aside=True):  # wants its walk
            alive = garbage_cycle()
        outer.__exit__(None, None, None)
        assert alive() is None
    finally:
        gc.unfreeze()


def test_a_build_not_said_to_be_long_lived_sets_nothing_aside() -> None:
    before = gc.get_freeze_count()
    with workers.collector_paused():
        pass
    assert gc.get_freeze_count() == before


async def test_a_worker_cancelled_that_changes_nothing_is_stopped_not_waited_for() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(workers.in_worker_process(time.sleep, 60, killed_if_cancelled=True), 0.5)
    assert time.monotonic() - started < 30  # the worker's minute of sleep was cut short
    assert multiprocessing.active_children() == []
