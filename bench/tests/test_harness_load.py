"""Request loops: every request timed, the windows pick what was in flight, answers reach the hook."""

from aiohttp import web


def test_a_window_holds_the_requests_in_flight_during_it() -> None:
    from harness.load import RequestLoops, Sample

    loops = RequestLoops(session=None, headers={})  # type: ignore[arg-type]
    loops.samples = [Sample("a", 0.0, 1.0, 200), Sample("a", 1.5, 2.5, 200), Sample("b", 2.0, 9.0, 500),
                     Sample("a", 3.0, 3.5, 200)]
    inside = loops.window(2.0, 2.8)
    assert [(s.start, s.end) for s in inside] == [(1.5, 2.5), (2.0, 9.0)]
    stats = loops.stats(inside)
    assert stats["n"] == 2 and stats["max_ms"] == 7000.0 and stats["errors"] == 1
    assert loops.stats(inside, "a")["errors"] == 0


async def test_loops_time_each_request_and_show_the_hook_every_answer(aiohttp_server, aiohttp_client) -> None:
    import asyncio

    from harness.load import RequestLoops

    async def answer(request: web.Request) -> web.Response:
        return web.Response(text=request.path)

    app = web.Application()
    app.router.add_get("/{name}", answer)
    client = await aiohttp_client(app)
    seen: list[bytes] = []
    loops = RequestLoops(client.session, {})
    loops.add("fast", str(client.make_url("/fast")))
    loops.add("paced", str(client.make_url("/paced")), interval_s=0.01, on_body=lambda s, body: seen.append(body))
    async with loops:
        while sum(1 for s in loops.samples if s.kind == "paced") < 3:
            await asyncio.sleep(0.01)
    assert {s.kind for s in loops.samples} == {"fast", "paced"}
    assert all(s.status == 200 and s.end >= s.start for s in loops.samples)
    assert seen and set(seen) == {b"/paced"}


def test_wrk_output_is_read() -> None:
    from harness.load import parse_wrk

    out = """Running 5s test @ http://127.0.0.1:1/x
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.20ms  300.00us  12.50ms   90.00%
  Latency Distribution
     50%    1.10ms
     99%    3.20ms
  150000 requests in 5.00s, 1.50GB read
  Non-2xx or 3xx responses: 2
Requests/sec:  30000.00
"""
    res = parse_wrk(out)
    assert res["rps"] == 30000.0 and res["requests"] == 150000 and res["non_2xx_3xx"] == 2
    assert res["latency_max_ms"] == 12.5 and res["latency_p99_ms"] == 3.2
