"""Files on Hugging Face that a workflow names: which URLs are taken, and the SHA256 Hugging Face
publishes for a file kept in LFS (every model file is), read before any byte is fetched.

`HEAD https://huggingface.co/{repo}/resolve/{revision}/{path}` answers, for an LFS file,
`X-Linked-Etag: "<sha256>"` and `X-Linked-Size`, then redirects to its storage. A file with no
published SHA256 is not downloaded: nothing else could prove its bytes.
"""

from __future__ import annotations

from urllib.parse import unquote

import aiohttp

from ..urls import origin_key, plain_authority, split_url
from .fetch import DownloadFailed

MAX_URL_CHARS = 2000


def is_file_url(url: str, base_url: str) -> bool:
    """True for `<base>/<owner>/<repo>/resolve/<revision>/<path>` on Hugging Face's origin (or
    the configured mirror's): no user, no port other than the base's, no query tricks in the path."""
    parts, base = split_url(url), split_url(base_url)
    if len(url) > MAX_URL_CHARS or parts is None or base is None or not plain_authority(parts):
        return False
    if origin_key(parts) != origin_key(base):
        return False
    steps = [unquote(step) for step in parts.path.split("/") if step]
    return len(steps) >= 5 and steps[2] == "resolve" and ".." not in steps


async def published_sha256(session: aiohttp.ClientSession, url: str) -> tuple[str, int | None]:
    """The SHA256 (and size) Hugging Face publishes for an LFS file; DownloadFailed without one."""
    try:
        async with session.head(url, allow_redirects=False) as response:
            if response.status == 404:
                raise DownloadFailed("Hugging Face has no such file (404)", "not_found")
            if response.status in (401, 403):
                raise DownloadFailed("Hugging Face refused the file (a gated or private repository)", "huggingface_refused")
            if response.status >= 400:
                raise DownloadFailed(f"Hugging Face answered HTTP {response.status}", "huggingface_error")
            etag = response.headers.get("X-Linked-Etag", "")
            size = response.headers.get("X-Linked-Size", "")
    except aiohttp.ClientError as exc:
        raise DownloadFailed(f"Hugging Face could not be reached ({type(exc).__name__})", "connection_failed") from None
    except TimeoutError:
        raise DownloadFailed("Hugging Face did not answer in time", "timeout") from None
    sha256 = etag.removeprefix("W/").strip('"').lower()
    if len(sha256) != 64 or sha256.strip("0123456789abcdef"):
        raise DownloadFailed("Hugging Face publishes no SHA256 for this file (not in LFS), so its bytes could not be proven; it was not downloaded", "no_published_hash")
    return sha256, int(size) if size.isascii() and size.isdigit() else None
