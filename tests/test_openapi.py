"""The published OpenAPI document: it names exactly the app's routes, is valid 3.1, and real answers fit it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import ClientResponse, web
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator

from service.http.app import create_app
from service.http.openapi import DOCUMENT_BYTES, openapi_document, openapi_json
from service.http.routes import ROUTES
from service.settings import Settings

from .conftest import StartClient
from .helpers import (
    API_KEY,
    AUTH,
    MAP,
    catalog,
    entry,
    eventually,
    next_event,
    touch,
    write_json,
)

DOC = openapi_document()
OPENAPI_PATH = "/api/openapi.json"
EVENTS = "/api/admin/models/civitai-map/events"
SKIPPED_METHODS = {"HEAD", "OPTIONS", "*"}  # "*": the catch-all route, which answers 404 and 405
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def with_openapi_route(app: web.Application) -> web.Application:
    """Register GET /api/openapi.json when service/app.py does not (yet) do it itself."""
    if ("GET", OPENAPI_PATH) not in app_operations(app):
        app.router.add_get(OPENAPI_PATH, openapi_json)
    return app


def app_operations(app: web.Application) -> set[tuple[str, str]]:
    """(METHOD, path template) of every route; aiohttp's `{name}` is already OpenAPI's `{name}`."""
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method not in SKIPPED_METHODS and route.resource is not None
    }


def documented_operations() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in DOC["paths"].items() for method in item if method in HTTP_METHODS}


def response_spec(method: str, path: str, status: int) -> dict[str, Any]:
    responses = DOC["paths"][path][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {path} answered {status}, which is not documented"
    return responses[str(status)]


def validate(schema: dict[str, Any], value: Any) -> None:
    """Validate against a schema of the document, its #/components/... references resolved."""
    Draft202012Validator({**schema, "components": DOC["components"]}).validate(value)


async def assert_conforms(response: ClientResponse, method: str, path: str) -> Any:
    """The answer's status, content type, headers and body are the ones documented; returns the body."""
    spec = response_spec(method, path, response.status)
    for name in spec.get("headers", {}):
        if name in response.headers:
            validate(spec["headers"][name]["schema"], response.headers[name])
    if "content" not in spec:
        assert not await response.read()
        return None
    assert response.content_type in spec["content"], f"{response.content_type} is not documented for {method} {path}"
    body = orjson.loads(await response.read())
    validate(spec["content"][response.content_type]["schema"], body)
    return body


# ---- (a) the document and the app name the same operations ---------------------------------------


def test_every_route_of_the_app_is_documented(settings: Settings) -> None:
    missing = app_operations(create_app(settings, API_KEY)) - documented_operations()
    assert not missing, f"routes without documentation: {sorted(missing)}"


def test_every_documented_operation_is_routed(settings: Settings) -> None:
    app = with_openapi_route(create_app(settings, API_KEY))
    unrouted = documented_operations() - app_operations(app)
    assert not unrouted, f"documented but not routed: {sorted(unrouted)}"


def test_path_parameters_match_the_route_placeholders() -> None:
    for path, item in DOC["paths"].items():
        placeholders = {part[1:-1] for part in path.split("/") if part.startswith("{")}
        for method, op in item.items():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == placeholders, f"{method.upper()} {path}"


def test_query_parameters_are_the_ones_each_route_takes() -> None:
    for route in ROUTES:
        op = DOC["paths"][route.path][route.method.lower()]
        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
        assert declared == set(route.query or ()), f"{route.method} {route.path}"
        refusal = "unknown_parameter" in op["responses"].get("400", {}).get("description", "")
        assert refusal == (route.query is not None), f"{route.method} {route.path}"


# ---- (b) it is valid OpenAPI 3.1, with the promised security and error shape ---------------------


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOC["openapi"] == "3.1.0"
    errors = [error.message for error in OpenAPIV31SpecValidator(DOC).iter_errors()]
    assert errors == []


def test_every_api_route_needs_the_key_and_the_probes_do_not() -> None:
    schemes = DOC["components"]["securitySchemes"]
    assert schemes["apiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["bearer"]["type"] == "http" and schemes["bearer"]["scheme"] == "bearer"
    assert DOC["servers"] == [{"url": "/"}]
    for method, path in documented_operations():
        security = DOC["paths"][path][method.lower()]["security"]
        if path == "/api/health":  # the key is optional: the answer says whether it was right
            assert security == [{}, {"apiKey": []}, {"bearer": []}]
            assert "401" not in DOC["paths"][path]["get"]["responses"]
        elif path.startswith("/api/"):
            assert {"apiKey": []} in security and {"bearer": []} in security, f"{method} {path}"
            assert "401" in DOC["paths"][path][method.lower()]["responses"], f"{method} {path}"
        else:
            assert security == [], f"{method} {path}"
    assert all(scheme["in"] != "query" for scheme in schemes.values() if "in" in scheme)  # never a key in a URL


def test_every_error_answer_uses_the_error_envelope() -> None:
    error = DOC["components"]["schemas"]["Error"]
    assert error["required"] == ["detail", "code"]
    assert {name: prop["type"] for name, prop in error["properties"].items()} == {"detail": "string", "code": "string"}
    for method, path in documented_operations():
        if path == "/ready":  # its 503 is the readiness report itself
            continue
        for status, response in DOC["paths"][path][method.lower()]["responses"].items():
            if int(status) >= 400:
                assert response["content"] == {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}, f"{method} {path} {status}"


def test_the_document_is_built_once_and_handed_out_as_copies() -> None:
    first = openapi_document()
    first["paths"].clear()
    assert openapi_document() == DOC == orjson.loads(DOCUMENT_BYTES)


# ---- (c) real answers fit the documented schemas -------------------------------------------------


@pytest.fixture
def some_catalog(catalog_dir: Path, models_dir: Path) -> None:
    write_json(
        catalog_dir / "models.json",
        catalog(
            entry(101, "on_disk.safetensors", model_id=7),
            entry(102, "missing.safetensors", model_id=7, base_model=None),
            entry(103, "no_model.safetensors", civitai_model_id=None),
        ),
    )
    write_json(catalog_dir / "loras.json", catalog(entry(201, "style.safetensors", "loras"), category="sdxl_loras"))
    touch(models_dir / "checkpoints" / "on_disk.safetensors")


@pytest.mark.usefixtures("some_catalog")
async def test_map_answers_fit_the_document(start: StartClient) -> None:
    client = await start()
    full = await client.get(MAP, headers={**AUTH, "Accept-Encoding": "identity"})
    body = await assert_conforms(full, "GET", MAP)
    assert set(body["by_version"]) == {"101", "102", "103", "201"}
    assert {item["status"] for item in body["by_version"].values()} == {"present", "missing"}
    gzipped = await client.get(MAP, headers={**AUTH, "Accept-Encoding": "gzip"})
    assert gzipped.headers["Content-Encoding"] == "gzip"
    await assert_conforms(gzipped, "GET", MAP)
    await assert_conforms(await client.get(MAP, headers=AUTH, params={"versions": "101,201", "models": "7"}), "GET", MAP)
    not_modified = await client.get(MAP, headers={**AUTH, "Accept-Encoding": "identity", "If-None-Match": full.headers["ETag"]})
    assert not_modified.status == 304
    await assert_conforms(not_modified, "GET", MAP)
    assert (await assert_conforms(await client.get(MAP, headers=AUTH, params={"versions": "x"}), "GET", MAP))["code"] == "invalid_ids"
    assert (await assert_conforms(await client.get(MAP), "GET", MAP))["code"] == "missing_api_key"


async def test_add_without_the_key_fits_the_document(start: StartClient) -> None:
    client = await start()
    path = "/api/admin/civitai/add/{version_id}"
    missing = await assert_conforms(await client.post("/api/admin/civitai/add/123"), "POST", path)
    assert missing["code"] == "missing_api_key"
    wrong = await assert_conforms(await client.post("/api/admin/civitai/add/123", headers={"X-API-Key": "x" * 24}), "POST", path)
    assert wrong["code"] == "bad_api_key"
    assert (await assert_conforms(await client.post("/api/admin/civitai/add/abc", headers=AUTH), "POST", path))["code"] == "invalid_version_id"


@pytest.mark.usefixtures("some_catalog")
async def test_probes_fit_the_document(start: StartClient) -> None:
    client = await start()
    assert (await assert_conforms(await client.get("/health"), "GET", "/health")) == {"status": "ok"}
    connection = await assert_conforms(await client.get("/api/health", headers=AUTH), "GET", "/api/health")
    assert connection["authenticated"] is True
    ready = await assert_conforms(await client.get("/ready"), "GET", "/ready")
    assert ready["ready"] is True


async def test_ready_while_a_catalog_is_unusable_fits_the_document(start: StartClient, catalog_dir: Path) -> None:
    (catalog_dir / "models.json").write_text("{not json")
    client = await start(wait_ready=False)

    async def catalog_judged() -> bool:
        return (await (await client.get("/ready")).json())["catalogs"].get("models", {}).get("state") == "unusable"

    await eventually(catalog_judged, what="models.json judged unusable")
    response = await client.get("/ready")
    assert response.status == 503
    assert (await assert_conforms(response, "GET", "/ready"))["catalogs"]["models"]["reason"]


@pytest.mark.usefixtures("some_catalog")
async def test_mutation_answers_fit_the_document(start: StartClient) -> None:
    client = await start()
    remove = "/api/admin/models/{filename}/catalog"
    promote = "/api/admin/civitai/promote-to-lora/{version_id}"
    answers = [
        (await client.delete("/api/admin/models/missing.safetensors/catalog", headers=AUTH), "DELETE", remove, "removed"),
        (await client.delete("/api/admin/models/on_disk.safetensors/catalog", headers=AUTH), "DELETE", remove, "file_on_disk"),
        (await client.delete("/api/admin/models/nothing.safetensors/catalog", headers=AUTH), "DELETE", remove, "not_in_catalog"),
        (await client.delete("/api/admin/models/a%5Cb/catalog", headers=AUTH), "DELETE", remove, "unsafe_file_name"),
        (await client.post("/api/admin/civitai/promote-to-lora/201", headers=AUTH), "POST", promote, "already_exists"),
        (await client.post("/api/admin/civitai/promote-to-lora/101", headers=AUTH), "POST", promote, "not_a_lora"),
        (await client.post("/api/admin/civitai/promote-to-lora/9", headers=AUTH), "POST", promote, "not_in_catalog"),
        (await client.post("/api/admin/civitai/add/101", headers=AUTH), "POST", "/api/admin/civitai/add/{version_id}", "already_exists"),
    ]
    for response, method, path, expected in answers:
        body = await assert_conforms(response, method, path)
        assert expected in (body.get("status"), body.get("code")), (method, response.url.path, body)


async def test_the_document_is_served_with_the_key(aiohttp_client: Any, settings: Settings) -> None:
    client = await aiohttp_client(with_openapi_route(create_app(settings, API_KEY)))
    served = await client.get(OPENAPI_PATH, headers=AUTH)
    assert await assert_conforms(served, "GET", OPENAPI_PATH) == DOC
    assert (await assert_conforms(await client.get(OPENAPI_PATH), "GET", OPENAPI_PATH))["code"] == "missing_api_key"


async def test_the_events_stream_fits_the_document(start: StartClient) -> None:
    client = await start()
    spec = response_spec("GET", EVENTS, 200)
    async with client.get(EVENTS, headers=AUTH) as response:
        assert response.status == 200 and response.content_type in spec["content"]
        event, data = await next_event(response)
    assert event == "snapshot"
    validate(spec["x-events"]["snapshot"], data)
    assert (await assert_conforms(await client.get(EVENTS, headers={"X-API-Key": "x" * 24}), "GET", EVENTS))["code"] == "bad_api_key"
    assert (await assert_conforms(await client.get(EVENTS, params={"key": "x" * 24}), "GET", EVENTS))["code"] == "key_in_url"
