"""Small builders of OpenAPI schemas, and the answers many routes share."""

from __future__ import annotations

from typing import Any

from ...map.entry import MAX_ID
from ..params import FALSE_WORDS, MAX_POINT_IDS, TRUE_WORDS

Schema = dict[str, Any]

JSON = "application/json"
SSE = "text/event-stream"
SECURED: list[dict[str, list[str]]] = [{"apiKey": []}, {"bearer": []}]
KEY_IN_URL = "the API key was put in the URL (`key_in_url`): it is only taken from a header"
UNKNOWN_PARAMETER = "a query parameter the route does not take (`unknown_parameter`), named in `detail`"


# ---- small builders -------------------------------------------------------------------------------


def ref(name: str) -> Schema:
    """A reference to a schema under components/schemas."""
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict[str, Schema], *, required: tuple[str, ...] | None = None, closed: bool = False) -> Schema:
    """An object schema; every property is required unless `required` says otherwise."""
    schema: Schema = {"type": "object", "required": list(properties if required is None else required), "properties": properties}
    if closed:
        schema["additionalProperties"] = False
    return schema


def string(description: str | None = None, **extra: Any) -> Schema:
    schema: Schema = {"type": "string", **extra}
    if description:
        schema["description"] = description
    return schema


def const(value: str) -> Schema:
    return {"type": "string", "const": value}


def nullable(type_name: str, description: str | None = None) -> Schema:
    schema: Schema = {"type": [type_name, "null"]}
    if description:
        schema["description"] = description
    return schema


def header(description: str, **schema: Any) -> Schema:
    return {"description": description, "schema": {"type": "string", **schema}}


def json_response(
    description: str, schema: Schema, headers: dict[str, Schema] | None = None, links: dict[str, Schema] | None = None
) -> Schema:
    """A response with a JSON body."""
    response: Schema = {"description": description, "content": {JSON: {"schema": schema}}}
    if headers:
        response["headers"] = headers
    if links:
        response["links"] = links
    return response


def link(operation_id: str, description: str, **parameters: str) -> Schema:
    """An OpenAPI link: what can be done next with values from this answer."""
    return {"operationId": operation_id, "description": description, "parameters": parameters}


RETRY_AFTER = header("Seconds to wait before trying again.", pattern="^[0-9]+$")


def error(description: str, *, retry_after: bool = False) -> Schema:
    """An answer in the error envelope; `description` names the codes it can carry."""
    return json_response(description, ref("Error"), {"Retry-After": RETRY_AFTER} if retry_after else None)


def one_of(*names: str) -> Schema:
    return {"oneOf": [ref(name) for name in names]}


def operation(
    operation_id: str,
    summary: str,
    responses: dict[str, Schema],
    *,
    description: str | None = None,
    parameters: list[Schema] | None = None,
    security: list[dict[str, list[str]]] | None = SECURED,
    tag: str = "catalog",
    body: Schema | None = None,
    any_query: bool = False,
) -> Schema:
    """One operation; /api/ routes pass the default `security`, the probes pass None."""
    op: Schema = {"operationId": operation_id, "summary": summary, "tags": [tag]}
    if description:
        op["description"] = description
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    op["security"] = security if security is not None else []
    refusals = "; or ".join(([] if any_query else [UNKNOWN_PARAMETER]) + ([KEY_IN_URL] if security is SECURED else []))
    if refusals and "400" in responses:
        responses["400"] = {**responses["400"], "description": f"{responses['400']['description'].rstrip('.')}; or {refusals}."}
    elif refusals:
        responses["400"] = error(f"{refusals[:1].upper()}{refusals[1:]}.")
    op["responses"] = responses
    return op


# ---- shared answers -------------------------------------------------------------------------------

UNAUTHORIZED = error("The API key is missing (`missing_api_key`) or wrong (`bad_api_key`).")
NOT_READY = error("The index is still being built (`not_ready`); try again after Retry-After.", retry_after=True)
TOO_LARGE = error("The request body is larger than MAX_BODY_BYTES (`too_large`).")
UNSUPPORTED_MEDIA = error("The request has a body that is not JSON (`unsupported_media_type`); send none.")
CATALOG_BUSY = error("The catalogs kept changing while the change was being saved (`catalog_busy`); nothing was written.")
WRITE_FAILED = error("The catalog could not be saved (`write_failed`); nothing was lost.", retry_after=True)
ROUTE_NOT_FOUND = "there is nothing at this address (`not_found`, e.g. an empty path segment)"


VERSION_ID = {
    "name": "version_id",
    "in": "path",
    "required": True,
    "description": "A CivitAI model-version id, as in CivitAI's URLs (`?modelVersionId=`). Anything else is answered 400.",
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
    "example": 2514310,
}


def ids_parameter(name: str, what: str) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "style": "form",
        "explode": False,
        "description": f"Comma-separated {what} ids (at most {MAX_POINT_IDS}). With `versions` and/or `models` the answer "
        "holds only those versions (and every version of those models) and carries no ETag.",
        "schema": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": MAX_ID}, "maxItems": MAX_POINT_IDS},
    }


def switch_parameter(name: str, description: str) -> Schema:
    """A yes/no query parameter, with the words `params.switch` takes."""
    words = [word for pair in zip(TRUE_WORDS, FALSE_WORDS) for word in pair]
    return {"name": name, "in": "query", "required": False, "description": description, "schema": {"type": "string", "enum": words}}
