"""Logging that is safe to read: no secrets, no forged lines, one short line for a client's garbage.

Every record passes one filter on the handlers, whoever logged it (this service, aiohttp,
asyncio): the API key, any `key=` query value and any Bearer or X-API-Key header value
are replaced by `[redacted]`, and control characters (a newline or an ANSI escape in a
requested path) are escaped, so a request cannot print a line that looks like another.
aiohttp's traceback for a malformed request (a client's fault, answered with a 400) becomes
one short line. `LOG_FORMAT=json` writes one JSON object per line for log shippers.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import traceback

import orjson

REDACTED = "[redacted]"
_SECRETS = re.compile(r"(?i)(\bkey=|\bbearer\s+|x-api-key\s*[:=]\s*)[^\s&\"'<>,;]+")
# C0 and C1 controls, DEL, the Unicode line and paragraph separators, and lone surrogates (a
# file name that is not UTF-8, which no log stream can encode). In tracebacks the line breaks
# between frames are kept; everywhere else a newline is escaped too.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_UNSAFE_BUT_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
CLIENT_FAULT_LOGGERS = frozenset({"aiohttp.server"})


_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(char: str) -> str:
    # No codec lookup here: it may import a module, and logging must work with no file descriptor left.
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def counted(count: int, noun: str) -> str:
    """A count and its noun as a log line says them: "1 version", "3 versions"."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def escape(text: str, *, keep_newlines: bool = False) -> str:
    """Control characters as visible escapes (\\n, \\x1b, \\u2028)."""
    pattern = _UNSAFE_BUT_NEWLINE if keep_newlines else _UNSAFE
    return pattern.sub(lambda match: _visible(match.group()), text)


class SafeRecords(logging.Filter):
    """Redacts secrets and escapes control characters in every record; shortens client-fault tracebacks."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.secrets = tuple(secret for secret in secrets if secret)
        # A secret as aiohttp may show it: as is, or inside the repr of bytes or a string.
        self._forms = tuple(dict.fromkeys(form for secret in self.secrets for form in _shown_forms(secret)))
        self._quiet_until: dict[str, float] = {}

    def redact(self, text: str) -> str:
        """The text without any secret this filter knows of, whole or cut short."""
        for form in self._forms:
            text = _without(text, form)
        return _SECRETS.sub(lambda match: match.group(1) + REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        if self._repeated(record):
            return False
        if record.exc_info and record.name in CLIENT_FAULT_LOGGERS and _is_client_fault(record.exc_info[1]):
            record.msg, record.args = f"a malformed request was refused: {type(record.exc_info[1]).__name__}: {record.exc_info[1]}", None
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: show it as it is rather than lose the record
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = escape(self.redact(message)), None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = escape(self.redact(record.exc_text), keep_newlines=True)
        if record.stack_info:
            record.stack_info = escape(self.redact(record.stack_info), keep_newlines=True)
        return True


    def _repeated(self, record: logging.LogRecord) -> bool:
        """Accept failures (out of file descriptors) repeat thousands of times a second: one short
        line per few seconds, without the traceback."""
        if record.name != "asyncio":
            return False
        if "_start_serving" in str(record.msg):
            # asyncio retries accepting after EMFILE on a timer, one per failure; timers that fire
            # after the listening socket closed (at shutdown) fail on fd -1. Nothing to report.
            return True
        if "accept" not in str(record.msg):
            return False
        now = time.monotonic()
        if now < self._quiet_until.get("accept", 0.0):
            return True
        self._quiet_until["accept"] = now + REPEAT_QUIET_S
        error = record.exc_info[1] if record.exc_info else None
        reason = getattr(error, "strerror", None) or type(error).__name__
        record.msg, record.args = f"new connections cannot be accepted ({reason}); said again in {REPEAT_QUIET_S:.0f} s at most", None
        record.exc_info, record.exc_text, record.levelno, record.levelname = None, None, logging.WARNING, "WARNING"
        return False


REPEAT_QUIET_S = 5.0
# aiohttp shows an overlong line as its first 100 bytes: a secret cut short is still redacted
# from this many characters on (the shortest API_KEY allowed), or whole when shorter.
SECRET_PREFIX_CHARS = 16


def _shown_forms(secret: str) -> tuple[str, ...]:
    """The secret, and the secret as the repr of bytes or str holding it shows it (either quote)."""
    backslashed = secret.replace("\\", "\\\\")
    return (secret, backslashed, backslashed.replace("'", "\\'"), backslashed.replace('"', '\\"'))


def _without(text: str, secret: str) -> str:
    """The text with each run that starts like the secret (its first SECRET_PREFIX_CHARS
    characters at least) and goes on as it does replaced by REDACTED."""
    head = secret[:SECRET_PREFIX_CHARS]
    start = text.find(head)
    if start < 0:
        return text
    kept: list[str] = []
    done = 0
    while start >= 0:
        end = start + len(head)
        while end < len(text) and end - start < len(secret) and text[end] == secret[end - start]:
            end += 1
        kept += [text[done:start], REDACTED]
        done = end
        start = text.find(head, done)
    kept.append(text[done:])
    return "".join(kept)


def _is_client_fault(error: BaseException | None) -> bool:
    from aiohttp.http_exceptions import HttpProcessingError

    return isinstance(error, HttpProcessingError)


class JsonLines(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text or record.exc_info:
            entry["exc"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return orjson.dumps(entry).decode()


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str, log_format: str, secrets: tuple[str, ...]) -> None:
    """Send every record to stderr through the safety filter, as text or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(SafeRecords(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(level)
    # watchfiles says "N changes detected" at INFO for every batch: that is DEBUG detail here.
    logging.getLogger("watchfiles.main").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
