"""`python -m service`: read the settings, prepare the folders, print where to connect, serve."""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
from collections.abc import Sequence

from . import PROGRAM, __version__, workers
from .catalog.document import CATALOG_NAMES, catalog_path
from .disk.extra_paths import load_extra_model_paths
from .errors import ConfigError
from .http.app import create_app
from .http.auth import key_file, load_or_create_key
from .http.serving import serve
from .logs import configure_logging
from .settings import SETTINGS_HELP, Settings, default_data_dir

FLAGS = {"host": "HOST", "port": "PORT", "catalog_dir": "CATALOG_DIR", "models_dir": "MODELS_DIR"}


SWITCH_INTERVAL_S = 0.0005


def main(argv: Sequence[str] | None = None) -> int:
    """Start the service; return the process exit code."""
    workers.limit_malloc_arenas()  # before any thread allocates
    args = _parse_args(argv)
    env = dict(os.environ)
    env.update({var: str(getattr(args, flag)) for flag, var in FLAGS.items() if getattr(args, flag) is not None})
    try:
        settings = Settings.from_env(env)
        prepare_folders(settings)
        load_extra_model_paths(settings.extra_model_paths)  # a bad file stops the start here, in one line
        api_key, generated = load_or_create_key(settings)
    except ConfigError as exc:
        print(f"{PROGRAM}: {exc}", file=sys.stderr)
        return 2
    if args.print_key:
        print(api_key)
        return 0
    try:
        check_listen(settings)
    except ConfigError as exc:
        print(f"{PROGRAM}: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format, secrets=(api_key, settings.civitai_api_key or ""))
    # Worker threads (building a 100k map, hashing between blocks) hold the GIL for up to the
    # switch interval each time the loop lets go of it for a syscall: at the default 5 ms, a
    # request that makes ten syscalls waits 50 ms. A shorter interval hands the GIL back sooner.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    _print_banner(settings, api_key, generated)
    try:
        serve(create_app(settings, api_key), settings)
    except OSError as exc:  # lost a race for the port since check_listen
        print(f"{PROGRAM}: {_listen_problem(settings, exc)}", file=sys.stderr)
        return 2
    return 0


def check_listen(settings: Settings) -> None:
    """Bind the address once before anything starts, so a bad HOST or PORT is one clear line."""
    try:
        infos = socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError):
        raise ConfigError(f"HOST {settings.host} does not resolve to an address of this machine.") from None
    for family, kind, proto, _name, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise ConfigError(_listen_problem(settings, exc)) from None


def _listen_problem(settings: Settings, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"PORT {settings.port} is already in use on {settings.host}."
    if exc.errno == errno.EACCES:
        return f"PORT {settings.port} needs privileges this user does not have; use a port above 1023."
    if exc.errno in (errno.EADDRNOTAVAIL, errno.EINVAL):
        return f"HOST {settings.host} is not an address this machine can listen on."
    return f"cannot listen on HOST {settings.host} PORT {settings.port} ({exc.strerror or exc})."


def prepare_folders(settings: Settings) -> None:
    """Create the catalog folder (and the embedded models folder); check both can be used."""
    try:
        _prepare_folders(settings)
    except OSError as exc:  # a path the filesystem refuses outright (a name too long, a loop of links)
        raise ConfigError(f"CATALOG_DIR or MODELS_DIR cannot be used ({exc.strerror or exc}): {exc.filename}") from None


def _prepare_folders(settings: Settings) -> None:
    if settings.catalog_dir.exists() and not settings.catalog_dir.is_dir():
        hint = f" ({settings.catalog_dir.name} is a catalog: point at its folder, {settings.catalog_dir.parent})" if settings.catalog_dir.suffix == ".json" else ""
        raise ConfigError(f"CATALOG_DIR is a file, not a folder: {settings.catalog_dir}{hint}.")
    try:
        settings.catalog_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"CATALOG_DIR cannot be created ({exc.strerror}): {settings.catalog_dir}") from None
    if not os.access(settings.catalog_dir, os.W_OK | os.X_OK):
        raise ConfigError(f"CATALOG_DIR is not writable by this user: {settings.catalog_dir}")
    for name in CATALOG_NAMES:
        if catalog_path(settings.catalog_dir, name).is_symlink():
            raise ConfigError(
                f"CATALOG_DIR: {name}.json is a symbolic link; every save replaces the file, which would split it "
                "from its target. Point CATALOG_DIR at the folder that holds the real file."
            )
    if settings.models_dir.is_relative_to(default_data_dir()):
        try:
            settings.models_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"MODELS_DIR cannot be created ({exc.strerror}): {settings.models_dir}") from None
    if not settings.models_dir.is_dir():
        raise ConfigError(f"MODELS_DIR is not a folder: {settings.models_dir}")
    if not os.access(settings.models_dir, os.R_OK | os.X_OK):
        raise ConfigError(f"MODELS_DIR is not readable by this user: {settings.models_dir}")


def _print_banner(settings: Settings, api_key: str, generated: bool) -> None:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    lines = [
        f"{PROGRAM} {__version__} on http://{host}:{settings.port}",
        f"  catalogs: {settings.catalog_dir}",
        f"  models:   {settings.models_dir}",
    ]
    if settings.api_key:
        lines.append("  API key:  the one set in API_KEY")
    else:
        note = "generated now" if generated else "kept"
        lines.append(f"  API key:  {api_key}  ({note} in {key_file(settings)}, owner-only)")
    print("\n".join(lines), flush=True)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    width = max(len(name) for name, _default, _meaning in SETTINGS_HELP)
    settings_text = "\n".join(f"  {name:<{width}}  {meaning} (default: {default})" for name, default, meaning in SETTINGS_HELP)
    parser = argparse.ArgumentParser(
        prog="python -m service",
        description=f"{PROGRAM}: which CivitAI model versions ComfyUI's catalogs list, and which are on disk.",
        epilog=f"settings (environment variables):\n{settings_text}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROGRAM} {__version__}")
    parser.add_argument("--host", help="address to listen on (HOST)")
    parser.add_argument("--port", help="port to listen on (PORT)")
    parser.add_argument("--catalog-dir", help="folder holding models.json and loras.json (CATALOG_DIR)")
    parser.add_argument("--models-dir", help="ComfyUI's models folder (MODELS_DIR)")
    parser.add_argument("--print-key", action="store_true", help="print the API key and exit")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
