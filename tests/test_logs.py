"""Logs a person can trust: no secret in them, no line a request can forge, one short line for a
client's garbage, rate-limited floods, and JSON lines on request. Unit tests on the filter, and
a real service process fed raw bytes over a socket."""

from __future__ import annotations

import io
import json
import logging
import signal
import socket
from pathlib import Path

import pytest

from service.logs import REDACTED, JsonLines, SafeRecords, counted, escape

from .test_main import free_port, run_service, wait_http

KEY = "the-api-key-0123456789abcdef"


def emit(record_filter: SafeRecords, *args: object, name: str = "test", level: int = logging.INFO, formatter: logging.Formatter | None = None, exc: BaseException | None = None) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter or logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(record_filter)
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        if exc is not None:
            try:
                raise exc
            except BaseException:
                logger.log(level, *args, exc_info=True)  # type: ignore[arg-type]
        else:
            logger.log(level, *args)  # type: ignore[arg-type]
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    return stream.getvalue()


@pytest.mark.parametrize(
    "args",
    [
        ("GET %s", f"/api/x?key={KEY}"),
        ("GET /api/x?KEY=%s&b=1", "other-secret-value"),
        ("header Authorization: Bearer %s", "tok-123456"),
        ("X-API-Key: %s", "abcdef123456"),
        (f"the key {KEY} in the message",),
    ],
)
def test_secrets_are_redacted_from_messages_and_arguments(args: tuple[object, ...]) -> None:
    out = emit(SafeRecords((KEY,)), *args)
    assert KEY not in out and "other-secret-value" not in out and "tok-123456" not in out and "abcdef123456" not in out
    assert REDACTED in out


def test_secrets_are_redacted_from_tracebacks() -> None:
    out = emit(SafeRecords((KEY,)), "failed", level=logging.ERROR, exc=ValueError(f"bad line GET /?key={KEY} HTTP/1.1"))
    assert KEY not in out and "Traceback" in out and REDACTED in out


LONG_KEY = "Zq7" + "x9Kp" * 30  # API_KEY may be any printable ASCII of 16+ characters; this one has 123
ODD_KEY = "odd\\key\"with'quotes-0123456789"  # characters a bytes repr escapes


@pytest.mark.parametrize("key", [LONG_KEY, ODD_KEY])
def test_a_key_cut_short_or_escaped_by_aiohttp_is_still_redacted(key: str) -> None:
    """aiohttp shows an overlong header value as its first 100 bytes, and bytes as their repr."""
    from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

    raw = key.encode() + b"a" * 9000
    bad_char = b"X-API-Key: " + key.encode() + b"\x01"
    for error in (LineTooLong(raw[:100] + b"...", 8190), BadHttpMessage(f"Invalid header value char:\n\n    {bad_char!r}")):
        out = emit(SafeRecords((key,)), "Error handling request", name="aiohttp.server", level=logging.ERROR, exc=error)
        assert key[:16] not in out and repr(key.encode())[2:18] not in out, out
        assert REDACTED in out


@pytest.mark.parametrize("forged", ["/x\nERROR service: FORGED", "/x\r\nERROR FORGED", "/x\x1b[31mred", "/x\u2028ERROR FORGED"])
def test_a_request_cannot_forge_a_log_line(forged: str) -> None:
    out = emit(SafeRecords(), "GET %s 404", forged)
    assert out.count("\n") == 1 and "\x1b" not in out and "\u2028" not in out
    assert escape(forged) in out


def test_a_malformed_request_is_one_short_line_not_a_traceback() -> None:
    from aiohttp.http_exceptions import BadStatusLine

    out = emit(SafeRecords((KEY,)), "Error handling request", name="aiohttp.server", level=logging.ERROR, exc=BadStatusLine(f"GET /?key={KEY}\x7f"))
    assert out.startswith("INFO aiohttp.server: a malformed request was refused: BadStatusLine")
    assert "Traceback" not in out and KEY not in out and out.count("\n") == 1


def test_accept_failures_are_logged_once_every_few_seconds() -> None:
    record_filter = SafeRecords()
    lines = [emit(record_filter, "socket.accept() out of system resource", name="asyncio", level=logging.ERROR) for _ in range(1000)]
    assert sum(1 for line in lines if line) == 1


def test_json_lines_carry_time_level_logger_message_and_traceback() -> None:
    out = emit(SafeRecords((KEY,)), "boom %s", f"key={KEY}", level=logging.ERROR, formatter=JsonLines(), exc=RuntimeError("x\ny"))
    entry = json.loads(out)
    assert entry["level"] == "ERROR" and entry["logger"] == "test" and entry["message"] == f"boom key={REDACTED}"
    assert "RuntimeError" in entry["exc"] and KEY not in out and entry["time"].endswith("Z")


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "models").mkdir()
    return {"CATALOG_DIR": str(tmp_path / "catalogs"), "MODELS_DIR": str(tmp_path / "models"), "API_KEY": KEY}


def send_raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except OSError:
            pass
        return b"".join(chunks)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_real_service_keeps_the_key_out_and_forged_lines_in_escape(folders: dict[str, str], log_format: str) -> None:
    port = free_port()
    proc = run_service({**folders, "PORT": str(port), "LOG_FORMAT": log_format})
    try:
        assert wait_http(f"http://127.0.0.1:{port}/health") == 200
        bad_byte = send_raw(port, f"GET /api/x?key={KEY}\x7f HTTP/1.1\r\nHost: x\r\n\r\n".encode("latin-1"))
        too_long = send_raw(port, f"GET /api/x?key={KEY}&pad={'a' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        forged = send_raw(port, b"GET /x%0A2026-01-01%20ERROR%20service:%20FORGED%1B[31m HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert bad_byte.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400")) and too_long.startswith((b"HTTP/1.0 4", b"HTTP/1.1 4"))
        assert forged.startswith(b"HTTP/1.1 404")
    finally:
        proc.send_signal(signal.SIGTERM)
        _stdout, stderr = proc.communicate(timeout=15)
    assert KEY not in stderr
    assert "Traceback" not in stderr
    assert not [line for line in stderr.splitlines() if "FORGED" in line and not line.lstrip().startswith(("{", "20"))]
    assert "\x1b" not in stderr
    if log_format == "json":
        assert all(json.loads(line) for line in stderr.splitlines() if line.startswith("{"))


def test_a_real_service_keeps_a_long_or_odd_key_out_of_aiohttp_errors(folders: dict[str, str]) -> None:
    """An overlong X-API-Key header (aiohttp shows its first 100 bytes) and a bad byte after a key with a backslash."""
    key = ODD_KEY + LONG_KEY
    port = free_port()
    proc = run_service({**folders, "API_KEY": key, "PORT": str(port)})
    try:
        assert wait_http(f"http://127.0.0.1:{port}/health") == 200
        overlong = send_raw(port, b"GET /api/x HTTP/1.1\r\nHost: x\r\nX-API-Key: " + key.encode() + b"a" * 9000 + b"\r\n\r\n")
        bad_byte = send_raw(port, b"GET /api/x HTTP/1.1\r\nHost: x\r\nX-API-Key: " + key.encode() + b"\x01\r\n\r\n")
        assert overlong.startswith((b"HTTP/1.0 4", b"HTTP/1.1 4")) and bad_byte.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400"))
    finally:
        proc.send_signal(signal.SIGTERM)
        _stdout, stderr = proc.communicate(timeout=15)
    assert stderr.count("malformed request was refused") == 2
    assert key[:16] not in stderr and repr(key.encode())[2:18] not in stderr and LONG_KEY[:16] not in stderr


def test_a_count_says_its_noun_in_the_singular_only_for_one() -> None:
    assert [counted(n, "version") for n in (0, 1, 2, 1000)] == ["0 versions", "1 version", "2 versions", "1000 versions"]
