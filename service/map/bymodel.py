"""The map body's `by_model`, written as MODEL_BUCKETS parts by model id.

A version that comes or goes changes one model's list. Written as one part, the whole object
was serialized again for it: about 12 MB at a million versions, 90 ms of the event loop for
each add. In buckets, only the bucket of that model is (a sixty-fourth of it).
"""

from __future__ import annotations

import bisect

import orjson

MODEL_BUCKETS = 64


class ByModel:
    """Every model's versions, ascending, and the body parts that say them."""

    __slots__ = ("versions", "_buckets", "_texts", "_dirty", "_first")

    def __init__(self, versions: dict[int, list[int]]) -> None:
        self.versions = versions  # model id -> its versions, ascending (the lookups read it)
        self._buckets: list[dict[int, list[int]]] = [{} for _ in range(MODEL_BUCKETS)]
        for model_id, listed in versions.items():
            self._buckets[model_id % MODEL_BUCKETS][model_id] = listed
        self._texts = [_text(bucket) for bucket in self._buckets]  # each bucket's members, without braces
        self._dirty: set[int] = set()
        self._first = _first(self._texts)

    def parts(self) -> list[bytes]:
        """The buckets as body parts, between `{` and `}`: each after the first that holds a
        model starts with a comma."""
        return [self._part(number) for number in range(MODEL_BUCKETS)]

    def add(self, model_id: int, version_id: int) -> None:
        listed = self.versions.get(model_id)
        if listed is None:
            listed = self.versions[model_id] = self._buckets[model_id % MODEL_BUCKETS][model_id] = []
        bisect.insort(listed, version_id)
        self._dirty.add(model_id % MODEL_BUCKETS)

    def drop(self, model_id: int, version_id: int) -> None:
        listed = self.versions.get(model_id)
        if listed is None or version_id not in listed:
            return
        listed.remove(version_id)
        if not listed:
            del self.versions[model_id], self._buckets[model_id % MODEL_BUCKETS][model_id]
        self._dirty.add(model_id % MODEL_BUCKETS)

    def changed_parts(self) -> dict[int, bytes]:
        """The parts that changed since the last call, by bucket number."""
        if not self._dirty:
            return {}
        for number in self._dirty:
            self._texts[number] = _text(self._buckets[number])
        first = _first(self._texts)
        changed = self._dirty | ({self._first, first} if first != self._first else set())
        self._dirty, self._first = set(), first
        return {number: self._part(number) for number in changed if number < MODEL_BUCKETS}

    def _part(self, number: int) -> bytes:
        text = self._texts[number]
        return b"," + text if text and number != self._first else text


def _text(bucket: dict[int, list[int]]) -> bytes:
    return orjson.dumps(bucket, option=orjson.OPT_NON_STR_KEYS)[1:-1]


def _first(texts: list[bytes]) -> int:
    """The first bucket that holds a model (MODEL_BUCKETS when none does)."""
    return next((number for number, text in enumerate(texts) if text), MODEL_BUCKETS)
