"""Saving a version's first image beside its file, as `<name>.preview.<ext>`, after a download or
an import (PREVIEWS=on).

One image at a time, in the background, through the same rate-limit gate as every CivitAI
call: a download is done when its file is placed, not when its picture is. The image is
fetched at a small width, at most MAX_IMAGE_BYTES, only from CivitAI's hosts; its type is read
from its bytes (PNG, JPEG or WebP, else nothing is written); a preview already there is never
replaced. The map is told at once, so the version shows its `preview`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import secrets
from pathlib import Path

from ..civitai.client import CivitaiClient
from ..civitai.preview_images import choose, image_host_allowed, version_images
from ..errors import ServiceError
from ..map.index import CivitaiIndex
from ..sidecars.finder import preview_names, stem_of
from ..sidecars.images import extension_of, image_type

logger = logging.getLogger(__name__)

MAX_IMAGE_BYTES = 8 * 1024 * 1024
QUEUE_LIMIT = 10_000  # previews waiting beyond this are not fetched (a huge import): the log says how many


class PreviewSaver:
    """The queue of previews to save, and the task that saves them. Owned by the event loop."""

    def __init__(self, client: CivitaiClient, index: CivitaiIndex, *, enabled: bool, nsfw: bool) -> None:
        self.client = client
        self.index = index
        self.enabled = enabled
        self.nsfw = nsfw
        self._queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue(QUEUE_LIMIT)
        self.saved = 0
        self.handled = 0  # wanted previews looked at (saved, or found needless or impossible)
        self._dropped = 0

    def want(self, version_id: int, model_path: str) -> None:
        """Save a preview beside this file of this version, unless one is there (later, in order)."""
        if not self.enabled:
            return
        try:
            self._queue.put_nowait((version_id, model_path))
        except asyncio.QueueFull:
            self._dropped += 1
            if self._dropped == 1:
                logger.warning("more than %d previews wait to be saved; the rest are not fetched this time", QUEUE_LIMIT)

    async def run(self) -> None:
        """Save previews as they are wanted, until cancelled."""
        while True:
            version_id, path = await self._queue.get()
            try:
                await self.save(version_id, path)
            except ServiceError as exc:
                logger.warning("the preview of %s could not be saved: %s", os.path.basename(path), exc.detail)
            except OSError as exc:
                logger.warning("the preview of %s could not be written: %s", os.path.basename(path), exc.strerror or exc)
            except Exception:  # whatever one preview does, the next ones are still saved
                logger.exception("saving the preview of %s failed", os.path.basename(path))
            self.handled += 1

    async def save(self, version_id: int, model_path: str) -> str | None:
        """Fetch and write the preview of one file; the name written, or None when none was."""
        folder, name = os.path.split(model_path)
        stem = stem_of(name)
        there = await asyncio.to_thread(_names_in, folder)
        if there is None or name not in there or any(candidate in there for candidate in preview_names(stem)):
            return None  # the file went away, or it has a preview already
        base = self.client.base_url
        images = await self.client.get_reduced(
            base, f"/api/v1/model-versions/{version_id}", None, f"model version {version_id}", version_images, longest_wait_s=math.inf
        )
        url = choose(images, nsfw=self.nsfw)
        if url is None:
            logger.info("version %d has no image to keep as a preview%s", version_id, "" if self.nsfw else " (PREVIEWS_NSFW=off)")
            return None
        data = await self.client.fetch_image(url, functools.partial(image_host_allowed, base_url=base), max_bytes=MAX_IMAGE_BYTES)
        media_type = image_type(data[:12])
        if media_type is None:
            logger.warning("the image CivitAI lists for version %d is not a PNG, JPEG or WebP; no preview saved", version_id)
            return None
        preview = f"{stem}.preview{extension_of(media_type)}"
        if not await asyncio.to_thread(_write_new, Path(folder) / preview, data):
            return None
        self.saved += 1
        logger.info("saved the preview of %s (%d KB)", name, len(data) // 1024)
        moved = self.index.set_previews({model_path: preview})
        self.index.hashes_changed(moved, ())
        return preview


def _names_in(folder: str) -> set[str] | None:
    try:
        return set(os.listdir(folder))
    except OSError:
        return None


def _write_new(target: Path, data: bytes) -> bool:
    """Write a file that must not exist yet, whole or not at all (a temp file linked into place:
    a name taken meanwhile, or a link planted there, is left alone). False when the name was taken."""
    temp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        try:
            os.link(temp, target)
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links (exFAT, some SMB mounts): checked, then renamed
            if os.path.lexists(target):
                return False
            os.rename(temp, target)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
