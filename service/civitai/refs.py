"""What people copy to name a CivitAI model version, read into ids: a version id, a civitai.com
or civitai.red URL, or an AIR. Pure; nothing here is fetched.

- `2514310`
- `https://civitai.com/models/827184/wai-illustrious?modelVersionId=2514310` (or without the
  slug; without `modelVersionId` it names the model, whose newest version is meant)
- `https://civitai.com/model-versions/2514310`, `https://civitai.com/api/download/models/2514310`
- `urn:air:sdxl:lora:civitai:827184@2514310` (AIR; without `@version` it names the model)

The text comes from a person's clipboard, or from a page: it is read as hostile. Only
CivitAI's hosts (and the configured CivitAI origin's) are taken, ids are checked like every other
id, and the text is cut before anything looks at it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

from ..errors import Invalid
from ..map.entry import id_of_digits
from ..urls import origin_key, plain_authority, split_url
from .client import CIVITAI_HOSTS

MAX_REF_CHARS = 2_000
MAX_QUERY_FIELDS = 200  # tracking links carry many; more than this is refused, never an error
# urn:air:{ecosystem}:{type}:{source}:{id}[@{version}][:{layer}][.{format}]
_AIR = re.compile(r"urn:air:[a-z0-9_.-]{1,40}:[a-z0-9_.-]{1,40}:([a-z0-9_.-]{1,40}):(\d{1,19})(?:@(\d{1,19}))?(?::[^.\s]{1,40})?(?:\.[a-z0-9]{1,20})?", re.IGNORECASE)
WHAT_IS_TAKEN = (
    "a version id (2514310), a civitai.com or civitai.red URL (…/models/827184?modelVersionId=2514310, "
    "…/model-versions/2514310), or an AIR (urn:air:sdxl:lora:civitai:827184@2514310)"
)


@dataclass(frozen=True, slots=True)
class Reference:
    """A version by its id, or a model (its newest version) when no version was named."""

    version_id: int | None
    model_id: int | None = None


def read_reference(text: str, extra_hosts: frozenset[str] = frozenset()) -> Reference:
    """The ids a reference names; Invalid (400 `invalid_reference`) for anything else."""
    if not isinstance(text, str):
        raise _refused("The reference must be a string: " + WHAT_IS_TAKEN + ".")
    raw = text.strip()
    if not raw or len(raw) > MAX_REF_CHARS:
        raise _refused(f"Name a model version with {WHAT_IS_TAKEN}.")
    if raw.isascii() and raw.isdigit():
        return Reference(_id(raw))
    if raw[:8].lower() == "urn:air:":
        return _air(raw)
    if "://" not in raw and _civitai_host(raw.split("/", 1)[0].lower(), extra_hosts):
        raw = "https://" + raw  # copied without its scheme
    return _url(raw, extra_hosts)


def _air(raw: str) -> Reference:
    match = _AIR.fullmatch(raw)
    if match is None:
        raise _refused(f"{_shown(raw)} is not an AIR like urn:air:sdxl:lora:civitai:827184@2514310.")
    source, model, version = match.groups()
    if source.lower() != "civitai":
        raise _refused(f"That AIR names a model on {source!r}; only CivitAI's (…:civitai:…) can be added.")
    return Reference(_id(version) if version else None, _id(model))


def _url(raw: str, extra_hosts: frozenset[str]) -> Reference:
    not_a_url = _refused(f"{_shown(raw)} is not a URL, a version id or an AIR; send {WHAT_IS_TAKEN}.")
    parts = split_url(raw)
    if parts is None:
        raise not_a_url
    try:
        query = parse_qsl(parts.query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS)
    except ValueError:
        raise not_a_url from None
    scheme, host, _port = origin_key(parts)
    if scheme not in ("http", "https") or not host:
        raise not_a_url
    if not plain_authority(parts):
        raise _refused(f"{_shown(raw)} names a user or odd characters before its host; send {WHAT_IS_TAKEN}.")
    if not _civitai_host(host, extra_hosts):
        raise _refused(f"{host!r} is not CivitAI; send {WHAT_IS_TAKEN}.")
    steps = [step for step in parts.path.split("/") if step]
    asked = [value for key, value in query if key.lower() == "modelversionid"]
    if len(steps) >= 2 and steps[0] == "models":
        if len(set(asked)) > 1:
            raise _refused("That URL names more than one version (modelVersionId); send the one to add.")
        return Reference(_id(asked[0]) if asked else None, _id(steps[1]))
    if len(steps) == 2 and steps[0] == "model-versions":
        return Reference(_id(steps[1]))
    if len(steps) == 4 and steps[:3] == ["api", "download", "models"]:
        return Reference(_id(steps[3]))
    raise _refused(f"That CivitAI URL names no model; send {WHAT_IS_TAKEN}.")


def _civitai_host(host: str, extra_hosts: frozenset[str]) -> bool:
    return host.removeprefix("www.") in CIVITAI_HOSTS or host in extra_hosts


def _id(raw: str) -> int:
    number = id_of_digits(raw)
    if number is None:
        raise _refused(f"{_shown(raw)} is not a CivitAI id (a positive whole number).")
    return number


def _shown(raw: str) -> str:
    return repr(raw[:80] + ("…" if len(raw) > 80 else ""))


def _refused(detail: str) -> Invalid:
    return Invalid(detail, code="invalid_reference")

