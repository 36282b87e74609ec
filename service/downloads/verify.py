"""What a download is checked against, and refusing a downloaded file that is not the one asked for."""

from __future__ import annotations

import logging
import math

from ..civitai import CivitaiClient
from ..civitai.routing import file_sha256
from ..errors import ServiceError
from .fetch import DownloadFailed, Fetched

logger = logging.getLogger(__name__)


async def civitai_sha256(civitai: CivitaiClient | None, version_id: int | None, file: str) -> str | None:
    """The SHA256 CivitAI lists for a version's file, for an entry that has none."""
    if civitai is None or version_id is None:
        return None
    try:
        version, _origin = await civitai.model_version(version_id, longest_wait_s=math.inf)
    except ServiceError as exc:
        logger.warning("download of %s: CivitAI's SHA256 for it could not be read (%s); it is checked by its size only", file, exc.detail)
        return None
    found = file_sha256(version, file)
    if found is None:
        logger.warning("download of %s: CivitAI lists no SHA256 for it; it is checked by its size only", file)
    return found

# One file's size in a catalog is its `size_gb` with three decimals: good to half a megabyte.
CATALOG_SIZE_SLACK = 1_000_000


def size_limit(catalog_size: int | None) -> int | None:
    """The most a download may bring for a file the catalog says is this large: a tenth more
    (a size written by hand, rounded), at least the slack of three decimals. None: no size."""
    if catalog_size is None:
        return None
    return catalog_size + max(CATALOG_SIZE_SLACK, catalog_size // 10)


def verify(fetched: Fetched, expected_sha256: str | None, catalog_size: int | None) -> None:
    """Refuse a downloaded file that is not the one asked for: another SHA256 than expected; with
    no SHA256 to check, a size far from the catalog's, or no size at all to check by."""
    if expected_sha256 is not None:
        if fetched.sha256 != expected_sha256:
            raise DownloadFailed(
                f"the downloaded file's SHA256 {fetched.sha256[:12]}… is not the expected {expected_sha256[:12]}…; nothing was kept",
                "hash_mismatch",
            )
        return
    if catalog_size is not None and abs(fetched.size - catalog_size) > CATALOG_SIZE_SLACK:
        raise DownloadFailed(f"the downloaded file has {fetched.size} bytes, the catalog says about {catalog_size}; nothing was kept", "size_mismatch")
    if not fetched.sized and catalog_size is None:
        raise DownloadFailed(
            "there is nothing to check this file by (no SHA256 from the catalog or CivitAI, no size from the catalog or "
            "the server); it was not placed: ask again once CivitAI can be reached",
            "unverifiable",
        )
