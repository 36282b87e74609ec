"""What requests carry in their paths, queries and headers, read once and checked: ids (one
parser for every id a route takes), switches, and the caching headers of the map."""

from __future__ import annotations

import functools
from collections.abc import Mapping

from multidict import MultiMapping

from ..errors import Invalid
from ..map.entry import id_of_digits

MAX_POINT_IDS = 500


def parse_id(raw: str, what: str, code: str) -> int:
    """An id as CivitAI's URLs write it (`id_of_digits`: ASCII digits, 1 to MAX_ID, as the map
    takes from catalogs); Invalid otherwise."""
    number = id_of_digits(raw)
    if number is None:
        shown = raw[:20]
        raise Invalid(f"The {what} must be a positive whole number, as in CivitAI's URLs; {shown!r} is not one.", code=code)
    return number


def path_id(match_info: Mapping[str, str], key: str, what: str, code: str) -> int:
    """The id a route's path holds under `key`."""
    return parse_id(match_info[key], what, code)


def ids_in_query(query: MultiMapping[str], key: str) -> list[int]:
    """The ids of `?key=1,2&key=3` (at most MAX_POINT_IDS)."""
    ids: list[int] = []
    for value in query.getall(key, []):
        for part in value.split(","):
            part = part.strip()
            if part:
                ids.append(parse_id(part, f"?{key}= list's every item", "invalid_ids"))
    if len(ids) > MAX_POINT_IDS:
        raise Invalid(f"?{key}= takes at most {MAX_POINT_IDS} ids at once.", code="too_many_ids")
    return ids


TRUE_WORDS = ("true", "1", "yes", "on")  # what a yes/no query parameter takes (OpenAPI lists them from here)
FALSE_WORDS = ("false", "0", "no", "off")


def switch(raw: str, name: str) -> bool:
    """A yes/no query value: 1/true/yes/on or 0/false/no/off (empty is no)."""
    value = raw.strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS or value == "":
        return False
    raise Invalid(f"{name} must be true or false, not {raw!r}.", code="bad_query")


@functools.lru_cache(maxsize=64)
def accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding header takes gzip (not with q=0)."""
    for token in header.split(","):
        name, _, params = token.strip().partition(";")
        if name.strip().lower() in ("gzip", "x-gzip"):
            q = params.strip().lower()
            return not (q.startswith("q=") and _q_is_zero(q[2:]))
    return False


def _q_is_zero(value: str) -> bool:
    try:
        return float(value) == 0
    except ValueError:
        return False


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an If-None-Match header names this ETag (weakly, or `*`)."""
    if not if_none_match:
        return False
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False
