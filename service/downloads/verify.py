"""Refusing a downloaded file that is not the one asked for."""

from __future__ import annotations

from .fetch import DownloadFailed, Fetched

# One file's size in a catalog is its `size_gb` with three decimals: good to half a megabyte.
CATALOG_SIZE_SLACK = 1_000_000


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
