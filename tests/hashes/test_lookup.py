"""CivitAI's by-hash answers turned into identities: the file matched by hash, unknown hashes
marked for a retry a day later, and what an import keeps of a version."""

from __future__ import annotations

import orjson
import pytest

from service.civitai.lookup import UNKNOWN_RETRY_S, identities_from_versions
from service.map.entry import MAX_ID

from ..helpers import lora_version

SHA = "ab" * 32
OTHER = "cd" * 32


def version_with(sha256: str, version_id: int = 7) -> dict:
    body = lora_version(version_id, model_id=70)
    body["files"].insert(0, {"id": 1, "name": "training.zip", "type": "Training Data", "hashes": {"SHA256": "EF" * 32}})
    body["files"][1]["hashes"] = {"SHA256": sha256.upper()}
    body["images"] = [{"url": "https://image.civitai.com/x.jpeg"}]
    body["description"] = "<p>long</p>"
    return body


def test_a_known_hash_names_its_version_and_keeps_only_its_file() -> None:
    found = identities_from_versions([version_with(SHA)], [SHA, OTHER], now=100.0)
    identity = found[SHA]
    assert (identity.version_id, identity.model_id, identity.model_name, identity.version_name) == (7, 70, "Lora 70", "v7")
    assert (identity.model_type, identity.base_model, identity.retry_at) == ("LORA", "SDXL 1.0", None)
    kept = orjson.loads(identity.version or b"")
    assert [f["name"] for f in kept["files"]] == ["lora_7.safetensors"], "the file on disk, not CivitAI's first file"
    assert "images" not in kept and "description" not in kept
    assert kept["model"] == {"name": "Lora 70", "type": "LORA"}


def test_an_unanswered_hash_is_unknown_and_asked_again_after_a_day() -> None:
    found = identities_from_versions([], [OTHER.upper()], now=100.0)
    assert not found[OTHER].known and found[OTHER].retry_at == 100.0 + UNKNOWN_RETRY_S


def test_bodies_that_are_not_versions_are_ignored() -> None:
    broken = version_with(SHA)
    broken["id"] = "7"
    found = identities_from_versions([broken, None, {"files": "x"}], [SHA], now=1.0)
    assert not found[SHA].known


def test_ids_beyond_what_sqlite_and_the_map_hold_are_not_versions() -> None:
    for key, value in (("id", MAX_ID + 1), ("id", 2**63), ("modelId", 2**64 - 1), ("id", True)):
        broken = version_with(SHA)
        broken[key] = value
        assert not identities_from_versions([broken], [SHA], now=1.0)[SHA].known, (key, value)
    largest = version_with(SHA)
    largest["id"] = largest["modelId"] = MAX_ID
    assert identities_from_versions([largest], [SHA], now=1.0)[SHA].version_id == MAX_ID


def test_what_a_version_body_says_is_cut_to_what_the_map_keeps() -> None:
    # A sidecar on disk is read as a version body: its names and trigger words can be any size.
    body = version_with(SHA)
    body["name"] = "\x1b[2J" + "v" * 1_500_000
    body["model"]["name"] = "m" * 10_000
    body["trainedWords"] = ["w" * 1000] * 50_000 + [7]
    body["status"] = "s" * 10_000
    body["files"][1]["metadata"] = {"fp": "f" * 1_500_000, "format": "SafeTensor", "other": "x" * 10_000}
    body["files"][1]["extra"] = ["y" * 10_000]
    body["files"][1]["type"] = "T" * 1_500_000
    body["files"][1]["id"] = "i" * 10_000
    identity = identities_from_versions([body], [SHA], now=1.0)[SHA]
    assert len(identity.version_name or "") == len(identity.model_name or "") == 200
    kept = orjson.loads(identity.version or b"")
    assert len(kept["name"]) == 200 and len(kept["model"]["name"]) == 200
    assert len(kept["trainedWords"]) == 50 and {len(word) for word in kept["trainedWords"]} == {200}
    assert len(kept["status"]) == 200 and kept["files"][0]["metadata"] == {"fp": "f" * 200, "format": "SafeTensor"}
    assert "extra" not in kept["files"][0] and "id" not in kept["files"][0] and len(kept["files"][0]["type"]) == 200
    assert len(identity.version or b"") < 20_000


@pytest.mark.parametrize(("where", "key"), [((), "baseModel"), ((), "name"), (("model",), "type"), (("model",), "name")])
def test_a_body_whose_names_are_not_text_is_no_version(where: tuple[str, ...], key: str) -> None:
    body = version_with(SHA)
    holder = body
    for step in where:
        holder = holder[step]
    holder[key] = {"not": "text"} if key != "type" else 7
    assert not identities_from_versions([body], [SHA], now=1.0)[SHA].known
