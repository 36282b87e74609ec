"""Settings: one frozen dataclass, built and validated from the environment at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .errors import ConfigError

DEFAULT_PORT = 8189
MIN_API_KEY_LENGTH = 16
_CHECKOUT = Path(__file__).resolve().parent.parent
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


# Every environment variable `Settings.from_env` reads: (name, default as people read it, meaning).
# `python -m service --help` prints this table; a test keeps it complete.
SETTINGS_HELP: tuple[tuple[str, str, str], ...] = (
    ("CATALOG_DIR", "./data/catalogs", "folder with models.json and loras.json (created if missing)"),
    ("MODELS_DIR", "./data/models", "ComfyUI's models folder"),
    ("HOST", "127.0.0.1", "address to listen on"),
    ("PORT", str(DEFAULT_PORT), "port to listen on"),
    ("API_KEY", "generated, kept in CATALOG_DIR/.api_key", "the key clients send (16+ characters)"),
    ("CIVITAI_API_KEY", "none", "sent to CivitAI as a Bearer token; never logged"),
    ("CIVITAI_BASE_URL", "https://civitai.com", "CivitAI's origin"),
    ("CIVITAI_FALLBACK_URL", "https://civitai.red", "second origin asked after a 404; empty for none"),
    ("CIVITAI_TIMEOUT_S", "30", "total time for one CivitAI request"),
    ("HUGGINGFACE_BASE_URL", "https://huggingface.co", "Hugging Face's origin (or a mirror), for files a workflow names there"),
    ("WATCH_DEBOUNCE_MS", "200", "longest a burst of file changes is grouped"),
    ("WATCH_FORCE_POLLING", "auto", "true, false or auto (polls on network and FUSE mounts)"),
    ("WATCH_POLL_INTERVAL_MS", "1000", "polling interval when polling"),
    ("RECONCILE_INTERVAL_S", "300", "interval between full rescans"),
    ("EXTRA_MODEL_PATHS", "none", "ComfyUI extra_model_paths.yaml files, separated by ':' (';' on Windows)"),
    ("CORS_ORIGINS", "none", "extra allowed origins, comma-separated"),
    ("CORS_EXTENSION_IDS", "any", "allow only these Chrome extension ids, comma-separated"),
    ("LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR"),
    ("LOG_FORMAT", "text", "text, or json for one JSON object a line"),
    ("SHUTDOWN_TIMEOUT_S", "5", "time allowed for a graceful stop"),
    ("HEADER_TIMEOUT_S", "15", "close connections that send no whole request head, or body after it, in this long"),
    ("MAX_BODY_BYTES", "65536", "largest request body accepted"),
    ("DOWNLOADS", "on", "on or off: downloads into MODELS_DIR"),
    ("DOWNLOAD_CONCURRENCY", "2", "downloads running at once"),
    ("STALE_PART_S", "60", "seconds a partial download must stay unchanged, with no job of ours on it, to read as stopped"),
    ("UPDATE_CHECK_INTERVAL_H", "24", "hours between checks for newer versions (0: on demand only)"),
    ("HASHING", "on", "on or off: hash model files in the background and identify them on CivitAI"),
    ("HASH_SETTLE_S", "10", "seconds a new file must stay unchanged before it is hashed"),
    ("SHOW_UNCATALOGUED", "on", "on or off: identified files in no catalog appear in the map with catalog null"),
    ("PREVIEWS", "on", "on or off: a download or an import saves the version's first image beside the file as <name>.preview.<ext>"),
    ("PREVIEWS_NSFW", "off", "on or off: that image may be one CivitAI rates above PG-13 (off: the first rated PG or PG-13, else none)"),
)


def default_data_dir() -> Path:
    """The embedded data folder: inside the checkout when run from one, else the working folder."""
    base = _CHECKOUT if (_CHECKOUT / "pyproject.toml").is_file() else Path.cwd()
    return base / "data"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the service is told from outside. Build with `from_env` or directly in tests."""

    catalog_dir: Path
    models_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    api_key: str | None = field(default=None, repr=False)
    civitai_api_key: str | None = field(default=None, repr=False)
    civitai_base_url: str = "https://civitai.com"
    civitai_fallback_url: str = "https://civitai.red"  # asked after a 404; "" for none
    civitai_timeout_s: float = 30.0
    huggingface_base_url: str = "https://huggingface.co"
    watch_debounce_ms: int = 200
    watch_force_polling: bool | None = None
    watch_poll_interval_ms: int = 1000
    reconcile_interval_s: float = 300.0
    extra_model_paths: tuple[Path, ...] = ()  # ComfyUI extra_model_paths.yaml files
    cors_origins: tuple[str, ...] = ()
    cors_extension_ids: tuple[str, ...] = ()  # empty: any Chrome extension
    log_level: str = "INFO"
    log_format: str = "text"
    shutdown_timeout_s: float = 5.0
    header_timeout_s: float = 15.0
    max_body_bytes: int = 64 * 1024
    downloads: bool = True
    download_concurrency: int = 2
    stale_part_s: float = 60.0
    update_check_interval_h: float = 24.0
    hashing: bool = True
    hash_settle_s: float = 10.0
    show_uncatalogued: bool = True
    previews: bool = True
    previews_nsfw: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.extra_model_paths, Path):  # one file given directly (tests, embedding code)
            object.__setattr__(self, "extra_model_paths", (self.extra_model_paths,))
        if self.api_key is not None and len(self.api_key) < MIN_API_KEY_LENGTH:
            raise ConfigError(
                f"API_KEY is too short ({len(self.api_key)} characters); use at least "
                f"{MIN_API_KEY_LENGTH}, or leave it unset to have a key generated."
            )
        if self.api_key is not None and not (
            self.api_key.isascii() and self.api_key.isprintable() and self.api_key.strip() == self.api_key
        ):
            raise ConfigError("API_KEY must be printable ASCII without surrounding spaces.")
        if not 0 < self.port < 65536:
            raise ConfigError(f"PORT must be between 1 and 65535, not {self.port}.")
        if not self.civitai_base_url.startswith(("http://", "https://")):
            raise ConfigError("CIVITAI_BASE_URL must start with http:// or https://.")
        if not self.huggingface_base_url.startswith(("http://", "https://")):
            raise ConfigError("HUGGINGFACE_BASE_URL must start with http:// or https://.")
        if self.civitai_fallback_url and not self.civitai_fallback_url.startswith(("http://", "https://")):
            raise ConfigError("CIVITAI_FALLBACK_URL must start with http:// or https://, or be empty to ask no second origin.")
        _in_range("WATCH_DEBOUNCE_MS", self.watch_debounce_ms, 1, 60_000, "milliseconds")
        _in_range("WATCH_POLL_INTERVAL_MS", self.watch_poll_interval_ms, 10, 3_600_000, "milliseconds")
        _in_range("RECONCILE_INTERVAL_S", self.reconcile_interval_s, 1, 86_400, "seconds")
        _in_range("CIVITAI_TIMEOUT_S", self.civitai_timeout_s, 1, 600, "seconds")
        _in_range("SHUTDOWN_TIMEOUT_S", self.shutdown_timeout_s, 0, 600, "seconds")
        _in_range("HEADER_TIMEOUT_S", self.header_timeout_s, 1, 600, "seconds")
        _in_range("MAX_BODY_BYTES", self.max_body_bytes, 1024, 64 * 1024 * 1024, "bytes")
        _in_range("DOWNLOAD_CONCURRENCY", self.download_concurrency, 1, 16, "downloads")
        _in_range("STALE_PART_S", self.stale_part_s, 1, 86_400, "seconds")
        _in_range("UPDATE_CHECK_INTERVAL_H", self.update_check_interval_h, 0, 24 * 30, "hours")
        _in_range("HASH_SETTLE_S", self.hash_settle_s, 0, 86_400, "seconds")
        if not self.host or any(c.isspace() for c in self.host) or len(self.host) > 253:
            raise ConfigError(f"HOST must be an address or a host name, not {self.host!r}.")
        for extension_id in self.cors_extension_ids:
            if not (len(extension_id) == 32 and all("a" <= char <= "p" for char in extension_id)):
                raise ConfigError(f"CORS_EXTENSION_IDS entry {extension_id!r} is not a Chrome extension id (32 letters a-p).")
        for origin in self.cors_origins:
            try:
                parts = urlsplit(origin)
            except ValueError:
                raise ConfigError(f"CORS_ORIGINS entry {origin!r} is not an origin like https://example.com.") from None
            if parts.scheme not in {"http", "https", "chrome-extension"} or not parts.netloc or origin != f"{parts.scheme}://{parts.netloc}":
                raise ConfigError(
                    f"CORS_ORIGINS entry {origin!r} is not an origin like https://example.com (no path, no trailing slash)."
                )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read and validate every setting; raise ConfigError naming the first bad variable."""
        data = default_data_dir()
        key = env.get("API_KEY") or None
        return cls(
            catalog_dir=_path(env, "CATALOG_DIR", data / "catalogs"),
            models_dir=_path(env, "MODELS_DIR", data / "models"),
            host=env.get("HOST") or "127.0.0.1",
            port=_int(env, "PORT", DEFAULT_PORT),
            api_key=key,
            civitai_api_key=env.get("CIVITAI_API_KEY") or None,
            civitai_base_url=(env.get("CIVITAI_BASE_URL") or "https://civitai.com").rstrip("/"),
            huggingface_base_url=(env.get("HUGGINGFACE_BASE_URL") or "https://huggingface.co").rstrip("/"),
            civitai_fallback_url=env.get("CIVITAI_FALLBACK_URL", "https://civitai.red").strip().rstrip("/"),
            civitai_timeout_s=_float(env, "CIVITAI_TIMEOUT_S", 30.0),
            watch_debounce_ms=_int(env, "WATCH_DEBOUNCE_MS", 200),
            watch_force_polling=_tristate(env, "WATCH_FORCE_POLLING"),
            watch_poll_interval_ms=_int(env, "WATCH_POLL_INTERVAL_MS", 1000),
            reconcile_interval_s=_float(env, "RECONCILE_INTERVAL_S", 300.0),
            extra_model_paths=_paths(env, "EXTRA_MODEL_PATHS"),
            cors_origins=tuple(o.strip() for o in (env.get("CORS_ORIGINS") or "").split(",") if o.strip()),
            cors_extension_ids=tuple(i.strip() for i in (env.get("CORS_EXTENSION_IDS") or "").split(",") if i.strip()),
            log_level=_log_level(env),
            log_format=_choice(env, "LOG_FORMAT", ("text", "json"), "text"),
            shutdown_timeout_s=_float(env, "SHUTDOWN_TIMEOUT_S", 5.0),
            header_timeout_s=_float(env, "HEADER_TIMEOUT_S", 15.0),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", 64 * 1024),
            downloads=_switch(env, "DOWNLOADS", True),
            download_concurrency=_int(env, "DOWNLOAD_CONCURRENCY", 2),
            stale_part_s=_float(env, "STALE_PART_S", 60.0),
            update_check_interval_h=_float(env, "UPDATE_CHECK_INTERVAL_H", 24.0),
            hashing=_switch(env, "HASHING", True),
            hash_settle_s=_float(env, "HASH_SETTLE_S", 10.0),
            show_uncatalogued=_switch(env, "SHOW_UNCATALOGUED", True),
            previews=_switch(env, "PREVIEWS", True),
            previews_nsfw=_switch(env, "PREVIEWS_NSFW", False),
        )


def _in_range(name: str, value: float, low: float, high: float, unit: str) -> None:
    if not low <= value <= high:
        shown = f"{value:g}" if isinstance(value, float) or abs(value) < 10**15 else f"a number of {len(str(abs(value)))} digits"
        raise ConfigError(f"{name} must be between {low:g} and {high:g} {unit}, not {shown}.")


def _path(env: Mapping[str, str], name: str, default: Path | None) -> Path | None:
    raw = env.get(name)
    if not raw:
        return default
    if "\x00" in raw:
        raise ConfigError(f"{name} contains a NUL character.")
    return Path(raw).expanduser().absolute()


def _paths(env: Mapping[str, str], name: str) -> tuple[Path, ...]:
    """Several paths, separated as in PATH (os.pathsep)."""
    raw = env.get(name) or ""
    if "\x00" in raw:
        raise ConfigError(f"{name} contains a NUL character.")
    return tuple(Path(part).expanduser().absolute() for part in raw.split(os.pathsep) if part.strip())


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}.") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}.") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"{name} must be a finite number, not {raw!r}.")
    return value


def _tristate(env: Mapping[str, str], name: str) -> bool | None:
    raw = (env.get(name) or "auto").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    if raw == "auto":
        return None
    raise ConfigError(f"{name} must be one of true, false or auto, not {raw!r}.")


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{name} must be on or off, not {raw!r}.")


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = (env.get(name) or default).strip().lower()
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {raw!r}.")
    return raw


def _log_level(env: Mapping[str, str]) -> str:
    raw = (env.get("LOG_LEVEL") or "INFO").strip().upper()
    if raw not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {raw!r}.")
    return raw
