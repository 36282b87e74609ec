"""ComfyUI's extra_model_paths.yaml: more folders where models of each kind live.

Read the way ComfyUI reads it: each top-level section may set `base_path` (with `~` and
environment variables expanded; relative to the YAML file's folder when not absolute);
every other key names a folder kind (`checkpoints`, `loras`, `unet`, ...) and holds one
path or several, one per line, each relative to `base_path` when one is set.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from .catalog import canonical_folder
from .errors import ConfigError
from .presence import FolderSource

NOT_MODEL_FOLDERS = frozenset({"base_path", "is_default", "custom_nodes", "download_model_base"})


def parse_extra_model_paths(text: str, yaml_dir: Path) -> list[FolderSource]:
    """Folder sources from the YAML text; raise ConfigError when it is not such a file."""
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"EXTRA_MODEL_PATHS is not valid YAML ({_first_line(exc)}).") from None
    if config is None:
        return []
    if not isinstance(config, dict):
        raise ConfigError("EXTRA_MODEL_PATHS must hold sections of folder settings, as ComfyUI's example does.")
    sources: list[FolderSource] = []
    for section in config.values():
        if not isinstance(section, dict):
            continue
        base = section.get("base_path")
        base_path = _expand(str(base), yaml_dir) if base else None
        for kind, value in section.items():
            if kind in NOT_MODEL_FOLDERS or not isinstance(kind, str) or not isinstance(value, str):
                continue
            for line in value.splitlines():
                line = line.strip()
                if not line:
                    continue
                path = os.path.join(base_path, _expand_vars(line)) if base_path else _expand(line, yaml_dir)
                sources.append(FolderSource(os.path.normpath(path), canonical_folder(kind)))
    return _unique(sources)


def load_extra_model_paths(path: Path | None) -> list[FolderSource]:
    """Read EXTRA_MODEL_PATHS when set; a file that cannot be read is a configuration error."""
    if path is None:
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"EXTRA_MODEL_PATHS cannot be read ({getattr(exc, 'strerror', None) or exc}): {path}") from None
    return parse_extra_model_paths(text, path.parent)


def _expand(value: str, yaml_dir: Path) -> str:
    expanded = _expand_vars(value)
    return expanded if os.path.isabs(expanded) else str(yaml_dir / expanded)


def _expand_vars(value: str) -> str:
    return os.path.expandvars(os.path.expanduser(value))


def _unique(sources: list[FolderSource]) -> list[FolderSource]:
    seen: set[FolderSource] = set()
    return [s for s in sources if not (s in seen or seen.add(s))]  # type: ignore[func-returns-value]


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
