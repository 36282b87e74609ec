"""A catalog's cut sent from a worker process as plain rows (cheap to pickle, on both sides), and
made into pieces again here. Chunk keys and content hashes are each process's own `hash()`,
so none are sent: a cut here finds the chunks again and takes each one's piece by its place
(`text.cut_region`)."""

from __future__ import annotations

from dataclasses import dataclass

from ..map.entry import EntryRow, entry_of_row, entry_row
from .text import Piece, shared_length


@dataclass(frozen=True, slots=True)
class CutRows:
    """A catalog cut in a worker process (`cut_rows`): the digest of the text it cut, and the
    piece of each chunk in file order, as plain rows (cheap to send back). Chunk keys are each
    process's own hashes, so none are sent: a cut here finds the same chunks again and takes
    each one's piece by its place (`text.cut_region`), parsing none of them."""

    digest: str
    prefixes: list[bytes]
    rows: list[PieceRow]


# A piece as a plain tuple: the index of its prefix in a list sent beside, its length, version,
# file, whether it is unusable, and its shown entry's row.
PieceRow = tuple[int, int, int | None, str | None, bool, EntryRow | None]


def piece_row(piece: Piece, prefixes: dict[bytes, int]) -> PieceRow:
    """A piece as a row, its prefix numbered in `prefixes` (each distinct one once)."""
    shown = piece.shown
    return (prefixes.setdefault(piece.prefix, len(prefixes)), piece.length, piece.version, piece.file, piece.unusable, None if shown is None else entry_row(shown))


def pieces_of_rows(prefixes: list[bytes], rows: list[PieceRow]) -> list[Piece]:
    """Pieces sent by a worker process as rows (`piece_row`), in order. Their content hashes are
    that process's own and are not sent: 0 (none) here."""
    return [
        Piece(prefixes[prefix], shared_length(length), version, file, None if shown is None else entry_of_row(shown), unusable)
        for prefix, length, version, file, unusable, shown in rows
    ]
