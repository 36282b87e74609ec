"""The key on every /api/ route, in constant time, and errors in one envelope."""

from __future__ import annotations

import asyncio
import re

import orjson
import pytest
import yarl

from service.http.pipeline import KEY_OPTIONAL_PATHS
from service.http.routes import ROUTES

from .conftest import StartClient
from .helpers import API_KEY, MAP


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_api_key"),
        ({"X-API-Key": "wrong-key-0123456789abcdef"}, "bad_api_key"),
        ({"X-API-Key": API_KEY[:-1]}, "bad_api_key"),
        ({"Authorization": f"Basic {API_KEY}"}, "missing_api_key"),
        ({"Authorization": "Bearer nope"}, "bad_api_key"),
        ({"X-API-Key": "clé-non-ascii-ü"}, "bad_api_key"),
    ],
)
async def test_wrong_or_missing_key_is_401(start: StartClient, headers: dict[str, str], code: str) -> None:
    client = await start()
    for method, path in [("GET", MAP), ("POST", "/api/admin/civitai/add/1"), ("DELETE", "/api/admin/models/x.safetensors/catalog"), ("GET", "/api/nothing")]:
        response = await client.request(method, path, headers=headers)
        assert response.status == 401, (method, path)
        assert await response.json() == {"detail": response.reason and (await response.json())["detail"], "code": code}


async def test_every_api_route_of_the_app_needs_the_key(start: StartClient) -> None:
    """Each route the app has, however it was added, is behind the guard: none is an open door."""
    client = await start()
    checked = set()
    for route in client.app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if not path.startswith("/api/") or path in KEY_OPTIONAL_PATHS or route.method in ("HEAD", "*"):
            continue
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        response = await client.request(route.method, concrete)
        assert response.status == 401, (route.method, path)
        assert (await response.json())["code"] == "missing_api_key"
        checked.add((route.method, path))
    assert checked == {(route.method, route.path) for route in ROUTES if route.path.startswith("/api/") and route.path not in KEY_OPTIONAL_PATHS}


@pytest.mark.parametrize("path", ["/api/admin/models/civitai-map%0A", "/api/admin/models/x%0Ay/catalog", "/api/nothing%0D%0A"])
async def test_a_path_with_a_line_break_still_meets_the_guard(start: StartClient, path: str) -> None:
    """A decoded line break in the path matches no route: it must still get the key check and the envelope."""
    client = await start()
    response = await client.get(yarl.URL(path, encoded=True))
    assert response.status == 401 and (await response.json())["code"] == "missing_api_key"
    nowhere = await client.get(yarl.URL("/nowhere%0A", encoded=True))
    assert nowhere.status == 404 and (await nowhere.json())["code"] == "not_found"


async def test_non_ascii_bytes_in_key_header_are_401_not_500(start: StartClient) -> None:
    client = await start()
    response = await client.get(MAP, headers={"X-API-Key": "ключ".encode().decode("latin-1")})
    assert response.status == 401


@pytest.mark.parametrize("headers", [{"X-API-Key": API_KEY}, {"Authorization": f"Bearer {API_KEY}"}, {"authorization": f"bearer {API_KEY}"}])
async def test_both_header_forms_are_accepted(start: StartClient, headers: dict[str, str]) -> None:
    client = await start()
    assert (await client.get(MAP, headers=headers)).status == 200


async def test_unknown_routes_are_404_in_the_envelope(start: StartClient) -> None:
    client = await start()
    response = await client.get("/nowhere")
    assert response.status == 404
    assert (await response.json())["code"] == "not_found"
    wrong_method = await client.put(MAP, headers={"X-API-Key": API_KEY})
    assert wrong_method.status == 405
    assert (await wrong_method.json())["code"] == "method_not_allowed"
    assert set(wrong_method.headers["Allow"].split(",")) == {"GET", "HEAD"}
    preflight_less = await client.options("/health")  # OPTIONS without a preflight's header: a method like any other
    assert preflight_less.status == 405 and (await preflight_less.json())["code"] == "method_not_allowed"


async def test_health_needs_no_key_and_leaks_nothing(start: StartClient, settings: object) -> None:
    client = await start()
    for path in ("/health", "/ready"):
        response = await client.get(path)
        assert response.status == 200
        text = await response.text()
        assert API_KEY not in text
        assert "/" not in text.replace("\\/", "")  # no paths


@pytest.mark.parametrize(
    "request_line",
    [b"CONNECT example.com:443 HTTP/1.1", b"CONNECT /api/admin/models/civitai-map HTTP/1.1", b"OPTIONS * HTTP/1.1", b"TRACE / HTTP/1.1", b"PROPFIND / HTTP/1.1"],
)
async def test_every_method_gets_the_envelope(start: StartClient, request_line: bytes) -> None:
    """Requests no route can take (CONNECT's authority form, OPTIONS *), sent as a raw client would."""
    client = await start()
    assert client.server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    try:
        writer.write(request_line + b"\r\nHost: example.com\r\nConnection: close\r\n\r\n")
        async with asyncio.timeout(5):
            answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] in (b"404", b"405"), head
    assert b"application/json" in head.lower()
    assert set(orjson.loads(body)) == {"detail", "code"}
