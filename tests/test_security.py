"""Browser access and protected defaults: CORS, form posts, size caps, secrets kept out of logs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from aioresponses import aioresponses

from service.errors import ConfigError
from service.settings import Settings

from .conftest import StartClient
from .helpers import API_KEY, AUTH, CIVITAI, MAP, lora_version

EXTENSION = "chrome-extension://abcdefghijklmnopabcdefghijklmnop"


async def test_extension_preflight_and_request_get_cors_headers(start: StartClient) -> None:
    client = await start()
    preflight = await client.options(MAP, headers={"Origin": EXTENSION, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "x-api-key"})
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == EXTENSION
    assert "X-API-Key" in preflight.headers["Access-Control-Allow-Headers"]
    assert "Origin" in preflight.headers["Vary"]
    response = await client.get(MAP, headers={**AUTH, "Origin": EXTENSION})
    assert response.headers["Access-Control-Allow-Origin"] == EXTENSION
    assert "ETag" in response.headers["Access-Control-Expose-Headers"]
    assert "Origin" in response.headers["Vary"]
    denied = await client.get(MAP, headers={"Origin": EXTENSION})
    assert denied.status == 401 and denied.headers["Access-Control-Allow-Origin"] == EXTENSION  # the extension can read why


async def test_other_origins_get_no_cors_headers(start: StartClient) -> None:
    client = await start()
    preflight = await client.options(MAP, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert preflight.status == 403
    assert not any(h.lower().startswith("access-control-") for h in preflight.headers)
    response = await client.get(MAP, headers={**AUTH, "Origin": "https://evil.example"})
    assert not any(h.lower().startswith("access-control-") for h in response.headers)


async def test_configured_origins_are_honoured(start: StartClient) -> None:
    client = await start(cors_origins=("https://civitai.com",))
    response = await client.get(MAP, headers={**AUTH, "Origin": "https://civitai.com"})
    assert response.headers["Access-Control-Allow-Origin"] == "https://civitai.com"
    other = await client.get(MAP, headers={**AUTH, "Origin": "https://civitai.com.evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain"])
async def test_form_posts_are_refused_even_with_the_key(start: StartClient, content_type: str, catalog_dir: Path) -> None:
    client = await start()
    before = (catalog_dir / "models.json").read_bytes()
    response = await client.post("/api/admin/civitai/add/1", headers={**AUTH, "Content-Type": content_type}, data=b"a=1")
    assert response.status == 415
    assert (await response.json())["code"] == "unsupported_media_type"
    assert (catalog_dir / "models.json").read_bytes() == before


async def test_bodies_are_capped(start: StartClient) -> None:
    client = await start(max_body_bytes=1024)
    response = await client.post("/api/admin/civitai/add/1", headers={**AUTH, "Content-Type": "application/json"}, data=b"[" + b"1," * 1000 + b"1]")
    assert response.status == 413
    assert (await response.json())["code"] == "too_large"


async def test_oversized_headers_are_refused(start: StartClient) -> None:
    client = await start()
    response = await client.get("/health", headers={"X-Filler": "a" * 20000})
    assert response.status in (400, 431)


async def test_state_never_changes_on_get(start: StartClient) -> None:
    client = await start()
    for path in ("/api/admin/civitai/add/1", "/api/admin/civitai/promote-to-lora/1", "/api/admin/models/x.safetensors/catalog"):
        response = await client.get(path, headers=AUTH)
        assert response.status == 405


def test_short_keys_are_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="API_KEY"):
        Settings.from_env({"API_KEY": "fifteen-chars!!", "CATALOG_DIR": str(tmp_path)})
    assert Settings.from_env({"API_KEY": "sixteen-chars!!!"}).api_key == "sixteen-chars!!!"


def test_secrets_stay_out_of_repr() -> None:
    settings = Settings.from_env({"API_KEY": API_KEY, "CIVITAI_API_KEY": "civitai-secret-token"})
    assert API_KEY not in repr(settings) and "civitai-secret-token" not in repr(settings)


async def test_no_secret_reaches_the_log(start: StartClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = await start(civitai_api_key="civitai-secret-token", log_level="DEBUG")
    with aioresponses(passthrough=["http://127.0.0.1"]) as civitai:
        civitai.get(f"{CIVITAI}/api/v1/model-versions/5", payload=lora_version(5))
        civitai.get(f"{CIVITAI}/api/v1/model-versions/6", status=401)
        civitai.get(f"{CIVITAI}/api/v1/model-versions/7", exception=__import__("aiohttp").ClientConnectionError("boom"))
        for version_id in (5, 6, 7):
            await client.post(f"/api/admin/civitai/add/{version_id}", headers={"Authorization": f"Bearer {API_KEY}"})
    await client.get(MAP, headers={"X-API-Key": "wrong-but-logged?-0123456789"})
    await client.get("/ready")
    text = "\n".join(record.getMessage() + str(record.args) + (record.exc_text or "") for record in caplog.records)
    assert text, "nothing was logged; the test proves nothing"
    for secret in (API_KEY, "civitai-secret-token", "wrong-but-logged"):
        assert secret not in text


@pytest.mark.parametrize(
    "origin",
    ["chrome-extension://", "chrome-extension://x", "chrome-extension://ABCDEFGHIJKLMNOPABCDEFGHIJKLMNOP", "chrome-extension://abcdefghijklmnopabcdefghijklmnoz", f"{EXTENSION}/x"],
)
async def test_malformed_extension_origins_get_no_cors(start: StartClient, origin: str) -> None:
    client = await start()
    preflight = await client.options(MAP, headers={"Origin": origin, "Access-Control-Request-Method": "GET"})
    assert preflight.status == 403
    response = await client.get(MAP, headers={**AUTH, "Origin": origin})
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_cors_can_be_pinned_to_given_extensions(start: StartClient) -> None:
    other = "chrome-extension://" + "p" * 32
    client = await start(cors_extension_ids=(EXTENSION.removeprefix("chrome-extension://"),))
    assert (await client.get(MAP, headers={**AUTH, "Origin": EXTENSION})).headers["Access-Control-Allow-Origin"] == EXTENSION
    assert "Access-Control-Allow-Origin" not in (await client.get(MAP, headers={**AUTH, "Origin": other})).headers


def test_a_malformed_pinned_extension_id_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CORS_EXTENSION_IDS"):
        Settings.from_env({"CATALOG_DIR": str(tmp_path), "MODELS_DIR": str(tmp_path), "CORS_EXTENSION_IDS": "not-an-id"})


async def test_a_chunked_body_over_the_limit_is_413(start: StartClient) -> None:
    client = await start(max_body_bytes=1024)

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(8):
            yield b" " * 512

    response = await client.post("/api/admin/civitai/add/1", headers={**AUTH, "Content-Type": "application/json"}, data=chunks())
    assert response.status == 413 and (await response.json())["code"] == "too_large"


@pytest.mark.parametrize("body", [b"not json", b"{", b"\xff\xfe"])
async def test_a_body_that_says_json_but_is_not_is_400(start: StartClient, body: bytes) -> None:
    client = await start()
    response = await client.post("/api/admin/civitai/add/1", headers={**AUTH, "Content-Type": "application/json"}, data=body)
    assert response.status == 400 and (await response.json())["code"] == "invalid_json"


@pytest.mark.parametrize("body", [b"", b"{}", b"  {}  "])
async def test_no_body_or_an_empty_json_object_is_fine(start: StartClient, body: bytes) -> None:
    client = await start()
    response = await client.post("/api/admin/civitai/promote-to-lora/1", headers={**AUTH, "Content-Type": "application/json"}, data=body)
    assert response.status == 404 and (await response.json())["code"] == "not_in_catalog"
