"""The changes a person can ask for, each a pure plan over fresh readings of both catalogs:
add, promote, remove, import, and writing a verified hash into an entry."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from ..civitai.routing import (
    MappedVersion,
    category_display_name,
    lora_category,
    version_to_entry,
)
from ..disk.folders import canonical_folder
from ..disk.names import check_file_name, check_folder_text, printable
from ..disk.scan import FolderSource, locate
from ..errors import Conflict, Invalid, NotFound, ServiceError
from ..map.entry import sha256_hex
from .document import (
    CATALOG_NAMES,
    Entry,
    add_entry,
    find_file,
    find_version,
    iter_entries,
    remove_entries,
    version_id_of,
)
from .transaction import Answer, Plan, Readings


def added_now() -> str:
    """When an entry is added, as the catalog keeps it (`added_at`, UTC, to the second)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def plan_add(readings: Readings, mapped: MappedVersion) -> Plan:
    """Add a mapped CivitAI version to models.json unless that version or file is already catalogued."""
    entry = mapped.entry
    assert entry is not None and mapped.category is not None
    version_id = entry["civitai_version_id"]
    for name in CATALOG_NAMES:
        doc = readings[name].doc
        found = find_version(doc, version_id)
        if found is not None:
            return Plan({"status": "already_exists", "file": found[1].get("file")})
        if find_file(doc, entry["file"], entry["dest"]):
            return Plan({"status": "already_exists", "file": entry["file"]})
    add_entry(readings["models"].doc, mapped.category, category_display_name(mapped.category), dict(entry, added_at=added_now()))
    answer = {"status": "added", "file": entry["file"], "name": entry["name"], "category": mapped.category, "dest": entry["dest"]}
    return Plan(answer, writes=("models",))


def plan_promote(readings: Readings, version_id: int) -> Plan:
    """Move every models.json entry of a LoRA version to loras.json; finish a move a crash cut short.

    A version can be catalogued more than once (two files); all of its entries move together,
    and nothing leaves models.json that loras.json does not hold.
    """
    models, loras = readings["models"].doc, readings["loras"].doc
    in_models = [entry for _c, entry in iter_entries(models) if version_id_of(entry) == version_id]
    in_loras = [entry for _c, entry in iter_entries(loras) if version_id_of(entry) == version_id]
    if not in_models:
        if in_loras:
            return Plan({"status": "already_exists", "file": in_loras[0].get("file")})
        raise NotFound(f"Version {version_id} is not in models.json.", code="not_in_catalog")
    for entry in in_models:
        dest = entry.get("dest")
        if not isinstance(dest, str) or canonical_folder(dest).split("/")[0] != "loras":
            raise Invalid(
                f"Version {version_id} is filed under {dest!r}, not 'loras'; only LoRAs can be promoted.",
                code="not_a_lora",
            )
    held = {(entry.get("file"), canonical_folder(str(entry.get("dest", "")))) for entry in in_loras}
    categories: list[str] = []
    for entry in in_models:
        if (entry.get("file"), canonical_folder(str(entry["dest"]))) in held:
            continue  # loras.json got it but models.json was never saved: only the removal is left
        category = lora_category(entry.get("base_model") if isinstance(entry.get("base_model"), str) else None)
        add_entry(loras, category, category_display_name(category), entry)
        categories.append(category)
    remove_entries(models, in_models)
    writes = ("loras", "models") if categories else ("models",)
    if in_loras:
        return Plan({"status": "already_exists", "file": in_loras[0].get("file")}, writes=writes)
    return Plan({"status": "promoted", "file": in_models[0].get("file"), "category": categories[0]}, writes=writes)


def plan_remove(readings: Readings, file: str, on_disk: Callable[[Entry], bool]) -> Plan:
    """Remove every entry with that file name from whichever catalogs hold it, unless its file is
    on disk; the answer names the catalog it left (and every one, when both held it)."""
    matches = {name: [entry for _c, entry in find_file(readings[name].doc, file)] for name in CATALOG_NAMES}
    holding = tuple(name for name in CATALOG_NAMES if matches[name])
    if not holding:
        raise NotFound(f"{file!r} is in neither catalog ({', '.join(f'{name}.json' for name in CATALOG_NAMES)}).", code="not_in_catalog")
    for name in holding:
        for entry in matches[name]:
            if on_disk(entry):
                raise Conflict(
                    f"{file!r} is still on disk under {entry.get('dest')!r}; delete the file first, then remove it from the catalog.",
                    code="file_on_disk",
                )
    for name in holding:
        remove_entries(readings[name].doc, matches[name])
    return Plan({"status": "removed", "file": file, "catalog": holding[0], "catalogs": list(holding)}, writes=holding)


def plan_record_hash(readings: Readings, version_id: int, file: str, sha256: str) -> Plan:
    """Write a verified SHA256 (as CivitAI spells it, upper-case) into every entry of that
    version and file that has no SHA256 yet; an entry with one keeps it."""
    writes = []
    for name in CATALOG_NAMES:
        changed = False
        for _category, entry in iter_entries(readings[name].doc):
            if version_id_of(entry) == version_id and entry.get("file") == file and sha256_hex(entry.get("hash")) is None:
                entry["hash"] = sha256.upper()
                changed = True
        if changed:
            writes.append(name)
    return Plan({"status": "recorded" if writes else "unchanged", "file": file}, writes=tuple(writes))


@dataclass(frozen=True, slots=True)
class ImportCandidate:
    """A file on disk that CivitAI named a version for: where it is, and that version's body (JSON)."""

    file: str
    folder: str  # logical, as `dest` says it
    version: bytes


def plan_import(readings: Readings, candidates: tuple[ImportCandidate, ...], dry_run: bool) -> Plan:
    """Add a models.json entry for each identified file no catalog lists, mapped as an add maps its
    version, with the file's real name and folder. Say what was skipped and why."""
    models = readings["models"].doc
    added: list[Answer] = []
    skipped: list[Answer] = []
    taken: set[int] = set()
    for candidate in candidates:
        item: Answer = {"file": printable(candidate.file), "dest": printable(candidate.folder)}
        try:
            body = orjson.loads(candidate.version)
            item["version_id"] = body.get("id") if isinstance(body, dict) else None
            check_file_name(candidate.file)
            check_folder_text(candidate.folder)
            mapped = version_to_entry(body, downloaded=False)  # the file is there, under its own name
        except (ServiceError, orjson.JSONDecodeError) as exc:
            skipped.append({**item, "reason": "not_mappable", "detail": getattr(exc, "detail", "CivitAI's answer is not JSON")})
            continue
        if mapped.entry is None or mapped.category is None:
            skipped.append({**item, "reason": "restricted", "detail": mapped.restricted_reason})
            continue
        entry = dict(mapped.entry, file=candidate.file, dest=candidate.folder)
        version_id = entry["civitai_version_id"]
        if version_id in taken:
            skipped.append({**item, "reason": "another_file_of_this_version"})
            continue
        if any(find_version(readings[name].doc, version_id) for name in CATALOG_NAMES):
            skipped.append({**item, "reason": "version_in_catalog"})
            continue
        if any(find_file(readings[name].doc, candidate.file, candidate.folder) for name in CATALOG_NAMES):
            skipped.append({**item, "reason": "file_in_catalog"})
            continue
        taken.add(version_id)
        if not dry_run:
            add_entry(models, mapped.category, category_display_name(mapped.category), dict(entry, added_at=added_now()))
        added.append({**item, "name": entry["name"], "category": mapped.category})
    answer = {"status": "dry_run" if dry_run else "imported", "added": added, "skipped": skipped}
    return Plan(answer, writes=("models",) if added and not dry_run else ())


@dataclass(frozen=True, slots=True)
class FileOnDisk:
    """Looks on disk now, so a file the watcher has not reported yet counts (picklable, unlike a closure)."""

    sources: tuple[FolderSource, ...]
    file: str

    def __call__(self, entry: Entry) -> bool:
        return locate(self.sources, self.file, canonical_folder(str(entry.get("dest", ""))))
