"""SIGKILL at random moments: the catalog always parses and holds the old or the new content."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from service.catalog.codec import parse_catalog

from .helpers import catalog, entry, read_json, write_json

ROOT = Path(__file__).resolve().parent.parent


def spawn(*args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.crash_writer", *args], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def kill_after(proc: subprocess.Popen[str], seconds: float) -> None:
    time.sleep(seconds)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.stdout is not None
    proc.stdout.close()


def test_saves_killed_at_random_moments_leave_a_whole_catalog(tmp_path: Path) -> None:
    write_json(tmp_path / "models.json", catalog(version=0))
    rng = random.Random(20261124)
    last_version = 0
    for _ in range(15):
        kill_after(spawn("save", str(tmp_path)), rng.uniform(0.0, 0.25))
        doc = parse_catalog((tmp_path / "models.json").read_bytes())  # never torn
        files = [e["file"] for c in doc["categories"] for e in c["models"]]
        assert len(files) == doc["version"], "every save adds one entry and bumps the version once"
        assert len(set(files)) == len(files)
        assert doc["version"] >= last_version
        last_version = doc["version"]
    assert last_version > 0, "the writer never got a save in; the test proved nothing"


def test_a_promote_killed_midway_never_loses_the_entry(tmp_path: Path) -> None:
    count = 400
    write_json(tmp_path / "models.json", catalog(*(entry(v, f"l{v}.safetensors", "loras") for v in range(1, count + 1)), category="loras"))
    write_json(tmp_path / "loras.json", catalog())
    rng = random.Random(7)
    for _ in range(6):
        kill_after(spawn("promote", str(tmp_path), "1", str(count)), rng.uniform(0.05, 0.4))
        in_models = {e["civitai_version_id"] for c in read_json(tmp_path / "models.json")["categories"] for e in c["models"]}
        in_loras = {e["civitai_version_id"] for c in read_json(tmp_path / "loras.json")["categories"] for e in c["models"]}
        assert in_models | in_loras == set(range(1, count + 1)), "an entry was lost"
        assert len(in_models & in_loras) <= 1, "at most the one promote in flight is in both files"
    proc = spawn("promote", str(tmp_path), "1", str(count))  # a rerun finishes every move
    assert proc.wait(timeout=60) == 0
    assert proc.stdout is not None
    proc.stdout.close()
    assert [e for c in read_json(tmp_path / "models.json")["categories"] for e in c["models"]] == []
    assert len([e for c in read_json(tmp_path / "loras.json")["categories"] for e in c["models"]]) == count
