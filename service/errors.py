"""Domain errors. Handlers raise these; one middleware turns them into HTTP answers."""

from __future__ import annotations

from http import HTTPStatus


class ServiceError(Exception):
    """An error with a status, a machine code and a sentence for a person."""

    status: HTTPStatus = HTTPStatus.INTERNAL_SERVER_ERROR
    code: str = "internal_error"

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code

    def headers(self) -> dict[str, str]:
        """Extra response headers this error carries."""
        return {}


class Invalid(ServiceError):
    status = HTTPStatus.BAD_REQUEST
    code = "invalid"


class Unauthorized(ServiceError):
    status = HTTPStatus.UNAUTHORIZED
    code = "unauthorized"


class NotFound(ServiceError):
    status = HTTPStatus.NOT_FOUND
    code = "not_found"


class Conflict(ServiceError):
    status = HTTPStatus.CONFLICT
    code = "conflict"


class TooLarge(ServiceError):
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    code = "too_large"


class UnsupportedMedia(ServiceError):
    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    code = "unsupported_media_type"


class Unprocessable(ServiceError):
    """The input is well formed but cannot be acted on (e.g. a model type ComfyUI has no folder for)."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY
    code = "unprocessable"


class Unavailable(ServiceError):
    """This service cannot act right now (e.g. a catalog on disk does not parse)."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    code = "unavailable"

    def __init__(self, detail: str, *, code: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(detail, code=code)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


class UpstreamError(ServiceError):
    """CivitAI answered with something we cannot use."""

    status = HTTPStatus.BAD_GATEWAY
    code = "upstream_error"


class UpstreamTimeout(ServiceError):
    status = HTTPStatus.GATEWAY_TIMEOUT
    code = "upstream_timeout"


class ConfigError(Exception):
    """A setting is wrong; the message is one sentence naming the variable."""
