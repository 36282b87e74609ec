"""The API key: where it comes from, and checking it in constant time."""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import stat
from pathlib import Path

from aiohttp import web

from ..disk.files import write_atomically
from ..errors import ConfigError
from ..settings import MIN_API_KEY_LENGTH, Settings

logger = logging.getLogger(__name__)

KEY_FILE_NAME = ".api_key"


def key_file(settings: Settings) -> Path:
    """Where a generated key is kept: beside the catalogs."""
    return settings.catalog_dir / KEY_FILE_NAME


def load_or_create_key(settings: Settings) -> tuple[str, bool]:
    """The key clients must send, and whether it was generated just now.

    API_KEY wins. Otherwise the key kept beside the catalogs is used, or a new one is
    generated and saved there readable by the owner only.
    """
    if settings.api_key:
        return settings.api_key, False
    path = key_file(settings)
    if path.exists():
        return _read_key_file(path), False
    key = secrets.token_urlsafe(32)
    try:
        created = write_atomically(path, (key + "\n").encode("ascii"), mode=0o600, replace=False)
    except OSError as exc:
        raise ConfigError(f"CATALOG_DIR: the API key file cannot be created there ({exc.strerror}).") from None
    if not created:  # another process made one meanwhile: that is the key
        return _read_key_file(path), False
    return key, True


def _read_key_file(path: Path) -> str:
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            os.chmod(path, 0o600)
            logger.warning("the API key file was readable by others; it is now owner-only")
        key = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"CATALOG_DIR: the API key file {KEY_FILE_NAME} cannot be read ({exc}).") from None
    if len(key) < MIN_API_KEY_LENGTH or not key.isprintable():
        raise ConfigError(
            f"CATALOG_DIR: the API key file {KEY_FILE_NAME} holds no usable key; delete it to have a new one generated."
        )
    return key


def presented_key(request: web.Request) -> bytes | None:
    """The key a request carries, from X-API-Key or Authorization: Bearer, as bytes. Never
    from the URL: URLs end up in proxy logs and browser history."""
    value = request.headers.get("X-API-Key")
    if value is None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            value = token.strip()
    if value is None:
        return None
    return value.encode("utf-8", "surrogateescape")


def key_matches(presented: bytes, expected: bytes) -> bool:
    """Constant-time comparison of bytes, so any presented value is safe to compare."""
    return hmac.compare_digest(presented, expected)
