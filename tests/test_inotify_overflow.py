"""Events lost to a real inotify queue overflow: the map converges in seconds, and the log says so.

How the overflow is made: the kernel queues at most `max_queued_events` events per inotify
instance (16,384 by default) and drops the rest, queueing one IN_Q_OVERFLOW instead. notify
(the Rust crate under watchfiles) reads the queue in its own thread, which neither a stalled
event loop nor a blocked handler stops: events then pile up in watchfiles' memory, not in the
kernel, and nothing is lost. Only a stall of the whole process fills the kernel's queue, so
these tests run `python -m service` as a process, stop it with SIGSTOP, change the folders,
and let it go on with SIGCONT: a real overflow, made the same way every time.

watchfiles (1.3.0, notify 8.0) does not report the overflow: notify turns IN_Q_OVERFLOW into
an event with the `Rescan` flag and no path, and watchfiles keeps only events that have a path
(samuelcolvin/watchfiles#348). The service must notice by itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from .helpers import catalog, entry, write_json
from .test_main import ROOT, free_port, wait_http

KEY = "overflow-test-key-0123456789"
QUEUE_LIMIT_FILE = Path("/proc/sys/fs/inotify/max_queued_events")


def queue_limit() -> int:
    """The kernel's inotify queue length; the test is skipped where it cannot be read or is huge."""
    try:
        limit = int(QUEUE_LIMIT_FILE.read_text())
    except (OSError, ValueError):
        pytest.skip("no inotify here (/proc/sys/fs/inotify/max_queued_events unreadable)")
    if limit > 200_000:
        pytest.skip(f"an inotify queue of {limit} events is too long to overflow in a test")
    return limit


class Service:
    """`python -m service` on temp folders, its log in a file."""

    def __init__(self, tmp_path: Path, **env: str) -> None:
        self.models = tmp_path / "models"
        self.catalogs = tmp_path / "catalogs"
        self.log = tmp_path / "service.log"
        self.port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in {"API_KEY", "PORT", "HOST", "LOG_FORMAT"}},
            "API_KEY": KEY,
            "PORT": str(self.port),
            "CATALOG_DIR": str(self.catalogs),
            "MODELS_DIR": str(self.models),
            "RECONCILE_INTERVAL_S": "3600",  # the periodic safety net is out of reach
            "UPDATE_CHECK_INTERVAL_H": "0",
            "CIVITAI_FALLBACK_URL": "",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "service"], cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=log)
        assert wait_http(f"http://127.0.0.1:{self.port}/ready") == 200

    def statuses(self) -> dict[str, str]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/api/admin/models/civitai-map", headers={"X-API-Key": KEY})
        with urllib.request.urlopen(request, timeout=10) as response:
            return {version: item["status"] for version, item in orjson.loads(response.read())["by_version"].items()}

    def log_lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    running = Service(tmp_path)
    (running.models / "loras").mkdir(parents=True)
    running.catalogs.mkdir()
    yield running
    running.stop()


def wait_for(check: Callable[[], Any], *, timeout: float, what: str) -> Any:
    """Poll `check` until it returns something true, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.05)
    return result


def all_present(service: Service, versions: range) -> Callable[[], bool]:
    def check() -> bool:
        statuses = service.statuses()
        return all(statuses.get(str(version)) == "present" for version in versions)

    return check


def test_a_flood_that_overflows_the_queue_is_rescanned_and_new_folders_are_watched(service: Service) -> None:
    """While the process is stopped, more files are created than the queue holds events, then the
    catalogued files, then a new folder: every event after the first 16,384 is lost, the folder's
    creation among them, so it would never get a watch of its own."""
    fillers = queue_limit() + 2_000  # one IN_CREATE each at least: the queue overflows on these alone
    catalogued = range(1, 2_001)
    write_json(
        service.catalogs / "models.json",
        catalog(*(entry(v, f"c{v}.safetensors", "loras") for v in catalogued), entry(9_001, "late.safetensors", "loras"), entry(9_002, "later.safetensors", "loras")),
    )
    service.start()
    assert service.proc is not None
    service.proc.send_signal(signal.SIGSTOP)
    loras = service.models / "loras"
    for i in range(fillers):
        (loras / f"filler{i}.bin").write_bytes(b"x")
    for version in catalogued:
        (loras / f"c{version}.safetensors").write_bytes(b"x")
    (loras / "pack").mkdir()
    (loras / "pack" / "late.safetensors").write_bytes(b"x")
    service.proc.send_signal(signal.SIGCONT)

    wait_for(all_present(service, range(1, 2_001)), timeout=30, what="the 2,000 files whose events were lost")
    assert service.statuses()["9001"] == "present"
    warned = wait_for(lambda: [line for line in service.log_lines() if " WARNING " in line and "lost" in line], timeout=5, what="the warning")
    assert "rescan" in warned[0]
    (loras / "pack" / "later.safetensors").write_bytes(b"x")  # the new folder is watched, not only scanned once
    wait_for(lambda: service.statuses()["9002"] == "present", timeout=10, what="a file in the folder made during the overflow")


def test_an_overflow_that_leaves_only_a_few_changes_is_rescanned(service: Service) -> None:
    """The lost events need not leave a large batch behind: two files written in turn fill the
    queue with events for just two paths (the kernel merges only an event equal to the last one),
    and the catalogued file that lands next is lost. The pause itself gives the overflow away."""
    limit = queue_limit()
    write_json(service.catalogs / "models.json", catalog(entry(7, "landed.safetensors", "loras")))
    service.start()
    assert service.proc is not None
    loras = service.models / "loras"
    service.proc.send_signal(signal.SIGSTOP)
    paused = time.monotonic()
    with open(loras / "a.bin.part", "wb") as first, open(loras / "b.bin.part", "wb") as second:
        for _ in range(limit):  # two MODIFY events a round, never merged
            first.write(b"x")
            first.flush()
            second.write(b"x")
            second.flush()
    (loras / "landed.safetensors").write_bytes(b"x")
    time.sleep(max(0.0, 6.0 - (time.monotonic() - paused)))  # the stall: six seconds, as a swapping machine might
    service.proc.send_signal(signal.SIGCONT)

    wait_for(lambda: service.statuses()["7"] == "present", timeout=10, what="the file whose events were lost")
    assert any(" WARNING " in line and "lost" in line for line in service.log_lines())
