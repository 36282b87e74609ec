"""The request pipeline: CORS outermost, then one error envelope, then the guard (key, body)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from .auth import key_matches, presented_key
from .errors import ServiceError, TooLarge, Unauthorized, UnsupportedMedia

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ALLOWED_METHODS = "GET, HEAD, POST, DELETE, OPTIONS"
ALLOWED_HEADERS = "X-API-Key, Authorization, Content-Type, If-None-Match, Accept-Encoding"
EXPOSED_HEADERS = "ETag, Retry-After"
_HTTP_CODES = {
    HTTPStatus.NOT_FOUND: ("not_found", "There is nothing at this address."),
    HTTPStatus.METHOD_NOT_ALLOWED: ("method_not_allowed", "This address does not take that method."),
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: ("too_large", "The request body is too large."),
    HTTPStatus.BAD_REQUEST: ("bad_request", "The request is malformed."),
}


def error_response(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    """The one error shape: {"detail": sentence, "code": machine_code}."""
    body = orjson.dumps({"detail": detail, "code": code})
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into the error envelope; nothing leaks a traceback."""
    try:
        return await handler(request)
    except ServiceError as exc:
        return error_response(exc.status, exc.code, exc.detail, exc.headers())
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code, detail = _HTTP_CODES.get(HTTPStatus(exc.status), ("http_error", exc.reason))
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(exc.status, code, detail, headers)
    except Exception:
        logger.exception("unexpected error answering %s %s", request.method, request.path)
        return error_response(
            HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "Something went wrong inside the service; its log says what."
        )


def guard_middleware(api_key: str, max_body_bytes: int) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Every /api/ route needs the key; mutations take JSON bodies of bounded size or none."""
    expected = api_key.encode("utf-8")

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/api/"):
            presented = presented_key(request)
            if presented is None:
                raise Unauthorized("This route needs the API key in an X-API-Key header.", code="missing_api_key")
            if not key_matches(presented, expected):
                raise Unauthorized("The API key is not right.", code="bad_api_key")
        if request.method in MUTATING:
            _check_body(request, max_body_bytes)
        return await handler(request)

    return guard


def _check_body(request: web.Request, max_body_bytes: int) -> None:
    length = request.content_length
    if length is not None and length > max_body_bytes:
        raise TooLarge(f"The request body is larger than {max_body_bytes} bytes.")
    has_body = bool(length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if has_body and request.content_type != "application/json":
        raise UnsupportedMedia("Requests that change the catalog take no body, or a JSON one; form posts are refused.")


def cors_middleware(extra_origins: tuple[str, ...]) -> Callable[..., Awaitable[web.StreamResponse]]:
    """CORS for Chrome extension pages and the configured origins; nothing for anyone else."""
    configured = frozenset(extra_origins)

    def allowed(origin: str | None) -> bool:
        return origin is not None and (origin.startswith("chrome-extension://") or origin in configured)

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            if not allowed(origin):
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
        response = await handler(request)
        if not response.prepared:
            _add_vary(response, "Origin")
            if allowed(origin):
                response.headers["Access-Control-Allow-Origin"] = origin or ""
                response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        return response

    return cors


def _add_vary(response: web.StreamResponse, value: str) -> None:
    current = response.headers.get("Vary")
    response.headers["Vary"] = f"{current}, {value}" if current else value


class QuietAccessLogger(AbstractAccessLogger):
    """Access log that keeps polling out of sight: reads at DEBUG, changes and errors at INFO."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        level = logging.INFO if request.method in MUTATING or response.status >= 400 else logging.DEBUG
        if self.logger.isEnabledFor(level):
            self.logger.log(level, "%s %s %d %.1f ms", request.method, request.path, response.status, time * 1000)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)
