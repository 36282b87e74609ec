"""The request pipeline: CORS preflights first, then the guard (key, body, readiness) inside one
error envelope.

It wraps every route's handler, the catch-all route's included (`no_route`: 404 and 405),
instead of being an aiohttp middleware: an application with any middleware pays for
aiohttp's middleware machinery on every request, a measurable part of the map's polled 304,
the service's busiest answer (bench/README.md)."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web

from ..errors import (
    Invalid,
    ServiceError,
    TooLarge,
    Unauthorized,
    Unavailable,
    UnsupportedMedia,
)
from .auth import key_matches, presented_key

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ALLOWED_METHODS = "GET, HEAD, POST, DELETE, OPTIONS"
ALLOWED_HEADERS = "X-API-Key, Authorization, Content-Type, If-None-Match, Accept-Encoding"
EXPOSED_HEADERS = "ETag, Retry-After"
EXTENSION_SCHEME = "chrome-extension://"
CHROME_EXTENSION_ID = re.compile(r"[a-p]{32}")  # Chrome writes extension ids as 32 letters a-p
# Routes that answer without the key and are told (request[AUTHENTICATED]) whether it was right.
KEY_OPTIONAL_PATHS = frozenset({"/api/health"})
# aiohttp 3.14 wants typed request keys (and warns on strings); older versions have none.
AUTHENTICATED: Any = web.RequestKey("authenticated", bool) if hasattr(web, "RequestKey") else "authenticated"
_HTTP_CODES = {
    HTTPStatus.NOT_FOUND: ("not_found", "There is nothing at this address."),
    HTTPStatus.METHOD_NOT_ALLOWED: ("method_not_allowed", "This address does not take that method."),
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: ("too_large", "The request body is too large."),
    HTTPStatus.BAD_REQUEST: ("bad_request", "The request is malformed."),
}


def not_ready() -> Unavailable:
    """The one answer of a route that needs the index while it is being built."""
    return Unavailable("The index is still being built; try again in a moment.", code="not_ready", retry_after=1)


def error_response(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    """The one error shape: {"detail": sentence, "code": machine_code}."""
    body = orjson.dumps({"detail": detail, "code": code})
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def request_pipeline(cors: CorsPolicy, api_key: str, max_body_bytes: int, index_ready: Callable[[], bool]) -> Callable[..., Handler]:
    """What wraps each route's handler: CORS preflights are answered; every other request passes
    the guard, and every failure becomes the error envelope (nothing leaks a traceback).

    The guard: every /api/ route needs the key, but the connection check, which is told
    whether the key is right; a route takes the `query` parameters it names and no other (None:
    any, for the catch-all); mutations take JSON bodies of bounded size or none; a route that
    `needs_index` answers 503 `not_ready` until the index is built."""
    expected = api_key.encode("utf-8")

    def guarded(handler: Handler, *, needs_index: bool = False, query: tuple[str, ...] | None = (), streams_body: bool = False) -> Handler:
        @functools.wraps(handler)
        async def pipeline(request: web.Request) -> web.StreamResponse:
            if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
                return cors.preflight(request)
            try:
                path = request.path
                if path in KEY_OPTIONAL_PATHS:  # always answers; a key in its URL is not taken
                    presented = presented_key(request)
                    request[AUTHENTICATED] = presented is not None and key_matches(presented, expected)
                elif path.startswith("/api/"):
                    if request.query_string and "key" in request.rel_url.query:
                        raise Invalid(
                            "The API key is never taken from the URL (URLs end up in logs and history); send it in an X-API-Key header.",
                            code="key_in_url",
                        )
                    presented = presented_key(request)
                    if presented is None:
                        raise Unauthorized("This route needs the API key in an X-API-Key header.", code="missing_api_key")
                    if not key_matches(presented, expected):
                        raise Unauthorized("The API key is not right.", code="bad_api_key")
                if request.query_string and query is not None:
                    _check_query(request, query)
                if request.method in MUTATING and not streams_body:
                    await _check_body(request, max_body_bytes)
                if needs_index and not index_ready():
                    raise not_ready()
                return await handler(request)
            except ServiceError as exc:
                return error_response(exc.status, exc.code, exc.detail, exc.headers())
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise
                code, detail = _HTTP_CODES.get(HTTPStatus(exc.status), ("http_error", exc.reason))
                return error_response(exc.status, code, detail, {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None)
            except ConnectionResetError:
                if request.transport is not None and not request.transport.is_closing():
                    return _unexpected(request)
                # The client left before its body was whole (aiohttp fails the read): its doing, not ours.
                # Nobody reads this answer; the access log says 400, and no traceback is written.
                logger.debug("%s %s: the client closed the connection before the request was whole", request.method, request.path)
                return error_response(HTTPStatus.BAD_REQUEST, "incomplete_request", "The connection closed before the request was whole.")
            except Exception:
                return _unexpected(request)

        return pipeline

    return guarded


def response_hook(cors: CorsPolicy) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """What every answer passes before its head is sent (`on_response_prepare`): the CORS
    headers, and the error envelope for the plain-text errors aiohttp answers itself for
    requests no route can take (CONNECT's authority form, `OPTIONS *`)."""

    async def on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
        cors.add_headers(request, response)
        if response.status >= 400 and isinstance(response, web.Response) and response.content_type == "text/plain":
            code, detail = _HTTP_CODES.get(HTTPStatus(response.status), ("http_error", response.reason))
            response.body = orjson.dumps({"detail": detail, "code": code})
            response.content_type = "application/json"

    return on_response_prepare


async def no_route(request: web.Request) -> web.StreamResponse:
    """The catch-all route's handler: 405, saying which methods, where another route takes the
    path; 404 otherwise (both in the envelope, since the pipeline wraps this too)."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not request.match_info.route.resource:
            allowed |= (await resource.resolve(request))[1]
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


def _unexpected(request: web.Request) -> web.Response:
    """Log the exception being handled, with its traceback; answer 500 in the envelope."""
    logger.exception("unexpected error answering %s %s", request.method, request.path)
    return error_response(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "Something went wrong inside the service; its log says what.")


def _check_query(request: web.Request, taken: tuple[str, ...]) -> None:
    """Every query parameter is one the route takes: a misspelt one (`?dry-run=true`) is a 400
    that names it, not silently ignored."""
    unknown = sorted(set(request.rel_url.query) - set(taken))
    if unknown:
        named = ", ".join(repr(name[:40]) for name in unknown[:5]) + (" …" if len(unknown) > 5 else "")
        takes = f"it takes only {', '.join(taken)}" if taken else "it takes none"
        raise Invalid(f"{request.method} {request.path[:100]} does not take the query parameter(s) {named}; {takes}.", code="unknown_parameter")


async def _check_body(request: web.Request, max_body_bytes: int) -> None:
    """No body, or a JSON one of bounded size: checked on the bytes read, so a chunked body counts too."""
    length = request.content_length
    if length is not None and length > max_body_bytes:
        raise TooLarge(f"The request body is larger than {max_body_bytes} bytes.")
    if not request.body_exists:
        return
    if request.content_type != "application/json":
        raise UnsupportedMedia("Requests that change the catalog take no body, or a JSON one; form posts are refused.")
    try:
        body = await request.read()  # bounded by client_max_size (MAX_BODY_BYTES), chunked or not
    except web.HTTPRequestEntityTooLarge:
        raise TooLarge(f"The request body is larger than {max_body_bytes} bytes.") from None
    if body.strip():
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError:
            raise Invalid("The request body says it is JSON but is not; send no body, or `{}`.", code="invalid_json") from None


class CorsPolicy:
    """CORS for Chrome extension pages and the configured origins; nothing for anyone else.

    Preflights are answered by the request pipeline; headers on real answers are added by
    `response_hook`, which also reaches streamed answers (the events stream).
    """

    def __init__(self, extra_origins: tuple[str, ...], extension_ids: tuple[str, ...] = ()) -> None:
        self.configured = frozenset(extra_origins)
        self.extension_ids = frozenset(extension_ids)  # empty: any well-formed extension id

    def allowed(self, origin: str | None) -> bool:
        """True for Chrome extension origins (of the pinned ids, if any) and the configured origins."""
        if origin is None:
            return False
        if origin in self.configured:
            return True
        extension_id = origin.removeprefix(EXTENSION_SCHEME)
        if extension_id == origin or not CHROME_EXTENSION_ID.fullmatch(extension_id):
            return False
        return not self.extension_ids or extension_id in self.extension_ids

    def preflight(self, request: web.Request) -> web.Response:
        """The answer to a preflight (OPTIONS with Access-Control-Request-Method)."""
        origin = request.headers.get("Origin")
        if not self.allowed(origin):
            response = error_response(HTTPStatus.FORBIDDEN, "origin_not_allowed", "This origin may not call the service.")
            response.headers["Vary"] = "Origin"
            return response
        return web.Response(
            status=HTTPStatus.NO_CONTENT,
            headers={
                "Access-Control-Allow-Origin": origin or "",
                "Access-Control-Allow-Methods": ALLOWED_METHODS,
                "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                "Access-Control-Max-Age": "600",
                "Vary": "Origin",
            },
        )

    def add_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        """Add Vary and, for allowed origins, the CORS headers to an answer (before it is sent)."""
        headers = response.headers
        vary = headers.get("Vary")
        if vary is None:
            headers["Vary"] = "Origin"
        elif "Origin" not in vary:
            headers["Vary"] = f"{vary}, Origin"
        origin = request.headers.get("Origin")
        if origin is not None and self.allowed(origin) and "Access-Control-Allow-Origin" not in headers:
            headers["Access-Control-Allow-Origin"] = origin
            headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
