"""Ceiling server for the benchmark: the least work aiohttp can do to answer the map.

It serves pre-built bytes read once from files at start (the harness fetches the
service's own map body and hands it over), so its throughput is the upper bound a
single-process aiohttp server can reach on this machine for that body size.

    python bench/ceiling.py --port 9001 --body map.json --etag '"abc"' \
        [--gzip-body map.json.gz --gzip-etag '"abc-gz"']

Routes (any path is accepted, so the harness can reuse the service's URL path):
  GET *  -> 304 if If-None-Match equals the ETag of the variant it would serve,
            else 200 with the bytes, Content-Type: application/json and the ETag.
            With `Accept-Encoding: gzip` and a gzip body given, serves the gzip bytes
            with Content-Encoding: gzip.
Prints "CEILING READY <port>" on stdout once listening. Stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from aiohttp import web


def build_app(body: bytes, etag: str, gz_body: bytes | None, gz_etag: str | None) -> web.Application:
    plain_headers = {"Content-Type": "application/json", "ETag": etag, "Vary": "Accept-Encoding"}
    gz_headers = {
        "Content-Type": "application/json",
        "ETag": gz_etag or "",
        "Content-Encoding": "gzip",
        "Vary": "Accept-Encoding",
    }

    async def handler(request: web.Request) -> web.Response:
        headers = request.headers
        if gz_body is not None and "gzip" in headers.get("Accept-Encoding", ""):
            if headers.get("If-None-Match") == gz_etag:
                return web.Response(status=304, headers={"ETag": gz_etag, "Vary": "Accept-Encoding"})
            return web.Response(body=gz_body, headers=gz_headers)
        if headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag, "Vary": "Accept-Encoding"})
        return web.Response(body=body, headers=plain_headers)

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handler)
    return app


async def serve(args: argparse.Namespace) -> None:
    with open(args.body, "rb") as f:
        body = f.read()
    gz_body = None
    if args.gzip_body:
        with open(args.gzip_body, "rb") as f:
            gz_body = f.read()
    app = build_app(body, args.etag, gz_body, args.gzip_etag)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port, backlog=1024)
    await site.start()
    print(f"CEILING READY {args.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--body", required=True, help="file holding the identity (uncompressed) body")
    p.add_argument("--etag", required=True)
    p.add_argument("--gzip-body", help="file holding the gzip body")
    p.add_argument("--gzip-etag")
    args = p.parse_args(argv)
    if args.gzip_body and not args.gzip_etag:
        p.error("--gzip-body needs --gzip-etag")
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
