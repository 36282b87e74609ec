"""Looking beside model files: the sidecar that can be trusted for each, and its preview image.

Plain blocking code for a worker thread. Each folder is listed once, however many of its files
are asked about; a sidecar is opened only when the listing holds it, read only up to
MAX_SIDECAR_BYTES, and trusted only when it is not older than its model file and (where it
says) describes a file of the same size.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import stat as stat_mode
from collections.abc import Iterable
from dataclasses import dataclass, field

from .formats import MAX_SIDECAR_BYTES, SIDECARS, Hint, Refused

logger = logging.getLogger(__name__)

# The names ComfyUI's model manager serves as a model's preview (`<stem>.<ext>` and
# `<stem>.preview.<ext>`, app/model_manager.py), in the order they are taken here.
PREVIEW_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
PREVIEW_INFIXES = ("", ".preview")


@dataclass(frozen=True, slots=True)
class ModelFile:
    """A model file as the hasher knows it without reading it."""

    path: str
    size: int
    mtime_ns: int


@dataclass(slots=True)
class Beside:
    """What was found beside the files asked about."""

    hints: dict[str, Hint] = field(default_factory=dict)  # model path -> the hint of its first trusted sidecar
    refused: list[str] = field(default_factory=list)  # why sidecars were not trusted, for the log
    previews: dict[str, str] = field(default_factory=dict)  # model path -> its preview's file name


def stem_of(name: str) -> str:
    """A model file's name without its extension."""
    return name.rpartition(".")[0] or name


def preview_names(stem: str) -> list[str]:
    """The names a preview of the model `stem` may have, in the order they are taken."""
    return [f"{stem}{infix}{ext}" for infix in PREVIEW_INFIXES for ext in PREVIEW_EXTENSIONS]


def look_beside(files: Iterable[ModelFile], read_sidecars: set[str]) -> Beside:
    """Previews of these files, and the sidecars of those in `read_sidecars`; a folder listing each."""
    found = Beside()
    by_folder: dict[str, list[ModelFile]] = {}
    for file in files:
        by_folder.setdefault(os.path.dirname(file.path), []).append(file)
    for folder, in_folder in by_folder.items():
        try:
            names = set(os.listdir(folder))
        except OSError:
            continue
        for file in in_folder:
            name = os.path.basename(file.path)
            stem = stem_of(name)
            preview = next((candidate for candidate in preview_names(stem) if candidate in names), None)
            if preview is not None:
                found.previews[file.path] = preview
            if file.path in read_sidecars:
                hint = _trusted_hint(folder, file, name, stem, names, found.refused)
                if hint is not None:
                    found.hints[file.path] = hint
    return found


def _trusted_hint(folder: str, file: ModelFile, name: str, stem: str, names: set[str], refused: list[str]) -> Hint | None:
    for sidecar in SIDECARS:
        sidecar_name = stem + sidecar.suffix
        if sidecar_name not in names:
            continue
        try:
            data = _read(os.path.join(folder, sidecar_name), file)
            hint = sidecar.parse(data, name, file.size)
        except Refused as exc:
            refused.append(f"{os.path.join(folder, sidecar_name)}: {exc}")
            continue
        return dataclasses.replace(hint, sidecar=sidecar_name)
    return None


def _read(path: str, file: ModelFile) -> bytes:
    """A sidecar's bytes: a regular file, not older than its model, at most MAX_SIDECAR_BYTES."""
    try:
        if not stat_mode.S_ISREG(os.stat(path).st_mode):  # looked at before opening: a device may act when opened
            raise Refused("not a regular file")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise Refused(f"cannot be opened ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat_mode.S_ISREG(info.st_mode):
            raise Refused("not a regular file")
        if info.st_mtime_ns < file.mtime_ns:
            raise Refused("older than its model file")
        if info.st_size > MAX_SIDECAR_BYTES:
            raise Refused(f"{info.st_size} bytes, more than the {MAX_SIDECAR_BYTES} read")
        chunks, left = [], MAX_SIDECAR_BYTES + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        if left <= 0:
            raise Refused(f"more than the {MAX_SIDECAR_BYTES} bytes read")
        return b"".join(chunks)
    except OSError as exc:
        raise Refused(f"cannot be read ({exc.strerror})") from None
    finally:
        os.close(fd)
