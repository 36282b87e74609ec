"""The CivitAI client against a loopback server sending what aioresponses cannot: broken and hostile compressed bodies."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import pytest
from aiohttp import web

from service.civitai import CivitaiClient
from service.civitai.client import MAX_BODY_BYTES
from service.errors import UpstreamError

GOOD = b'{"id": 1}'


def broken_gzip() -> bytes:
    whole = gzip.compress(GOOD * 1000)
    return whole[:20] + bytes(b ^ 0xFF for b in whole[20:40]) + whole[40:]


def bomb() -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    out = [compressor.compress(b"{" + b" " * 1000)]
    spaces = b" " * (1 << 20)
    for _ in range(16 * MAX_BODY_BYTES >> 20):  # sixteen times what a body may hold, a few hundred KB on the wire
        out.append(compressor.compress(spaces))
    out.append(compressor.flush())
    return b"".join(out)


@pytest.mark.parametrize(
    ("make_body", "encoding"),
    [(broken_gzip, "gzip"), (lambda: b"\x00\x01not deflate at all", "deflate"), (bomb, "gzip")],
    ids=["broken-gzip", "broken-deflate", "gzip-bomb"],
)
async def test_a_body_that_does_not_decode_is_a_bad_body_not_unreachable(aiohttp_server: Any, make_body: Any, encoding: str) -> None:
    body = make_body()  # made by the test that needs it, not at every collection
    async def version(_request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Encoding": encoding, "Content-Type": "application/json"})

    app = web.Application()
    app.router.add_get("/api/v1/model-versions/{id}", version)
    server = await aiohttp_server(app)
    client = CivitaiClient(str(server.make_url("")).rstrip("/"), None, 10)
    await client.open()
    try:
        with pytest.raises(UpstreamError) as caught:
            await client.model_version(1)
    finally:
        await client.close()
    assert caught.value.code == "upstream_bad_body"
