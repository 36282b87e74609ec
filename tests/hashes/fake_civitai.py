"""CivitAI's lookups by hash, faked with aioresponses: the batch call, the single one, 429 and unknown hashes."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aioresponses import CallbackResult, aioresponses

from ..helpers import CIVITAI, lora_version

BATCH_URL = f"{CIVITAI}/api/v1/model-versions/by-hash"
SINGLE_URL = re.compile(rf"^{re.escape(CIVITAI)}/api/v1/model-versions/by-hash/([0-9A-Fa-f]{{64}})$")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class FakeCivitai:
    """Versions CivitAI knows, by the SHA256 of their file; counts the calls it answers."""

    versions: dict[str, dict[str, Any]] = field(default_factory=dict)  # upper-case sha256 -> version body
    batch_calls: list[list[str]] = field(default_factory=list)
    single_calls: list[str] = field(default_factory=list)
    refuse_batch: int = 0  # answer 404 to the batch call (an origin without it)
    limited: int = 0  # answer this many calls with 429 first

    def knows(self, data: bytes, version_id: int, *, model_id: int = 5000, file: str = "civitai_name.safetensors", **extra: Any) -> str:
        """CivitAI knows a file with these bytes as this version; returns its SHA256."""
        digest = sha256(data)
        body = lora_version(version_id, model_id=model_id, file=file)
        body["files"][0]["hashes"] = {"SHA256": digest.upper()}
        body.update(extra)
        self.versions[digest.upper()] = body
        return digest

    @property
    def calls(self) -> int:
        return len(self.batch_calls) + len(self.single_calls)

    def batch(self, _url: Any, **kwargs: Any) -> CallbackResult:
        asked = orjson.loads(kwargs["data"])
        assert isinstance(asked, list) and len(asked) <= 100
        self.batch_calls.append(asked)
        if self.limited:
            self.limited -= 1
            return CallbackResult(status=429, headers={"Retry-After": "1"}, body="slow down")
        if self.refuse_batch:
            return CallbackResult(status=404, body="no such route")
        return CallbackResult(payload=[self.versions[h] for h in asked if h in self.versions])

    def single(self, url: Any, **_kwargs: Any) -> CallbackResult:
        digest = str(url).rsplit("/", 1)[1]
        self.single_calls.append(digest)
        if digest.upper() in self.versions:
            return CallbackResult(payload=self.versions[digest.upper()])
        return CallbackResult(status=404, payload={"error": "Model not found"})


@contextmanager
def fake_civitai() -> Iterator[FakeCivitai]:
    """CivitAI's by-hash calls answered by a FakeCivitai; everything on loopback passes through."""
    fake = FakeCivitai()
    with aioresponses(passthrough=["http://127.0.0.1"]) as mocked:
        mocked.post(BATCH_URL, callback=fake.batch, repeat=True)
        mocked.get(SINGLE_URL, callback=fake.single, repeat=True)
        yield fake
