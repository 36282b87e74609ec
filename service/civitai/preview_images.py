"""Which of a version's images becomes its preview, and where it may be fetched from.

Pure: the version body is read down to its images (`version_images`, picklable, for
`get_reduced`), one is chosen by type and rating, and its URL is asked at a small width.
Only CivitAI's hosts (and CIVITAI_BASE_URL's) are ever fetched from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..urls import origin_key, plain_authority, split_url
from .client import CIVITAI_HOSTS, BadBody

MAX_IMAGES_READ = 20
SAFE_LEVEL = 2  # CivitAI's nsfwLevel: 1 PG, 2 PG-13, 4 R, 8 X, 16 XXX
SAFE_WORDS = frozenset({"None", "Soft"})  # the older `nsfw` field's ratings up to PG-13
PREVIEW_WIDTH = 450  # CivitAI's image host resizes to the width a URL asks for
_SIZE_STEP = re.compile(r"/(?:width=\d+|original=true)(?:,[^/]*)?/")


@dataclass(frozen=True, slots=True)
class VersionImage:
    """One image of a version: where it is, whether it is a still image, and its rating."""

    url: str
    still: bool
    safe: bool | None  # None: not rated


def version_images(body: object) -> list[VersionImage]:
    """The first images of a CivitAI model-version body, in its order (pure)."""
    images = body.get("images") if isinstance(body, dict) else None
    if images is None:
        return []
    if not isinstance(images, list):
        raise BadBody("images that are not a list")
    found: list[VersionImage] = []
    for image in images[:MAX_IMAGES_READ]:
        if not isinstance(image, dict) or not isinstance(image.get("url"), str) or len(image["url"]) > 2000:
            continue
        kind = image.get("type")
        level, word = image.get("nsfwLevel"), image.get("nsfw")
        if type(level) is int:
            safe: bool | None = level <= SAFE_LEVEL
        elif isinstance(word, str):
            safe = word in SAFE_WORDS
        elif type(word) is bool:
            safe = not word
        else:
            safe = None
        found.append(VersionImage(image["url"], kind in (None, "image"), safe))
    return found


def choose(images: list[VersionImage], *, nsfw: bool) -> str | None:
    """The URL of the first still image allowed (any rating with `nsfw`, else PG or PG-13 only)."""
    for image in images:
        if image.still and (nsfw or image.safe is True):
            return small(image.url)
    return None


def small(url: str) -> str:
    """The URL asked at PREVIEW_WIDTH where CivitAI's image host takes a size in its path."""
    return _SIZE_STEP.sub(f"/width={PREVIEW_WIDTH}/", url, count=1)


def image_host_allowed(url: str, base_url: str) -> bool:
    """True for an https URL on CivitAI's hosts or their subdomains (image.civitai.com), or on
    CIVITAI_BASE_URL's origin (a local mirror or a test server); nothing else is fetched."""
    parts, base = split_url(url), split_url(base_url)
    if parts is None or base is None or not plain_authority(parts):
        return False
    scheme, host, port = origin_key(parts)
    if (scheme, host, port) == origin_key(base):
        return True
    return scheme == "https" and port in (None, 443) and any(host == known or host.endswith("." + known) for known in CIVITAI_HOSTS)
