"""How a catalog's text lays its entries out, learnt from the text, and where its entries are.

Indented (this service's two spaces, four, tabs; LF or CRLF): each entry of a category's
"models" list starts and ends with a line break and the indent of its depth, bytes found
nowhere else (JSON strings hold no raw line breaks, and deeper lines are indented further).
Those texts are cut at C speed by splitting at that end mark.

On one line (minified, or entries that start on the line of their "["): nothing marks an
entry's end but its closing brace. Each entry is found from where the last one ended (a
comma, or the next models list), and its end is the first of its closing braces where it
parses (`inline_entries`).

Either way nothing is taken on trust: a cut is checked whole (`text.checked_text`).
"""

from __future__ import annotations

import json
import json.scanner
import re
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

from .codec import no_constants

_SPACE = rb"[ \t\r\n]*"


class Unsplittable(Exception):
    """The text does not cut into entries this way; read it whole."""


@dataclass(frozen=True, slots=True)
class Layout:
    """How a text's entries are laid out: what ends an entry of a models list (its last line,
    or its closing brace), the first line of an indented entry and where its "{" is in it, and
    the structure between two entries of one list."""

    end: bytes
    open: bytes
    lead: int  # from where `open` is found to the entry's "{"
    plain: bytes
    inline: bool = False  # on one line: entries are found by scanning (`inline_entries`)

    @classmethod
    def indented(cls, before: bytes, newline: bytes) -> Layout:
        return cls(before + b"}", before + b"{" + newline, len(before), b"," + before)

    @classmethod
    def on_one_line(cls, plain: bytes) -> Layout:
        return cls(b"}", b"", 0, plain, inline=True)


NATIVE = Layout.indented(b"\n        ", b"\n")  # as this service (and `indent=2`) writes a catalog
LAYOUT_PROBE = 1 << 20  # the first entry is looked for this far into the text
# The first entry of a models list that starts on a line of its own: its line break and indent.
_FIRST_ENTRY = re.compile(rb'"models"' + _SPACE + rb":" + _SPACE + rb"\[[ \t]*(\r?\n[ \t]*)\{(\r?\n)")
# Where an entry starts: after a comma from the entry before, or as the first of a models list.
_NEXT = re.compile(_SPACE + rb"," + _SPACE + rb"\{")
_LIST = re.compile(rb'"models"' + _SPACE + rb":" + _SPACE + rb"\[" + _SPACE + rb"\{")


_SCAN = json.scanner.make_scanner(json.JSONDecoder(parse_constant=no_constants))


def layout_of(head: bytes | memoryview) -> Layout:
    """The layout of a text from its start (`LAYOUT_PROBE` bytes are enough), from its first
    entry: NATIVE when it is this service's, or when there is none (a text of no entries cuts
    in any layout)."""
    indented, inline = _FIRST_ENTRY.search(head), _LIST.search(head)
    if indented is not None and (inline is None or indented.start() <= inline.start()):
        layout = Layout.indented(indented.group(1), indented.group(2))
        return NATIVE if layout == NATIVE else layout
    if inline is None:
        return NATIVE
    head = bytes(head)
    end = _entry_end(head, inline.end() - 1, len(head))
    after = _NEXT.match(head, end) if end is not None else None
    return Layout.on_one_line(head[end : after.end() - 1] if end is not None and after is not None else b",")  # else: the cut says what is wrong


def entry_lead(chunk: bytes) -> int:
    """Where the entry starts in a chunk of a text on one line (-1: it holds none): after the
    comma of a plain chunk, else at the first models list that starts with an entry."""
    found = _NEXT.match(chunk) or _LIST.search(chunk)
    return found.end() - 1 if found is not None else -1


def inline_entries(raw: bytes, start: int, stop: int) -> Iterator[tuple[int, int]]:
    """The entries of a text on one line in raw[start:stop], which starts where an entry ended
    (or at the start of the text): where each one's chunk starts and where its "}" ends.
    Stops at the last entry that ends within the stretch (or at one that does not parse: the
    check of the cut then refuses the text).

    An entry ends at the first of its "}" where it parses (a shorter text that parses as an
    object would end the same object sooner); after a few that do not (braces in strings,
    nested objects), the C scanner says where it ends."""
    position = start
    while True:
        found = _NEXT.match(raw, position, stop) or _LIST.search(raw, position, stop)
        if found is None:
            return
        first = found.end() - 1
        end = _entry_end(raw, first, stop)
        if end is None:
            return  # the stretch ends inside this entry
        yield position, end
        position = end


_GUESSES = 8  # closing braces tried as an entry's end before it is scanned


def _entry_end(raw: bytes, first: int, stop: int) -> int | None:
    """Where the entry whose "{" is at `first` ends (None: not within `stop`)."""
    end = first
    for _ in range(_GUESSES):
        end = raw.find(b"}", end, stop) + 1
        if not end:
            return None
        try:
            orjson.loads(raw[first:end])
            return end
        except orjson.JSONDecodeError:
            continue
    window = max(1024, 2 * (end - first))
    while True:  # the scanner over a window that grows: never the rest of a long text for each entry
        text = raw[first : min(stop, first + window)].decode("latin-1")  # one character per byte: positions are the bytes'
        try:
            _entry, length = _SCAN(text, 0)
            return first + length
        except (StopIteration, ValueError, RecursionError):
            if first + window >= stop:
                return None  # not an entry that ends within the stretch: the check of the cut says what is wrong
            window *= 2
