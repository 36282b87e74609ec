"""Preview images: what kind an image is by its bytes, and the small thumbnail the page loads.

The type is read from the first bytes, never from the name: a file called `.png` that is
HTML is no image. Thumbnails are decoded with Pillow under a pixel limit (an image that
claims more pixels is refused before it is decoded), in a worker thread.
"""

from __future__ import annotations

import asyncio
import io
import os
import stat
from collections import OrderedDict

MAX_PREVIEW_BYTES = 32 * 1024 * 1024  # a preview larger than this is not served nor made small
MAX_PIXELS = 40_000_000  # a preview claiming more is not decoded (Pillow's decompression-bomb guard)
THUMBNAIL_PX = 320  # the longer side of a thumbnail
THUMBNAIL_QUALITY = 70


class NotAnImage(ValueError):
    """The bytes are not a PNG, JPEG or WebP image this service serves; the message says why."""


class PreviewGone(NotAnImage):
    """The preview cannot be opened at all (gone, or not a regular file)."""


def image_type(head: bytes) -> str | None:
    """The media type of PNG, JPEG or WebP bytes (from their first 12 bytes), else None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def extension_of(media_type: str) -> str:
    """The file extension a preview of that media type is written with."""
    return {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}[media_type]


def read_image(path: str) -> tuple[bytes, str]:
    """A preview's bytes and media type (blocking); NotAnImage when it is not one we serve."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):  # looked at before opening: a device may act when opened
            raise PreviewGone("not a regular file (a link, a folder, a device)")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise PreviewGone(f"cannot be opened ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotAnImage("not a regular file")
        if info.st_size > MAX_PREVIEW_BYTES:
            raise NotAnImage(f"{info.st_size} bytes, more than {MAX_PREVIEW_BYTES}")
        data = file.read(MAX_PREVIEW_BYTES + 1)
    media_type = image_type(data[:12])
    if media_type is None or len(data) > MAX_PREVIEW_BYTES:
        raise NotAnImage("not a PNG, JPEG or WebP image")
    return data, media_type


def thumbnail(data: bytes) -> bytes:
    """A WebP of at most THUMBNAIL_PX on its longer side (blocking: a worker thread)."""
    from PIL import (
        Image,  # only when a thumbnail is made: the service does not carry Pillow otherwise
    )

    try:
        with Image.open(io.BytesIO(data), formats=("PNG", "JPEG", "WEBP")) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise NotAnImage(f"{width}x{height} pixels, more than {MAX_PIXELS}")
            image.draft("RGB", (THUMBNAIL_PX, THUMBNAIL_PX))  # JPEG: decode at a fraction of the size
            image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            if image.mode not in ("RGB", "RGBA"):
                image = image.convert("RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB")
            out = io.BytesIO()
            image.save(out, "WEBP", quality=THUMBNAIL_QUALITY, method=4)
            return out.getvalue()
    except NotAnImage:
        raise
    except Exception as exc:  # Pillow raises many kinds for bad bytes (OSError, SyntaxError, ValueError, DecompressionBombError...)
        raise NotAnImage(f"cannot be decoded ({type(exc).__name__})") from None


class Thumbnails:
    """Thumbnails made, kept by the preview's path, size and modification time up to a byte
    budget (the least recently used go first); at most two are made at once."""

    def __init__(self, budget: int = 16 * 1024 * 1024) -> None:
        self.budget = budget
        self._kept: OrderedDict[tuple[str, int, int], bytes] = OrderedDict()
        self._bytes = 0
        self._making = asyncio.Semaphore(2)
        self._under_way: dict[tuple[str, int, int], asyncio.Future[bytes]] = {}

    async def get(self, path: str) -> bytes:
        """The thumbnail of the preview at `path`; NotAnImage when it cannot be made."""
        info = await asyncio.to_thread(_stat, path)
        key = (path, info.st_size, info.st_mtime_ns)
        kept = self._kept.get(key)
        if kept is not None:
            self._kept.move_to_end(key)
            return kept
        making = self._under_way.get(key)
        if making is None:  # the first request makes it; those that come meanwhile wait for the same one
            making = self._under_way[key] = asyncio.ensure_future(self._make(path))
            making.add_done_callback(lambda _done: self._under_way.pop(key, None))
        made = await asyncio.shield(making)
        if key not in self._kept:
            self._kept[key] = made
            self._bytes += len(made)
        while self._bytes > self.budget and self._kept:
            _key, dropped = self._kept.popitem(last=False)
            self._bytes -= len(dropped)
        return made


    async def _make(self, path: str) -> bytes:
        async with self._making:
            data, _media_type = await asyncio.to_thread(read_image, path)
            return await asyncio.to_thread(thumbnail, data)


def _stat(path: str) -> os.stat_result:
    try:
        return os.stat(path)
    except OSError as exc:
        raise PreviewGone(f"cannot be read ({exc.strerror})") from None
