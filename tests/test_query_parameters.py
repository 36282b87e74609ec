"""Every route takes the query parameters it names and refuses any other with a 400 that names
it: a misspelt switch (`?dry-run=true`) must never run the real thing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.http.routes import ROUTES

from .conftest import StartClient
from .helpers import AUTH, MAP, catalog, entry, read_json, write_json

FILLED = {"version_id": "1", "filename": "x.safetensors", "file": "x.safetensors", "job": "abc", "image_id": "1", "name": "live.js"}


def filled(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda match: FILLED[match.group(1)], path)


CHECKED = [route for route in ROUTES if route.query is not None]


@pytest.mark.parametrize("route", CHECKED, ids=[f"{route.method} {route.path}" for route in CHECKED])
async def test_a_query_parameter_a_route_does_not_take_is_a_400_that_names_it(start: StartClient, route: object) -> None:
    client = await start()
    response = await client.request(route.method, filled(route.path), headers=AUTH, params={"dry-run": "true"})  # type: ignore[attr-defined]
    assert response.status == 400, await response.text()
    error = await response.json()
    assert error["code"] == "unknown_parameter" and "'dry-run'" in error["detail"]


async def test_a_misspelt_dry_run_imports_nothing(start: StartClient, catalog_dir: Path) -> None:
    write_json(catalog_dir / "models.json", catalog(entry(1, "a.safetensors")))
    before = read_json(catalog_dir / "models.json")
    client = await start()
    response = await client.post("/api/admin/library/import", headers=AUTH, params={"dry-run": "true"})
    assert response.status == 400 and "dry_run" in (await response.json())["detail"]  # says what it does take
    assert read_json(catalog_dir / "models.json") == before


async def test_the_parameters_a_route_takes_still_work_and_no_route_stays_a_404(start: StartClient) -> None:
    client = await start()
    assert (await client.get(MAP, headers=AUTH, params={"versions": "1", "models": "2"})).status == 200
    assert (await client.get("/nowhere", params={"x": "1"})).status == 404
    keyless = await client.get(MAP, params={"bogus": "1"})
    assert keyless.status == 401  # the key is asked for before anything about the request is told
    health = await client.get("/api/health", params={"cache": "1"})  # the connection check always answers
    assert health.status == 200 and (await health.json())["authenticated"] is False
