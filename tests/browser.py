"""A headless Chromium (Debian's `chromium`) driven over the DevTools protocol with aiohttp's
websocket client: enough to load a page, act on it as a person would, read what it shows,
and take a screenshot. No browser download and no extra dependency."""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import ctypes
import itertools
import os
import re
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def need_chromium() -> str:
    """The browser's path; without one the test is skipped, except in CI, where it fails."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium package")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return CHROMIUM


class Page:
    """One browser tab."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, context: str | None = None) -> None:
        self.ws = ws
        self.context = context  # its browser context: what Browser.grantPermissions must name
        self._ids = itertools.count(1)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command and its result."""
        message_id = next(self._ids)
        await self.ws.send_json({"id": message_id, "method": method, "params": params})
        async with asyncio.timeout(15):
            async for message in self.ws:
                data = message.json()
                if data.get("id") == message_id:
                    if "error" in data:
                        raise RuntimeError(f"{method}: {data['error']}")
                    return data.get("result", {})
        raise RuntimeError("the browser closed the connection")

    async def evaluate(self, expression: str) -> Any:
        """Run JavaScript in the page (awaiting a promise) and return its JSON value."""
        result = await self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def goto(self, url: str) -> None:
        """Open a URL and wait until the document has loaded."""
        await self.send("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete'")

    async def wait_for(self, condition: str, timeout: float = 10.0) -> None:
        """Poll a JavaScript condition until it is true."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not await self.evaluate(f"Boolean({condition})"):
            if loop.time() > deadline:
                raise AssertionError(f"not reached within {timeout} s: {condition}")
            await asyncio.sleep(0.05)

    async def screenshot(self, path: Path) -> None:
        """Save what the page shows as a PNG."""
        data = await self.send("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(data["data"]))


def _die_with_parent() -> None:
    """In the browser's process before it starts: killed when the test process ends, however it ends."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class _Browser:
    """One headless Chromium for this process (each page gets a fresh browser context: its own
    storage, cookies and cache), started on first use and killed when the process exits."""

    def __init__(self, binary: str) -> None:
        self.profile = tempfile.mkdtemp(prefix="chromium-")
        self.process = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-port=0",
             f"--user-data-dir={self.profile}", "--window-size=1200,800", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_die_with_parent,
        )
        self.endpoint = self._endpoint()
        self.port = re.search(r":(\d+)/", self.endpoint).group(1)  # type: ignore[union-attr]
        atexit.register(self.close)

    def _endpoint(self) -> str:
        """The browser's DevTools websocket, from the line it prints once it listens."""
        assert self.process.stderr is not None
        deadline = time.monotonic() + 30
        with selectors.DefaultSelector() as waiting:
            waiting.register(self.process.stderr, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if waiting.select(timeout=deadline - time.monotonic()):
                    line = self.process.stderr.readline().decode()
                    if not line:
                        break
                    found = re.search(r"ws://127\.0\.0\.1:\d+/devtools/browser/\S+", line)
                    if found:
                        return found.group(0)
        self.close()
        raise RuntimeError("chromium exited or did not listen within 30 s")

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


_shared: _Browser | None = None


def _browser() -> _Browser:
    global _shared
    if _shared is None or not _shared.alive():
        _shared = _Browser(need_chromium())
    return _shared


@contextlib.asynccontextmanager
async def browser_page() -> AsyncIterator[Page]:
    """A fresh page of headless Chromium, in a browser context of its own (nothing kept from
    other pages: storage, cookies, cache); closed afterwards. The browser itself is shared
    by the pages of this process: starting one is most of what a page would cost."""
    browser = _browser()
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(browser.endpoint, max_msg_size=64 * 1024 * 1024) as browser_ws:
            control = Page(browser_ws)
            context = (await control.send("Target.createBrowserContext"))["browserContextId"]
            try:
                target = (await control.send("Target.createTarget", url="about:blank", browserContextId=context, width=1200, height=800))["targetId"]
                async with session.ws_connect(f"ws://127.0.0.1:{browser.port}/devtools/page/{target}", max_msg_size=64 * 1024 * 1024) as ws:
                    page = Page(ws, context)
                    await page.send("Page.enable")
                    await page.send("Runtime.enable")
                    yield page
            finally:
                with contextlib.suppress(RuntimeError, aiohttp.ClientError, TimeoutError):
                    await control.send("Target.disposeBrowserContext", browserContextId=context)  # its pages with it
