"""Reading a shared workflow out of what people send: a ComfyUI workflow as JSON, or a PNG or
WebP image ComfyUI saved with the workflow inside.

The body is read as a stream and never kept whole: a PNG's image data is skipped chunk by
chunk, so a 50 MB picture costs the memory of its text chunks. ComfyUI writes the UI graph
under the keyword `workflow` and the API graph under `prompt` (PNG tEXt chunks; in a WebP,
EXIF tags 0x010F "workflow:..." and 0x0110 "prompt:..."). Every length is capped; compressed
text is inflated with a ceiling, so a zip bomb stops at the cap.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson

from ..errors import Invalid, TooLarge, UnsupportedMedia

MAX_JSON_BYTES = 16 * 1024 * 1024  # a workflow sent as JSON
MAX_TEXT_BYTES = 16 * 1024 * 1024  # one text chunk (or EXIF block), inflated
MAX_IMAGE_BYTES = 512 * 1024 * 1024  # an image read through (its pixel data is skipped, never kept)
MAX_CHUNKS = 100_000
SKIP_BLOCK = 1024 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
KEYWORDS = (b"workflow", b"prompt")

Read = Callable[[int], Awaitable[bytes]]  # up to n bytes; b"" at the end


@dataclass(slots=True)
class Found:
    """The graphs found: ComfyUI's UI format (`workflow`) and its API format (`prompt`)."""

    workflow: object = None
    prompt: object = None
    container: str = "json"


class Body:
    """A request body read exactly, counted against a ceiling."""

    def __init__(self, read: Read, limit: int) -> None:
        self._read = read
        self.limit = limit
        self.taken = 0
        self._buffer = bytearray()  # grown in place: many small reads cost no copies

    async def exactly(self, count: int, what: str) -> bytes:
        """`count` bytes, or Invalid when the body ends first."""
        while len(self._buffer) < count:
            chunk = await self._read(max(count - len(self._buffer), 64 * 1024))
            if not chunk:
                raise Invalid(f"The image ends inside its {what}.", code="invalid_workflow")
            self._take(len(chunk))
            self._buffer += chunk
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    async def skip(self, count: int) -> None:
        """Pass over `count` bytes without keeping them."""
        while count > 0:
            if self._buffer:
                taken = min(count, len(self._buffer))
                del self._buffer[:taken]
                count -= taken
                continue
            chunk = await self._read(min(count, SKIP_BLOCK))
            if not chunk:
                raise Invalid("The image ends inside a chunk.", code="invalid_workflow")
            self._take(len(chunk))
            count -= len(chunk)  # a read of n bytes gives at most n

    async def rest(self, limit: int, what: str) -> bytes:
        """Everything left, at most `limit` bytes (TooLarge beyond)."""
        parts = [bytes(self._buffer)]
        size = len(self._buffer)
        self._buffer = bytearray()
        while True:
            chunk = await self._read(SKIP_BLOCK)
            if not chunk:
                return b"".join(parts)
            self._take(len(chunk))
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"The {what} is larger than {limit // (1024 * 1024)} MB.")
            parts.append(chunk)

    async def has(self, count: int) -> bool:
        """Whether the body holds at least `count` more bytes (read into the buffer)."""
        while len(self._buffer) < count:
            chunk = await self._read(64 * 1024)
            if not chunk:
                return False
            self._take(len(chunk))
            self._buffer += chunk
        return True

    def _take(self, count: int) -> None:
        self.taken += count
        if self.taken > self.limit:
            raise TooLarge(f"The body is larger than {self.limit // (1024 * 1024)} MB.")


async def read_workflow(read: Read, declared_json: bool = False) -> Found:
    """The graphs in a body: JSON, or a PNG or WebP with them inside (told apart by the first bytes).
    `declared_json`: the request says its body is JSON, so one that does not parse is damaged JSON."""
    body = Body(read, MAX_IMAGE_BYTES)
    if not await body.has(8):
        return _json_workflow(await body.rest(MAX_JSON_BYTES, "workflow"), declared_json)
    head = await body.exactly(8, "first bytes")
    if head.startswith(PNG_SIGNATURE):
        return await _png(body)
    if head[:4] == b"RIFF":
        return await _webp(body, head)
    raw = head + await body.rest(MAX_JSON_BYTES - len(head), "workflow")
    return _json_workflow(raw, declared_json)


def _json_workflow(raw: bytes, declared_json: bool) -> Found:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if declared_json or raw.lstrip()[:1] in (b"{", b"["):  # JSON, cut short or damaged
            raise Invalid(f"The workflow is not valid JSON ({exc}); it may be cut short or damaged.", code="invalid_workflow") from None
        raise UnsupportedMedia("Send a ComfyUI workflow as JSON, or a PNG or WebP image ComfyUI saved with one inside.") from None
    if not isinstance(doc, dict):
        raise Invalid(f"A workflow is a JSON object, not {json_kind(doc)}.", code="invalid_workflow")
    if isinstance(doc.get("nodes"), list):
        return Found(workflow=doc)
    if isinstance(doc.get("workflow"), dict) or isinstance(doc.get("prompt"), dict):  # {"workflow": ..., "prompt": ...}
        return Found(workflow=doc.get("workflow"), prompt=doc.get("prompt"))
    return Found(prompt=doc)  # the API format: {"3": {"class_type": ..., "inputs": ...}}


async def _png(body: Body) -> Found:
    found = Found(container="png")
    for _ in range(MAX_CHUNKS):
        length, kind = struct.unpack(">I4s", await body.exactly(8, "chunk header"))
        if length > 2**31 - 1:
            raise Invalid("A PNG chunk says it is larger than PNG allows.", code="invalid_workflow")
        if kind in (b"tEXt", b"zTXt", b"iTXt") and length <= MAX_TEXT_BYTES:
            keyword, text = _png_text(kind, await body.exactly(length, "text chunk"))
            await body.skip(4)  # CRC
            _keep(found, keyword, text)
        elif kind in (b"tEXt", b"zTXt", b"iTXt"):
            keyword = (await body.exactly(80, "text chunk")).partition(b"\x00")[0]  # a keyword is at most 79 bytes
            if keyword in KEYWORDS:
                raise TooLarge(f"The image's {keyword.decode()} is larger than {MAX_TEXT_BYTES // (1024 * 1024)} MB.")
            await body.skip(length - 80 + 4)
        else:
            await body.skip(length + 4)
        if kind == b"IEND":
            return found
    raise Invalid("The PNG has more chunks than any image ComfyUI saves.", code="invalid_workflow")


def _png_text(kind: bytes, data: bytes) -> tuple[bytes, bytes]:
    keyword, _, rest = data.partition(b"\x00")
    if kind == b"tEXt":
        return keyword, rest
    if kind == b"zTXt":
        return keyword, _inflate(rest[1:])  # one byte of compression method
    compressed, _method = rest[:1] == b"\x01", rest[1:2]
    _language, _, rest = rest[2:].partition(b"\x00")
    _translated, _, text = rest.partition(b"\x00")
    return keyword, _inflate(text) if compressed else text


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_TEXT_BYTES + 1)
    except zlib.error:
        raise Invalid("A compressed text chunk of the image is damaged.", code="invalid_workflow") from None
    if len(out) > MAX_TEXT_BYTES:
        raise TooLarge(f"A text chunk of the image inflates to more than {MAX_TEXT_BYTES // (1024 * 1024)} MB.")
    return out


def json_kind(value: object) -> str:
    """What a parsed JSON value is, as JSON names it: "an array", "a string", "null"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    return {dict: "an object", list: "an array", str: "a string"}.get(type(value), "a number")


def _keep(found: Found, keyword: bytes, text: bytes) -> None:
    if keyword not in KEYWORDS:
        return
    try:
        graph = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise Invalid(f"The image's {keyword.decode()} is not JSON.", code="invalid_workflow") from None
    if not isinstance(graph, dict):
        raise Invalid(f"The image's {keyword.decode()} is not a JSON object.", code="invalid_workflow")
    if keyword == b"workflow":
        found.workflow = graph
    else:
        found.prompt = graph


async def _webp(body: Body, head: bytes) -> Found:
    found = Found(container="webp")
    if await body.exactly(4, "header") != b"WEBP":
        raise UnsupportedMedia("A RIFF file that is not a WebP image.")
    for _ in range(MAX_CHUNKS):
        if not await body.has(8):
            return found
        kind, length = struct.unpack("<4sI", await body.exactly(8, "chunk header"))
        padded = length + (length & 1)
        if kind == b"EXIF" and length > MAX_TEXT_BYTES:
            raise TooLarge(f"The image's EXIF is larger than {MAX_TEXT_BYTES // (1024 * 1024)} MB.")
        if kind == b"EXIF":
            for keyword, text in _exif_texts(await body.exactly(length, "EXIF chunk")):
                _keep(found, keyword, text)
            await body.skip(padded - length)
        else:
            await body.skip(padded)
    raise Invalid("The WebP has more chunks than any image ComfyUI saves.", code="invalid_workflow")


def _exif_texts(exif: bytes) -> list[tuple[bytes, bytes]]:
    """The `keyword:text` ASCII values of EXIF's first IFD (how ComfyUI stores graphs in a WebP)."""
    if exif.startswith(b"Exif\x00\x00"):
        exif = exif[6:]
    if len(exif) < 8 or exif[:2] not in (b"II", b"MM"):
        return []
    order = "<" if exif[:2] == b"II" else ">"
    (offset,) = struct.unpack(order + "I", exif[4:8])
    if offset + 2 > len(exif):
        return []
    (count,) = struct.unpack(order + "H", exif[offset : offset + 2])
    texts: dict[bytes, bytes] = {}  # the first value of each keyword: entries pointing at one value are not copied again
    for number in range(min(count, 1000)):
        at = offset + 2 + number * 12
        if at + 12 > len(exif):
            break
        _tag, kind, length, value = struct.unpack(order + "HHII", exif[at : at + 12])
        if kind != 2 or length <= 4 or value + length > len(exif):
            continue
        keyword = exif[value : value + min(length, 16)].partition(b":")[0].lower()
        if keyword in KEYWORDS and keyword not in texts:
            texts[keyword] = exif[value + len(keyword) + 1 : value + length].rstrip(b"\x00")
        if len(texts) == len(KEYWORDS):
            break
    return list(texts.items())
