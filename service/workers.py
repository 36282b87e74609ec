"""Work kept out of the event loop's way.

Too big for a thread: parsing or rewriting a huge catalog holds the GIL for seconds. Such
work runs in a short-lived worker process (spawned, so it shares no locks or threads with
the service), which exits when done and takes its parse memory with it; the event loop stays
free to answer `/health` and the map meanwhile.

Long and CPU-bound, but fine in a thread (hashing, a download's writes): background threads
at a lower CPU priority, so requests go first.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# Catalogs larger than this are parsed and rewritten in a worker process: parsing a big
# catalog is one C call that holds the GIL throughout, which a thread cannot keep off the loop.
PROCESS_BYTES = 16 * 1024 * 1024


def needs_process(paths: Iterable[Path]) -> bool:
    """True when any of these files is large enough that working on it must leave this process."""
    for path in paths:
        try:
            if os.stat(path).st_size > PROCESS_BYTES:  # read at call time: tests lower it
                return True
        except OSError:
            continue
    return False


async def in_worker_process(function: Callable[..., T], *args: object, killed_if_cancelled: bool = False) -> T:
    """Run a picklable function in a fresh worker process and return its result. Cancelled, the
    caller waits for the worker to finish, unless `killed_if_cancelled` (for work that changes
    nothing: its process is terminated and not waited for)."""
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    try:
        return await asyncio.get_running_loop().run_in_executor(pool, function, *args)
    except asyncio.CancelledError:
        if killed_if_cancelled:
            _terminate(pool)
        raise
    finally:
        await asyncio.to_thread(pool.shutdown)  # the worker exits, and its memory with it


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Stop a pool's worker processes where they stand."""
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14
    if terminate is not None:
        terminate()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(OSError, ValueError):
            process.terminate()


# A background thread's nice value. Not SCHED_IDLE: a thread of that class, preempted while it
# holds the GIL on a machine whose cores are all busy (ComfyUI at work), waits seconds for CPU
# time, and the event loop waits for the GIL with it (a stall of seconds, and a stop that hung).
# Nice 10 still yields most of the CPU, and gets a preempted holder running in milliseconds.
NICENESS = 10


def lower_this_threads_priority() -> None:
    """Give the calling thread a lower CPU priority (Linux: per thread), so the event loop, and
    ComfyUI beside us, come first when the cores are busy."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICENESS)


def background_threads(count: int, name: str) -> ThreadPoolExecutor:
    """Worker threads for long CPU-bound work that must not slow requests down."""
    return ThreadPoolExecutor(count, thread_name_prefix=name, initializer=lower_this_threads_priority)


def _malloc_trim() -> Callable[[], bool] | None:
    """glibc's malloc_trim(0), or None where there is no glibc."""
    try:
        function = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_size_t,)
    function.restype = ctypes.c_int
    return lambda: bool(function(0))


_MALLOC_TRIM = _malloc_trim() if sys.platform.startswith("linux") else None

_M_ARENA_MAX = -8  # glibc's mallopt parameter
MALLOC_ARENAS = 1


def limit_malloc_arenas() -> bool:
    """Have every thread allocate from one glibc arena (call before any thread starts).

    By default each thread that allocates gets an arena of its own, up to eight per core. A
    catalog read in a worker thread then leaves its freed memory in that thread's arena,
    where the event loop cannot reuse it; with one arena the peak is lower and nothing is
    slower (the GIL serializes allocations anyway; bench/README.md has the figures).
    MALLOC_ARENA_MAX in the environment still wins. True if it was set here."""
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, MALLOC_ARENAS))


def set_long_lived_aside(collect: bool = True) -> None:
    """Take every object alive now out of the cyclic garbage collector's walks (`gc.freeze`).

    A large library is hundreds of thousands of long-lived objects (the cut catalogs, the map's
    entries, the index); each full collection would walk them all, holding the GIL for tens of
    milliseconds while requests wait. Done once such a structure is built, it leaves the
    collector only what was made since. The garbage waiting then is collected first (a walk of
    what was not set aside before: all of it once, at the start), unless `collect` is False:
    then whatever cyclic garbage there is stays, set aside with the rest. Frozen objects are
    still freed when their last reference goes (these structures hold no cycles); only a cycle
    formed among them later would never be collected."""
    if collect:
        gc.collect()
    gc.freeze()


class Pause:
    """One hold on the collector (`collector_paused`); `set_aside`: what was built is long-lived;
    `collect`: collect the garbage first when it is set aside (False: there is none worth a walk)."""

    __slots__ = ("set_aside", "collect")

    def __init__(self, set_aside: bool, collect: bool) -> None:
        self.set_aside = set_aside
        self.collect = collect


_pause_lock = threading.Lock()
_pausers = 0
_was_enabled = False
_aside_due = False
_walk_due = False  # a pauser that set its structure aside wants the garbage collected first


@contextlib.contextmanager
def collector_paused(*, set_aside: bool = False, collect: bool = True) -> Iterator[Pause]:
    """Hold the cyclic garbage collector off while a large structure is built (a catalog's
    whole reading, the map laid out anew, the first build of the index).

    Each new object counts toward the next collection, and full collections come as the
    structure grows: building a million entries walked them all again and again. Nothing they
    hold is cyclic garbage, so the collector waits until the last overlapping pause ends (the
    threads that build share it). If any of them said the result is long-lived (`set_aside`,
    or `Pause.set_aside` set before it ends), it is then set aside (`set_long_lived_aside`) in
    one walk, before the collector would have walked it on its own; with no walk when none of
    them wants the garbage collected first (`collect`, or `Pause.collect`). A collector paused by someone
    else stays paused."""
    global _pausers, _was_enabled, _aside_due, _walk_due
    pause = Pause(set_aside, collect)
    with _pause_lock:
        if _pausers == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pausers += 1
    try:
        yield pause
    finally:
        with _pause_lock:
            _pausers -= 1
            _aside_due |= pause.set_aside
            _walk_due |= pause.set_aside and pause.collect
            if _pausers == 0:
                if _aside_due:
                    set_long_lived_aside(collect=_walk_due)
                    _aside_due = _walk_due = False
                if _was_enabled:
                    gc.enable()


def release_free_memory() -> bool:
    """Hand memory the allocator holds but no object uses back to the system (blocking: call it
    in a thread). Reading a big catalog leaves much such memory behind. True if any was."""
    return _MALLOC_TRIM() if _MALLOC_TRIM is not None else False
