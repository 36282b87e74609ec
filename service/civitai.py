"""The CivitAI client: one request, every way it can go wrong mapped to a clear error."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import orjson

from . import __version__
from .errors import NotFound, Unavailable, UpstreamError, UpstreamTimeout

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024 * 1024
DEFAULT_RETRY_AFTER_S = 30
USER_AGENT = f"comfy-catalog-service/{__version__}"


def make_session(timeout_s: float) -> aiohttp.ClientSession:
    """The one outbound session of the app, with connect and total timeouts."""
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(10.0, timeout_s))
    return aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": USER_AGENT}, raise_for_status=False)


class CivitaiClient:
    """Reads model versions from CivitAI (or whatever CIVITAI_BASE_URL points at)."""

    def __init__(self, base_url: str, api_key: str | None, timeout_s: float) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._timeout_s = timeout_s
        self._base_url = base_url.rstrip("/")
        self._headers = {"Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"

    async def open(self) -> None:
        """Create the session (inside the running loop)."""
        self._session = make_session(self._timeout_s)

    async def close(self) -> None:
        """Close the session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def model_version(self, version_id: int) -> dict[str, Any]:
        """`GET /api/v1/model-versions/{id}` as a dict, or a domain error saying what went wrong."""
        if self._session is None:
            raise RuntimeError("CivitaiClient.open() was not called")
        url = f"{self._base_url}/api/v1/model-versions/{version_id}"
        try:
            async with self._session.get(url, headers=self._headers) as response:
                _raise_for_status(response, version_id)
                raw = await _read_limited(response)
        except TimeoutError:
            raise UpstreamTimeout("CivitAI did not answer in time; try again in a moment.") from None
        except aiohttp.ClientPayloadError:  # it answered, but the body does not decode (broken gzip/deflate)
            raise UpstreamError("CivitAI answered with a body that does not decode.", code="upstream_bad_body") from None
        except aiohttp.ClientError as exc:
            logger.warning("CivitAI request for version %d failed: %s", version_id, type(exc).__name__)
            raise UpstreamError("CivitAI could not be reached; try again in a moment.", code="upstream_unreachable") from None
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamError("CivitAI answered with something that is not JSON.", code="upstream_bad_body") from None
        if not isinstance(body, dict):
            raise UpstreamError("CivitAI answered with JSON that is not a model version.", code="upstream_bad_body")
        return body


def _raise_for_status(response: aiohttp.ClientResponse, version_id: int) -> None:
    status = response.status
    if status == 200:
        return
    if status == 404:
        raise NotFound(f"Model version {version_id} is not on CivitAI.", code="civitai_not_found")
    if status in (401, 403):
        raise UpstreamError(
            "CivitAI refused the request: this version needs a CivitAI API key "
            "(set CIVITAI_API_KEY) or the key set is not allowed to see it.",
            code="civitai_key_required",
        )
    if status == 429:
        raise Unavailable(
            "CivitAI is limiting requests right now; try again later.",
            code="civitai_rate_limited",
            retry_after=_retry_after(response.headers.get("Retry-After")),
        )
    if status >= 500:
        raise UpstreamError(f"CivitAI had an error (HTTP {status}); try again later.", code="civitai_error")
    raise UpstreamError(f"CivitAI answered with an unexpected HTTP {status}.", code="civitai_unexpected_status")


async def _read_limited(response: aiohttp.ClientResponse) -> bytes:
    if (response.content_length or 0) > MAX_BODY_BYTES:
        raise UpstreamError("CivitAI's answer is too large to be a model version.", code="upstream_bad_body")
    raw = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise UpstreamError("CivitAI's answer is too large to be a model version.", code="upstream_bad_body")
    return bytes(raw)


def _retry_after(value: str | None) -> int:
    if value and value.strip().isdigit():
        return max(1, min(int(value.strip()), 3600))
    return DEFAULT_RETRY_AFTER_S

