"""`GET /api/health`: the extension's connection check, answered without the key, telling it whether its key is right."""

from __future__ import annotations

import logging

import pytest

from service import __version__
from service.http.serving import QuietAccessLogger

from .conftest import StartClient
from .helpers import API_KEY

HEALTH = "/api/health"
EXTENSION = "chrome-extension://abcdefghijklmnopabcdefghijklmnop"


@pytest.mark.parametrize(
    ("headers", "authenticated"),
    [
        ({"X-API-Key": API_KEY}, True),
        ({"Authorization": f"Bearer {API_KEY}"}, True),
        ({"authorization": f"bearer {API_KEY}"}, True),
        ({}, False),
        ({"X-API-Key": "wrong-key-0123456789abcdef"}, False),
        ({"X-API-Key": API_KEY[:-1]}, False),
        ({"Authorization": "Bearer nope"}, False),
        ({"Authorization": f"Basic {API_KEY}"}, False),
        ({"X-API-Key": "ключ".encode().decode("latin-1")}, False),
    ],
)
async def test_answers_200_and_says_whether_the_key_is_right(start: StartClient, headers: dict[str, str], authenticated: bool) -> None:
    client = await start()
    response = await client.get(HEALTH, headers=headers)
    assert response.status == 200
    assert await response.json() == {"status": "ok", "authenticated": authenticated, "app_version": __version__}
    assert response.headers["Cache-Control"] == "no-store"


async def test_the_key_in_the_query_is_not_accepted(start: StartClient) -> None:
    """The connection check always answers; a key in its URL is not taken (URLs end up in logs)."""
    client = await start()
    response = await client.get(HEALTH, params={"key": API_KEY})
    assert (await response.json())["authenticated"] is False


async def test_answers_while_the_index_is_still_being_built(start: StartClient) -> None:
    client = await start(wait_ready=False)
    response = await client.get(HEALTH, headers={"X-API-Key": API_KEY})
    assert response.status == 200
    assert (await response.json())["authenticated"] is True


async def test_leaks_no_path_count_or_secret(start: StartClient) -> None:
    client = await start()
    text = await (await client.get(HEALTH, headers={"X-API-Key": API_KEY})).text()
    assert API_KEY not in text
    assert "/" not in text
    assert set((await (await client.get(HEALTH)).json())) == {"status", "authenticated", "app_version"}


async def test_extension_origin_gets_cors_on_preflight_and_answer(start: StartClient) -> None:
    client = await start()
    preflight = await client.options(
        HEALTH, headers={"Origin": EXTENSION, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "x-api-key"}
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == EXTENSION
    assert "x-api-key" in preflight.headers["Access-Control-Allow-Headers"].lower()
    response = await client.get(HEALTH, headers={"X-API-Key": API_KEY, "Origin": EXTENSION})
    assert response.headers["Access-Control-Allow-Origin"] == EXTENSION
    assert (await response.json())["authenticated"] is True


async def test_other_origins_get_no_cors_headers(start: StartClient) -> None:
    client = await start()
    preflight = await client.options(HEALTH, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert preflight.status == 403
    assert "Access-Control-Allow-Origin" not in preflight.headers
    response = await client.get(HEALTH, headers={"X-API-Key": API_KEY, "Origin": "https://evil.example"})
    assert response.status == 200
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_polling_is_not_logged_at_the_default_level(start: StartClient, caplog: pytest.LogCaptureFixture) -> None:
    client = await start(server_kwargs={"access_log_class": QuietAccessLogger})  # as `python -m service` runs it
    caplog.set_level(logging.INFO)
    for _ in range(3):
        await client.get(HEALTH, headers={"X-API-Key": "wrong-key-0123456789abcdef"})
    assert not [r for r in caplog.records if "/api/health" in r.getMessage()]
    assert "wrong-key" not in caplog.text
