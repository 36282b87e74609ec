"""The running service as a process: idle and trickling sockets cannot lock it out, a full
file table is logged once, not thousands of times, and SIGTERM stops it in time even while
a request waits on a CivitAI that never answers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from service.http.serving import close_stalled_connections, raise_open_file_limit

from .test_main import free_port, run_service, wait_http

KEY = "the-api-key-0123456789abcdef"


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "models").mkdir()
    return {"CATALOG_DIR": str(tmp_path / "catalogs"), "MODELS_DIR": str(tmp_path / "models"), "API_KEY": KEY}


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


async def test_the_guard_closes_connections_that_never_finish_a_request_head() -> None:
    """At the seam aiohttp gives no hook for: a real server, a silent socket, a trickling one, and a busy one."""
    release = asyncio.Event()

    async def slow(_request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="done")

    app = web.Application()
    app.router.add_get("/slow", slow)
    server = TestServer(app)
    await server.start_server()
    assert server.runner is not None and server.runner.server is not None
    guard = asyncio.create_task(close_stalled_connections(server.runner.server, 0.5))
    loop = asyncio.get_running_loop()
    try:
        silent = socket.create_connection((server.host, server.port))
        trickle = socket.create_connection((server.host, server.port))
        busy = socket.create_connection((server.host, server.port))
        busy.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        trickle.sendall(b"GET / HTTP/1.1\r\n")
        for _ in range(4):  # a header line every 0.3 s: never a whole head
            await asyncio.sleep(0.3)
            with contextlib.suppress(OSError):
                trickle.sendall(b"X-A: b\r\n")
        assert await loop.run_in_executor(None, closed_by_peer, silent, 3)
        assert await loop.run_in_executor(None, closed_by_peer, trickle, 3)
        assert not await loop.run_in_executor(None, closed_by_peer, busy, 0.2)  # answering takes long: left alone
        release.set()
        busy.settimeout(3)
        assert (await loop.run_in_executor(None, busy.recv, 1024)).startswith(b"HTTP/1.1 200")
    finally:
        guard.cancel()
        for sock in (silent, trickle, busy):
            sock.close()
        await server.close()


async def test_the_guard_closes_connections_whose_body_never_arrives() -> None:
    """A whole head and then a body that stops: the handler waits on the read, so the request is
    not being answered; a request whose body arrived and whose answer takes long is left alone."""
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await request.read()
        await release.wait()
        return web.Response(text="done")

    app = web.Application()
    app.router.add_post("/slow", slow)
    server = TestServer(app)
    await server.start_server()
    assert server.runner is not None and server.runner.server is not None
    guard = asyncio.create_task(close_stalled_connections(server.runner.server, 0.5))
    loop = asyncio.get_running_loop()
    head = b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"
    try:
        stalled = socket.create_connection((server.host, server.port))
        busy = socket.create_connection((server.host, server.port))
        stalled.sendall(head + b"12345")
        busy.sendall(head + b"1234567890")
        assert await loop.run_in_executor(None, closed_by_peer, stalled, 3)
        assert not await loop.run_in_executor(None, closed_by_peer, busy, 0.2)
        release.set()
        busy.settimeout(3)
        assert (await loop.run_in_executor(None, busy.recv, 1024)).startswith(b"HTTP/1.1 200")
    finally:
        guard.cancel()
        for sock in (stalled, busy):
            sock.close()
        await server.close()


def test_the_open_file_limit_is_raised_to_the_hard_limit() -> None:
    code = "import resource, sys; sys.path.insert(0, '.'); from service.http.serving import raise_open_file_limit; print(raise_open_file_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[1])"
    out = subprocess.run(
        ["sh", "-c", f"ulimit -S -n 256; exec {sys.executable} -c \"{code}\""], capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent
    ).stdout.split()
    assert int(out[0]) == int(out[1]) > 256
    assert raise_open_file_limit() >= 256


@pytest.mark.parametrize(
    "sent",
    [b"", b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"],
    ids=["nothing", "a head and part of a body"],
)
def test_a_flood_of_idle_sockets_does_not_lock_the_service_out(folders: dict[str, str], sent: bytes) -> None:
    """More idle sockets than file descriptors: /health answers once the guard closes them, and the log stays short."""
    port = free_port()
    env = {**folders, "PORT": str(port), "HEADER_TIMEOUT_S": "2"}
    proc = subprocess.Popen(
        ["sh", "-c", f"ulimit -S -n 128; ulimit -H -n 128; exec {sys.executable} -m service"],
        cwd=Path(__file__).parent.parent,
        env={**{k: v for k, v in os.environ.items() if k not in {"API_KEY", "PORT", "HOST"}}, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sockets: list[socket.socket] = []
    try:
        assert wait_http(f"http://127.0.0.1:{port}/health") == 200
        for _ in range(300):  # bounded: more than the 128 descriptors the service has
            try:
                sockets.append(socket.create_connection(("127.0.0.1", port), timeout=2))
                sockets[-1].sendall(sent)
            except OSError:
                break
        assert wait_http(f"http://127.0.0.1:{port}/health", timeout=20) == 200
    finally:
        for sock in sockets:
            sock.close()
        proc.send_signal(signal.SIGTERM)
        _stdout, stderr = proc.communicate(timeout=20)
    assert stderr.count("Traceback") == 0
    requests = [line for line in stderr.splitlines() if "aiohttp.access: POST /x 400" in line]
    assert len(requests) <= len(sockets)  # one access line per request that arrived, nothing more
    assert len(stderr.splitlines()) - len(requests) < 60  # one accept-failure line per few seconds, not thousands


def test_sigterm_stops_in_time_while_an_add_waits_on_a_silent_civitai(folders: dict[str, str]) -> None:
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(8)  # accepts, never answers
    port = free_port()
    env = {**folders, "PORT": str(port), "SHUTDOWN_TIMEOUT_S": "3", "CIVITAI_BASE_URL": f"http://127.0.0.1:{hung.getsockname()[1]}", "CIVITAI_FALLBACK_URL": ""}
    proc = run_service(env)
    answer: dict[str, Any] = {}

    def add() -> None:
        import urllib.error
        import urllib.request

        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/admin/civitai/add/1", method="POST", headers={"X-API-Key": KEY})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                answer["status"] = response.status
        except urllib.error.HTTPError as exc:
            answer["status"] = exc.code
        except OSError as exc:
            answer["error"] = type(exc).__name__

    try:
        assert wait_http(f"http://127.0.0.1:{port}/ready") == 200
        caller = threading.Thread(target=add)
        caller.start()
        time.sleep(0.5)  # the add is now waiting on CivitAI
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        took = time.monotonic() - started
        caller.join(10)
    finally:
        hung.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert took < 3 + 1.5, f"stopping took {took:.1f} s with SHUTDOWN_TIMEOUT_S=3"
    assert answer == {"status": 503}  # told the service is stopping, not left hanging


def test_a_client_that_leaves_mid_body_is_one_quiet_line_not_a_500(folders: dict[str, str]) -> None:
    """aiohttp lets the handler's body read fail with ConnectionResetError; that is the client's doing."""
    port = free_port()
    proc = run_service({**folders, "PORT": str(port)})
    paths = ("/api/admin/civitai/add/5", "/not-a-route")
    try:
        assert wait_http(f"http://127.0.0.1:{port}/health") == 200
        for path in paths:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{".encode())
        assert wait_http(f"http://127.0.0.1:{port}/health") == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _stdout, stderr = proc.communicate(timeout=20)
    answered = [line for line in stderr.splitlines() if "aiohttp.access: POST" in line]
    assert len(answered) == len(paths), stderr
    assert all(" 400 " in line for line in answered), answered
    assert "Traceback" not in stderr and " ERROR " not in stderr
