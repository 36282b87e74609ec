"""ComfyUI's extra_model_paths.yaml: more folders where models of each kind live.

Read the way ComfyUI's `utils/extra_config.py` (`load_extra_path_config`) reads it: a section
that is empty is skipped; `base_path` has `~` and environment variables expanded (nowhere
else is anything expanded) and is taken from the YAML file's folder when relative;
`is_default` only orders ComfyUI's search. Every other key names a folder kind, mapped as
`folder_paths.map_legacy` maps it (`unet` is `diffusion_models`, `clip` is `text_encoders`),
and holds one path per line, used as written: joined to `base_path`, or without one taken
from the YAML file's folder. What makes ComfyUI's reader raise (a YAML list or a number where
it splits lines, a section that is not a mapping) stops this service's start too, in one
sentence. EXTRA_MODEL_PATHS may name several files, separated like PATH (`:` on Linux/macOS).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import yaml

from ..errors import ConfigError
from .scan import FolderSource

# folder_paths.map_legacy: the only names ComfyUI renames when a folder is added.
COMFYUI_LEGACY_NAMES = {"unet": "diffusion_models", "clip": "text_encoders"}
# Keys load_extra_path_config reads as settings rather than folders.
SETTING_KEYS = frozenset({"base_path", "is_default"})
# Folder kinds that hold no models (custom_nodes), or that ComfyUI Desktop and some forks write.
NOT_MODEL_FOLDERS = frozenset({"custom_nodes", "download_model_base", "base_paths"})


def parse_extra_model_paths(text: str, yaml_dir: Path, *, name: str = "EXTRA_MODEL_PATHS") -> list[FolderSource]:
    """Folder sources from the YAML text; raise ConfigError where ComfyUI's reader would fail."""
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name} is not valid YAML ({_yaml_problem(exc)}).") from None
    if config is None:
        return []
    if not isinstance(config, dict):
        raise ConfigError(f"{name} must hold sections of folder settings, as ComfyUI's example does, not {_kind(config)}.")
    sources: list[FolderSource] = []
    for section_name, section in config.items():
        if section is None:
            continue
        if not isinstance(section, dict):
            raise ConfigError(f"{name}: section {section_name!r} is {_kind(section)}; ComfyUI reads a mapping of folder kinds to paths.")
        base_path = _base_path(section, section_name, yaml_dir, name) if "base_path" in section else None
        for kind, value in section.items():
            if kind in SETTING_KEYS:
                continue
            lines = _lines(value, kind, section_name, name)
            if kind in NOT_MODEL_FOLDERS or not isinstance(kind, str):
                continue
            logical = COMFYUI_LEGACY_NAMES.get(kind, kind)
            for line in lines:
                path = os.path.join(base_path if base_path else str(yaml_dir), line)
                sources.append(FolderSource(os.path.normpath(os.path.abspath(path)), logical))
    return _unique(sources)


def load_extra_model_paths(paths: tuple[Path, ...] | Path | None) -> list[FolderSource]:
    """Read every EXTRA_MODEL_PATHS file in order; one that cannot be read or used is a configuration error."""
    if paths is None:
        return []
    sources: list[FolderSource] = []
    for path in (paths,) if isinstance(paths, Path) else paths:
        try:
            text = _read_small(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"EXTRA_MODEL_PATHS cannot be read ({getattr(exc, 'strerror', None) or exc}): {path}") from None
        sources += parse_extra_model_paths(text, path.parent, name=f"EXTRA_MODEL_PATHS file {path}")
    return _unique(sources)


MAX_EXTRA_PATHS_BYTES = 1 << 20  # an extra_model_paths.yaml is a few hundred bytes


def _read_small(path: Path) -> str:
    """A regular file of at most MAX_EXTRA_PATHS_BYTES, as UTF-8 (never a device or a FIFO, which
    could be endless or never end)."""
    with open(path, "rb", buffering=0, opener=lambda name, flags: os.open(name, flags | os.O_NONBLOCK)) as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise ConfigError(f"EXTRA_MODEL_PATHS is not a regular file: {path}")
        data = handle.read(MAX_EXTRA_PATHS_BYTES + 1)
    if len(data) > MAX_EXTRA_PATHS_BYTES:
        raise ConfigError(f"EXTRA_MODEL_PATHS is larger than {MAX_EXTRA_PATHS_BYTES // 1024} KB, which no extra_model_paths.yaml is: {path}")
    return data.decode("utf-8")


def _lines(value: object, kind: object, section: object, name: str) -> list[str]:
    """The paths of one folder kind: the non-empty lines of its text, as ComfyUI splits them."""
    if isinstance(value, str):
        return [line for line in value.split("\n") if line]
    if isinstance(value, list):
        raise ConfigError(
            f"{name}: {kind!r} in section {section!r} is a list; ComfyUI reads one path per line of a text value "
            f"and does not start with a list. Write `{kind}: |` and the paths on the lines below it."
        )
    raise ConfigError(f"{name}: {kind!r} in section {section!r} is {_kind(value)}; ComfyUI reads one path per line of a text value.")


def _base_path(section: dict[object, object], section_name: object, yaml_dir: Path, name: str) -> str:
    value = section["base_path"]
    if not isinstance(value, str):
        raise ConfigError(f"{name}: 'base_path' in section {section_name!r} is {_kind(value)}; ComfyUI needs a path there.")
    expanded = os.path.expandvars(os.path.expanduser(value))
    return expanded if os.path.isabs(expanded) else os.path.abspath(os.path.join(yaml_dir, expanded))


def _kind(value: object) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _unique(sources: list[FolderSource]) -> list[FolderSource]:
    seen: set[FolderSource] = set()
    return [s for s in sources if not (s in seen or seen.add(s))]  # type: ignore[func-returns-value]


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What PyYAML found wrong, and where: `line 3, column 6: expected ',' or ']', but got '<stream end>'`."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is None or not problem:
        return _first_line(exc)
    context = getattr(exc, "context", None)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" + (f" ({context})" if context else "")


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
