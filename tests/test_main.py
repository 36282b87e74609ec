"""`python -m service` as a user starts it: banner, key file, one-line config errors, SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from service.__main__ import main

ROOT = Path(__file__).resolve().parent.parent


def run_service(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in {"API_KEY", "PORT", "HOST"}}
    return subprocess.Popen(
        [sys.executable, "-m", "service", *args], cwd=ROOT, env={**full_env, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def run_main_here(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: dict[str, str]) -> tuple[int, str]:
    """`main()` in this process, as `python -m service` runs it, for starts that stop before
    serving (a process costs a second of CPU): its exit code and what it wrote to stderr."""
    for name in ("API_KEY", "PORT", "HOST"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main([])
    return code, capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return response.status
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "models").mkdir()
    return {"CATALOG_DIR": str(tmp_path / "catalogs"), "MODELS_DIR": str(tmp_path / "models")}


def test_first_start_generates_an_owner_only_key_prints_it_and_stops_cleanly_on_sigterm(folders: dict[str, str]) -> None:
    port = free_port()
    proc = run_service({**folders, "PORT": str(port)})
    try:
        assert wait_http(f"http://127.0.0.1:{port}/health") == 200
        assert wait_http(f"http://127.0.0.1:{port}/ready") == 200  # the map answers 503 until the index is built
        key_file = Path(folders["CATALOG_DIR"]) / ".api_key"
        key = key_file.read_text().strip()
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/admin/models/civitai-map", headers={"X-API-Key": key})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert f"http://127.0.0.1:{port}" in stdout and key in stdout
    assert "watcher stopped" in stderr
    assert "Traceback" not in stderr
    assert stderr.count(key) == 0  # printed once for the user, never logged


def test_the_key_survives_restarts(folders: dict[str, str]) -> None:
    first = subprocess.run([sys.executable, "-m", "service", "--print-key"], cwd=ROOT, env={**os.environ, **folders}, capture_output=True, text=True, check=True)
    second = subprocess.run([sys.executable, "-m", "service", "--print-key"], cwd=ROOT, env={**os.environ, **folders}, capture_output=True, text=True, check=True)
    assert first.stdout == second.stdout and len(first.stdout.strip()) >= 32


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"PORT": "eighty"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"API_KEY": "short"}, "API_KEY"),
        ({"WATCH_DEBOUNCE_MS": "-1"}, "WATCH_DEBOUNCE_MS"),
        ({"WATCH_FORCE_POLLING": "sometimes"}, "WATCH_FORCE_POLLING"),
        ({"MODELS_DIR": "/nonexistent/models"}, "MODELS_DIR"),
        ({"CIVITAI_BASE_URL": "ftp://x"}, "CIVITAI_BASE_URL"),
        ({"CORS_ORIGINS": "https://ok.example/path"}, "CORS_ORIGINS"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"MAX_BODY_BYTES": "-5"}, "MAX_BODY_BYTES"),
        ({"SHUTDOWN_TIMEOUT_S": "-1"}, "SHUTDOWN_TIMEOUT_S"),
        ({"WATCH_DEBOUNCE_MS": "1e23"}, "WATCH_DEBOUNCE_MS"),
        ({"CORS_ORIGINS": "http://[::1"}, "CORS_ORIGINS"),
        ({"HOST": "exa..mple", "API_KEY": "k" * 20}, "HOST"),
        ({"HOST": "fe80::1", "API_KEY": "k" * 20}, "HOST"),
        ({"WATCH_DEBOUNCE_MS": "9" * 400}, "WATCH_DEBOUNCE_MS"),
        ({"DOWNLOAD_CONCURRENCY": "9" * 400}, "DOWNLOAD_CONCURRENCY"),
        ({"CATALOG_DIR": "/tmp/" + "c" * 300}, "CATALOG_DIR"),
        ({"EXTRA_MODEL_PATHS": "/dev/zero"}, "EXTRA_MODEL_PATHS"),
    ],
)
def test_bad_configuration_stops_with_one_line_naming_the_variable(
    folders: dict[str, str], env: dict[str, str], variable: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, stderr = run_main_here(monkeypatch, capsys, {**folders, **env})
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and variable in lines[0], stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("name", ["models.json", "notes.txt"])
def test_catalog_dir_pointing_at_a_file_says_so(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / name).write_text("{}")
    (tmp_path / "models").mkdir()
    code, stderr = run_main_here(monkeypatch, capsys, {"CATALOG_DIR": str(tmp_path / name), "MODELS_DIR": str(tmp_path / "models"), "API_KEY": "k" * 20})
    assert code == 2
    assert stderr.startswith(f"comfy-catalog: CATALOG_DIR is a file, not a folder: {tmp_path / name}") and len(stderr.splitlines()) == 1
    assert (f"point at its folder, {tmp_path}" in stderr) == (name == "models.json")


def test_a_bad_setting_stops_the_process_with_exit_code_2(folders: dict[str, str]) -> None:
    proc = run_service({**folders, "PORT": "eighty"})
    _stdout, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 2
    assert len(stderr.strip().splitlines()) == 1 and "PORT" in stderr and "Traceback" not in stderr


def test_an_unresolvable_host_is_one_clear_line(folders: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, stderr = run_main_here(monkeypatch, capsys, {**folders, "HOST": "no-such-host.invalid", "API_KEY": "k" * 20})
    assert code == 2
    assert "HOST no-such-host.invalid does not resolve" in stderr and "Traceback" not in stderr


def test_a_port_in_use_is_one_clear_line(folders: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_service({**folders, "PORT": str(port), "API_KEY": "k" * 20})
        _stdout, stderr = proc.communicate(timeout=20)
        key = run_service({**folders, "PORT": str(port), "API_KEY": "k" * 20}, "--print-key")
        key_out, _ = key.communicate(timeout=20)
    assert proc.returncode == 2
    assert stderr.strip() == f"comfy-catalog: PORT {port} is already in use on 127.0.0.1."
    assert key.returncode == 0 and key_out.strip() == "k" * 20  # works beside the running service


def test_help_lists_every_setting_with_its_default_and_version_works() -> None:
    import re

    source = (ROOT / "service" / "settings.py").read_text()
    read = set(re.findall(r'env(?:\.get\(|, )"([A-Z_]+)"', source))
    assert len(read) > 20
    shown = subprocess.run([sys.executable, "-m", "service", "--help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    missing = [name for name in sorted(read) if not re.search(rf"^  {name} .*\(default: .+\)$", shown, re.MULTILINE)]
    assert missing == []
    version = subprocess.run([sys.executable, "-m", "service", "--version"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    from service import __version__

    assert version.strip() == f"comfy-catalog {__version__}"  # the one program name, as in every message
