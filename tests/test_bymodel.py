"""The map body's by_model in buckets (`service/map/bymodel.py`): a change rewrites its own bucket."""

from __future__ import annotations

import bisect
import random

import orjson

from service.map.bymodel import MODEL_BUCKETS, ByModel


def said(parts: list[bytes]) -> dict[str, list[int]]:
    return orjson.loads(b"{" + b"".join(parts) + b"}")


def test_the_parts_always_say_every_model_and_only_changed_buckets_are_written_again() -> None:
    rng = random.Random(7)
    models = ByModel({})
    parts = models.parts()
    assert said(parts) == {}
    truth: dict[int, list[int]] = {}
    for step in range(2000):
        model_id, version_id = rng.randrange(1, 300), rng.randrange(1, 50)
        listed = truth.setdefault(model_id, [])
        if version_id in listed:  # a version that leaves, else one that comes
            models.drop(model_id, version_id)
            listed.remove(version_id)
        else:
            models.add(model_id, version_id)
            bisect.insort(listed, version_id)
        if not listed:
            del truth[model_id]
        changed = models.changed_parts()
        assert len(changed) <= 3  # its bucket, and the old and new first bucket when that moved
        for number, part in changed.items():
            parts[number] = part
        if step % 50 == 0:
            assert said(parts) == {str(m): v for m, v in truth.items()} and models.versions == truth
    assert len(parts) == MODEL_BUCKETS and parts == models.parts()


def test_a_map_whose_first_model_leaves_moves_the_comma() -> None:
    models = ByModel({1: [10], 2: [20]})
    parts = models.parts()
    models.drop(1, 10)
    for number, part in models.changed_parts().items():
        parts[number] = part
    assert said(parts) == {"2": [20]}
    models.add(1, 11)
    for number, part in models.changed_parts().items():
        parts[number] = part
    assert said(parts) == {"1": [11], "2": [20]}
