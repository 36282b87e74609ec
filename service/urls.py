"""URLs from the internet (pasted by people, named by CivitAI or a workflow), read the way a
browser reads them, or not at all."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit


def split_url(url: str) -> SplitResult | None:
    """The parts of a URL, None when Python cannot read it (its port included)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a port that is not one)
    except ValueError:
        return None
    return parts


def plain_authority(parts: SplitResult) -> bool:
    """False when the authority holds a user, `\\`, `@` or white space: browsers and Python may
    then read different hosts in it, so such a URL is not taken at all."""
    return parts.username is None and parts.password is None and not any(char in parts.netloc for char in "\\@ \t")


def origin_key(parts: SplitResult) -> tuple[str, str, int | None]:
    """(scheme, lower-cased host, explicit port) of a URL already split by `split_url`."""
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port
