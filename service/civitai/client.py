"""The CivitAI JSON client: every way a request can go wrong mapped to a clear error.

Calls pass the shared rate-limit gate first. A version CivitAI's primary origin does not
know (404) is asked of the second origin (CIVITAI_FALLBACK_URL, civitai.red by default):
some versions exist only there.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import orjson
from yarl import URL

from .. import PROGRAM, __version__, workers
from ..errors import NotFound, Unavailable, UpstreamError, UpstreamTimeout
from ..map.entry import json_id
from .ratelimit import RateGate, parse_retry_after

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_LIST_BYTES = 64 * 1024 * 1024  # 100 models with their versions, files and images
USER_AGENT = f"{PROGRAM}/{__version__}"
# The longest a request from a person (a click) waits at the rate-limit gate before being
# told when to retry; background work waits as long as it takes.
INTERACTIVE_WAIT_S = 5.0
MAX_REDIRECTS = 3  # for images: each hop is checked against the hosts images may come from
# CivitAI's own hosts: the only ones besides CIVITAI_BASE_URL's that may see the CivitAI key.
CIVITAI_HOSTS = frozenset({"civitai.com", "civitai.red"})
# A body read down to what is needed (`get_reduced`) is parsed on the event loop up to this
# size; a larger one is parsed and reduced in a worker process. orjson holds the GIL for the
# whole parse, so a thread would not spare the loop, and a body of many small objects parses
# slowly (bench/README.md, "Why the code is as it is").
INLINE_PARSE_BYTES = 64 * 1024
_PARSES_AT_ONCE = 2  # worker processes parsing bodies at once: each holds a body's parse in memory
T = TypeVar("T")


class BadBody(ValueError):
    """A body that does not parse, or not into anything usable; raised by reducers."""


def parse_and_reduce(raw: bytes, reduce: Callable[[Any], T]) -> T:
    """Parse JSON and keep only what `reduce` takes from it (pure; may run in a worker process)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadBody("not JSON") from exc
    return reduce(body)


def newest_version_id(body: object) -> int:
    """The newest version of a model, from CivitAI's `GET /api/v1/models/{id}` (its versions
    come newest first). Pure, so a large answer is read in a worker process."""
    versions = body.get("modelVersions") if isinstance(body, dict) else None
    if not isinstance(versions, list):
        raise BadBody("a model without a list of versions")
    for version in versions:
        version_id = version.get("id") if isinstance(version, dict) else None
        if json_id(version_id) is not None:
            return version_id
    raise BadBody("a model with no version")


def make_session(timeout_s: float) -> aiohttp.ClientSession:
    """The one outbound session of the app, with connect and total timeouts."""
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(10.0, timeout_s))
    return aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": USER_AGENT}, raise_for_status=False)


class CivitaiClient:
    """Reads model versions from CivitAI (or whatever CIVITAI_BASE_URL points at)."""

    def __init__(
        self, base_url: str, api_key: str | None, timeout_s: float, *, fallback_url: str = "", gate: RateGate | None = None
    ) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._timeout_s = timeout_s
        self.base_url = base_url.rstrip("/")
        self._fallback_url = fallback_url.rstrip("/")
        self._api_key = api_key
        self.gate = gate or RateGate()
        self._stopping = False
        self._parse_slots = asyncio.Semaphore(_PARSES_AT_ONCE)

    def headers_for(self, origin_url: str) -> dict[str, str]:
        """Request headers for an origin: the CivitAI key only for CIVITAI_BASE_URL's host and CivitAI's own hosts."""
        headers = {"Accept": "application/json"}
        host = (urlsplit(origin_url).hostname or "").lower()
        if self._api_key and (host in CIVITAI_HOSTS or host == (urlsplit(self.base_url).hostname or "").lower()):
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    async def open(self) -> None:
        """Create the session (inside the running loop)."""
        self._session = make_session(self._timeout_s)

    async def close(self) -> None:
        """Close the session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def stop(self) -> None:
        """At shutdown: requests still waiting on CivitAI end now, answered 503 `shutting_down`."""
        self._stopping = True
        await self.close()

    async def model_version(
        self, version_id: int, *, longest_wait_s: float = INTERACTIVE_WAIT_S, reduce: Callable[[Any], Any] | None = None
    ) -> tuple[Any, str]:
        """`GET /api/v1/model-versions/{id}` as a dict (or what `reduce` keeps of it, read as
        `get_reduced` reads), and the origin that answered (the fallback's after a 404 from the
        primary); or a domain error saying what went wrong."""
        try:
            return await self._model_version(self.base_url, version_id, longest_wait_s, reduce), self.base_url
        except NotFound:
            if not self._fallback_url:
                raise
        try:
            body = await self._model_version(self._fallback_url, version_id, longest_wait_s, reduce)
        except NotFound:
            raise NotFound(
                f"Model version {version_id} is not on CivitAI (nor on {urlsplit(self._fallback_url).hostname}).",
                code="civitai_not_found",
            ) from None
        logger.info("version %d was found on %s only", version_id, self._fallback_url)
        return body, self._fallback_url

    async def _model_version(self, origin_url: str, version_id: int, longest_wait_s: float, reduce: Callable[[Any], Any] | None) -> Any:
        path, what = f"/api/v1/model-versions/{version_id}", f"model version {version_id}"
        if reduce is not None:
            return await self.get_reduced(origin_url, path, None, what, reduce, longest_wait_s=longest_wait_s)
        return await self.get_json(origin_url, path, None, what, longest_wait_s=longest_wait_s)

    async def newest_version(self, model_id: int) -> int:
        """The id of a model's newest version (`GET /api/v1/models/{id}`), asked of the fallback
        origin too after a 404."""
        path, what = f"/api/v1/models/{model_id}", f"model {model_id}"
        try:
            return await self.get_reduced(self.base_url, path, None, what, newest_version_id, longest_wait_s=INTERACTIVE_WAIT_S)
        except NotFound:
            if not self._fallback_url:
                raise
        return await self.get_reduced(self._fallback_url, path, None, what, newest_version_id, longest_wait_s=INTERACTIVE_WAIT_S)

    async def models(self, model_ids: list[int]) -> dict[str, Any]:
        """`GET /api/v1/models?ids=...` for up to 100 models (background work: waits at the gate as long as it takes)."""
        params = {"ids": ",".join(str(model_id) for model_id in model_ids), "limit": str(len(model_ids)), "nsfw": "true"}
        return await self.get_json(
            self.base_url, "/api/v1/models", params, f"{len(model_ids)} models", longest_wait_s=math.inf, max_bytes=MAX_LIST_BYTES
        )

    async def get_json(
        self, origin_url: str, path: str, params: dict[str, str] | None, what: str, *, longest_wait_s: float, max_bytes: int = MAX_BODY_BYTES
    ) -> dict[str, Any]:
        """One GET through the rate-limit gate, its JSON object, or a domain error saying what went wrong."""
        body = _loads(await self._request("GET", origin_url, path, params, None, what, longest_wait_s, max_bytes))
        if not isinstance(body, dict):
            raise UpstreamError(f"CivitAI answered with JSON that is not {what}.", code="upstream_bad_body")
        return body

    async def get_reduced(
        self, origin_url: str, path: str, params: dict[str, str] | None, what: str, reduce: Callable[[Any], T], *, longest_wait_s: float
    ) -> T:
        """One GET through the rate-limit gate, read down to what `reduce` (a picklable, pure
        function) keeps of its JSON. A large body is parsed and reduced in a worker process, so
        a hostile answer costs the event loop nothing; `BadBody` from either is a bad body."""
        raw = await self._request("GET", origin_url, path, params, None, what, longest_wait_s, MAX_BODY_BYTES)
        try:
            if len(raw) <= INLINE_PARSE_BYTES:
                return parse_and_reduce(raw, reduce)
            async with self._parse_slots:
                return await workers.in_worker_process(parse_and_reduce, raw, reduce)
        except BadBody:
            raise UpstreamError(f"CivitAI answered with something that is not {what}.", code="upstream_bad_body") from None

    async def post_json_list(
        self, origin_url: str, path: str, payload: Any, what: str, *, longest_wait_s: float = math.inf, max_bytes: int = MAX_LIST_BYTES
    ) -> list[Any]:
        """One POST of a JSON body through the rate-limit gate (background work: waits as long as it takes), its JSON array."""
        body = _loads(await self._request("POST", origin_url, path, None, payload, what, longest_wait_s, max_bytes))
        if not isinstance(body, list):
            raise UpstreamError(f"CivitAI answered with JSON that is not a list of {what}.", code="upstream_bad_body")
        return body

    async def fetch_image(self, url: str, allowed: Callable[[str], bool], *, max_bytes: int, longest_wait_s: float = math.inf) -> bytes:
        """The bytes of an image from CivitAI's image host, through the rate-limit gate, sent no
        key. Redirects are followed by hand, at most MAX_REDIRECTS, and only to URLs `allowed`
        takes; a body over `max_bytes` is refused."""
        if self._session is None:
            raise RuntimeError("CivitaiClient.open() was not called")
        for _ in range(MAX_REDIRECTS + 1):
            if not allowed(url):
                raise UpstreamError("CivitAI's image is somewhere this service does not fetch from.", code="upstream_bad_body")
            await self.gate.wait(longest_wait_s)
            try:
                async with self._session.get(url, allow_redirects=False, headers={"Accept": "image/*"}) as response:
                    if response.status in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                        try:
                            url = str(response.url.join(URL(response.headers["Location"])))
                        except ValueError:
                            raise UpstreamError("CivitAI's image redirected to something that is not a URL.", code="upstream_bad_body") from None
                        continue
                    if response.status == 429:
                        self.gate.limited(parse_retry_after(response.headers.get("Retry-After")))
                        raise self.gate.refusal(self.gate.remaining())
                    _raise_for_status(response, "an image")
                    return await _read_limited(response, max_bytes)
            except TimeoutError:
                raise UpstreamTimeout("CivitAI's image host did not answer in time.") from None
            except aiohttp.ClientError as exc:
                raise UpstreamError(f"CivitAI's image host could not be reached ({type(exc).__name__}).", code="upstream_unreachable") from None
        raise UpstreamError("CivitAI's image redirected too many times.", code="upstream_bad_body")

    async def _request(
        self,
        method: str,
        origin_url: str,
        path: str,
        params: dict[str, str] | None,
        payload: Any,
        what: str,
        longest_wait_s: float,
        max_bytes: int,
    ) -> bytes:
        """The body of one request through the rate-limit gate, or a domain error."""
        if self._stopping:
            raise _stopping_error()
        if self._session is None:
            raise RuntimeError("CivitaiClient.open() was not called")
        await self.gate.wait(longest_wait_s)
        headers = self.headers_for(origin_url)
        data = None
        if payload is not None:
            data = orjson.dumps(payload)
            headers["Content-Type"] = "application/json"
        try:
            async with self._session.request(method, f"{origin_url}{path}", params=params, data=data, headers=headers) as response:
                if response.status == 429:
                    self.gate.limited(parse_retry_after(response.headers.get("Retry-After")))
                    raise self.gate.refusal(self.gate.remaining())
                _raise_for_status(response, what)
                raw = await _read_limited(response, max_bytes)
        except TimeoutError:
            raise UpstreamTimeout("CivitAI did not answer in time; try again in a moment.") from None
        except aiohttp.ClientPayloadError:  # it answered, but the body does not decode (broken gzip/deflate)
            raise UpstreamError("CivitAI answered with a body that does not decode.", code="upstream_bad_body") from None
        except aiohttp.ClientError as exc:
            if self._stopping:
                raise _stopping_error() from None
            logger.warning("CivitAI request for %s failed: %s", what, type(exc).__name__)
            raise UpstreamError("CivitAI could not be reached; try again in a moment.", code="upstream_unreachable") from None
        return raw


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UpstreamError("CivitAI answered with something that is not JSON.", code="upstream_bad_body") from None


def _stopping_error() -> Unavailable:
    return Unavailable("The service is stopping; try again in a moment.", code="shutting_down", retry_after=5)


def _raise_for_status(response: aiohttp.ClientResponse, what: str) -> None:
    status = response.status
    if status == 200:
        return
    if status == 404:
        raise NotFound(f"{what[:1].upper()}{what[1:]} is not on CivitAI.", code="civitai_not_found")
    if status in (401, 403):
        raise UpstreamError(
            "CivitAI refused the request: this version needs a CivitAI API key "
            "(set CIVITAI_API_KEY) or the key set is not allowed to see it.",
            code="civitai_key_required",
        )
    if status >= 500:
        raise UpstreamError(f"CivitAI had an error (HTTP {status}); try again later.", code="civitai_error")
    raise UpstreamError(f"CivitAI answered with an unexpected HTTP {status}.", code="civitai_unexpected_status")


async def _read_limited(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    if (response.content_length or 0) > max_bytes:
        raise UpstreamError("CivitAI's answer is too large to be what was asked for.", code="upstream_bad_body")
    raw = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        raw += chunk
        if len(raw) > max_bytes:
            raise UpstreamError("CivitAI's answer is too large to be what was asked for.", code="upstream_bad_body")
    return bytes(raw)
