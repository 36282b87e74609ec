"""ComfyUI's extra_model_paths.yaml: more folders where models of each kind live.

Read the way ComfyUI's `utils/extra_config.py` (`load_extra_path_config`) reads it: each
top-level section may set `base_path`, in which `~` and environment variables are expanded
and which is taken relative to the YAML file's folder when not absolute; `is_default` only
orders ComfyUI's search. Every other key names a folder kind (`checkpoints`, `loras`, ...,
with the legacy names ComfyUI's `folder_paths.map_legacy` maps: `unet` is `diffusion_models`,
`clip` is `text_encoders`) and holds one path or several, one per line. A path is joined to
`base_path`, or, without one, taken relative to the YAML file's folder; ComfyUI expands no
variables in it, and neither does this. A YAML list of paths is also accepted (ComfyUI wants
lines). EXTRA_MODEL_PATHS may name several files, separated like PATH (`:` on Linux/macOS).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from .catalog import canonical_folder
from .errors import ConfigError
from .presence import FolderSource

NOT_MODEL_FOLDERS = frozenset({"base_path", "base_paths", "is_default", "custom_nodes", "download_model_base"})


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
        base_path = _base_path(str(base), yaml_dir) if isinstance(base, str) and base.strip() else None
        for kind, value in section.items():
            if kind in NOT_MODEL_FOLDERS or not isinstance(kind, str):
                continue
            for line in _paths(value):
                path = os.path.join(base_path, line) if base_path else os.path.join(str(yaml_dir), line)
                sources.append(FolderSource(os.path.normpath(os.path.abspath(path)), canonical_folder(kind)))
    return _unique(sources)


def load_extra_model_paths(paths: tuple[Path, ...] | Path | None) -> list[FolderSource]:
    """Read every EXTRA_MODEL_PATHS file; one that cannot be read is a configuration error."""
    if paths is None:
        return []
    sources: list[FolderSource] = []
    for path in (paths,) if isinstance(paths, Path) else paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"EXTRA_MODEL_PATHS cannot be read ({getattr(exc, 'strerror', None) or exc}): {path}") from None
        sources += parse_extra_model_paths(text, path.parent)
    return _unique(sources)


def _paths(value: object) -> list[str]:
    """The paths of one folder kind: lines of a string (as ComfyUI splits them), or a YAML list."""
    if isinstance(value, str):
        lines = value.split("\n")
    elif isinstance(value, list):
        lines = [item for item in value if isinstance(item, str)]
    else:
        return []
    return [line.strip() for line in lines if line.strip()]


def _base_path(value: str, yaml_dir: Path) -> str:
    expanded = os.path.expandvars(os.path.expanduser(value.strip()))
    return expanded if os.path.isabs(expanded) else str(yaml_dir / expanded)


def _unique(sources: list[FolderSource]) -> list[FolderSource]:
    seen: set[FolderSource] = set()
    return [s for s in sources if not (s in seen or seen.add(s))]  # type: ignore[func-returns-value]


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
