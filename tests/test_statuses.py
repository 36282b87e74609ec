"""One status vocabulary: every status the map can send is known to OpenAPI, the events, the page
and the README, and the map sends no other."""

from __future__ import annotations

import re
from pathlib import Path

import orjson

from service.http.openapi import DOCUMENT_BYTES
from service.map.status import (
    MISSING,
    PRESENT,
    PRESENT_MISMATCH,
    QUEUED,
    UNAVAILABLE,
    Status,
    Transfer,
    status_of,
)

ROOT = Path(__file__).resolve().parent.parent
DOC = orjson.loads(DOCUMENT_BYTES)


def test_openapi_knows_every_status_in_the_map_and_in_change_events() -> None:
    schemas = DOC["components"]["schemas"]
    entry_statuses = _enum_at(schemas, "status")
    change_statuses = set(schemas["ChangeEvent"]["properties"]["changes"]["additionalProperties"]["enum"]) - {None}
    assert {status.value for status in Status} == entry_statuses == change_statuses


def test_the_page_has_a_label_for_every_status() -> None:
    script = (ROOT / "service" / "http" / "static" / "app.js").read_text()
    table = re.search(r"const STATUS_LABELS = \{(.*?)\};", script, re.S)
    assert table is not None
    labelled = set(re.findall(r"^\s*(\w+):", table.group(1), re.M))
    assert labelled == {status.value for status in Status}


def test_the_readme_describes_every_status_as_the_code_does() -> None:
    readme = (ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\s*\| `(\w+)` \| (.+?) \|$", readme, re.M))
    for status in Status:
        assert rows.get(status.value) == status.description, status


def test_every_slot_the_map_writes_says_a_status() -> None:
    slots = [PRESENT, MISSING, QUEUED, UNAVAILABLE, PRESENT_MISMATCH, Transfer("queued").slot(), Transfer("downloading", 5, 10).slot(), Transfer("downloading", 5).slot()]
    assert {status_of(slot) for slot in slots} == set(Status)
    for slot in slots:
        assert orjson.loads(b'{"status":"' + slot)["status"] == status_of(slot)  # the slot closes the entry as valid JSON


def _enum_at(schemas: dict, field: str) -> set[str]:
    """The enum of `field` in the map entry's schema."""
    for schema in schemas.values():
        properties = schema.get("properties", {})
        if field in properties and "dl_bytes" in properties:
            return set(properties[field]["enum"])
    raise AssertionError("no map entry schema")
