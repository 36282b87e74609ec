"""Reading what people copy into CivitAI ids (`civitai.refs`): pure, no network."""

from __future__ import annotations

import pytest

from service.civitai.refs import MAX_REF_CHARS, Reference, read_reference
from service.errors import Invalid

TAKEN = {
    "an id": ("2514310", Reference(2514310)),
    "an id with spaces": ("  2514310\n", Reference(2514310)),
    "a model page with its version": ("https://civitai.com/models/827184/wai-illustrious-sdxl?modelVersionId=2514310", Reference(2514310, 827184)),
    "without the slug": ("https://civitai.com/models/827184?modelVersionId=2514310", Reference(2514310, 827184)),
    "civitai.red": ("https://civitai.red/models/827184?modelVersionId=2514310", Reference(2514310, 827184)),
    "www and a fragment": ("https://www.civitai.com/models/827184/x?modelVersionId=2514310#details", Reference(2514310, 827184)),
    "no scheme": ("civitai.com/models/827184?modelVersionId=2514310", Reference(2514310, 827184)),
    "a model page alone": ("https://civitai.com/models/827184/wai-illustrious-sdxl", Reference(None, 827184)),
    "a version page": ("https://civitai.com/model-versions/2514310", Reference(2514310)),
    "a download link": ("https://civitai.com/api/download/models/2514310?type=Model&format=SafeTensor", Reference(2514310)),
    "an AIR": ("urn:air:sdxl:lora:civitai:827184@2514310", Reference(2514310, 827184)),
    "an AIR with a format": ("urn:air:flux1:checkpoint:civitai:618692@691639.safetensors", Reference(691639, 618692)),
    "an AIR without a version": ("urn:air:sdxl:checkpoint:civitai:827184", Reference(None, 827184)),
    "an AIR in capitals": ("URN:AIR:SDXL:LORA:CIVITAI:827184@2514310", Reference(2514310, 827184)),
}


@pytest.mark.parametrize(("text", "expected"), TAKEN.values(), ids=TAKEN.keys())
def test_what_people_copy_is_read(text: str, expected: Reference) -> None:
    assert read_reference(text) == expected


REFUSED = {
    "empty": "",
    "zero": "0",
    "a negative id": "-5",
    "too many digits": "1" * 20,
    "beyond the largest id": str(2**53),
    "another host": "https://evil.example/models/827184?modelVersionId=2514310",
    "a host that ends like civitai": "https://notcivitai.com/models/1",
    "a lookalike subdomain": "https://civitai.com.evil.example/models/1",
    "another scheme": "javascript:alert(1)",
    "ftp": "ftp://civitai.com/models/1",
    "a page that is no model": "https://civitai.com/images/4242",
    "a bad version in the query": "https://civitai.com/models/1?modelVersionId=abc",
    "a bad model": "https://civitai.com/models/abc",
    "an AIR of another source": "urn:air:sdxl:lora:huggingface:1@2",
    "a broken AIR": "urn:air:sdxl:lora:civitai:x@y",
    "arabic digits": "\u0662\u0665",
    "a huge text": "https://civitai.com/models/1?" + "a=b&" * MAX_REF_CHARS,
}


@pytest.mark.parametrize("text", REFUSED.values(), ids=REFUSED.keys())
def test_anything_else_is_refused_with_what_is_taken(text: str) -> None:
    with pytest.raises(Invalid) as refused:
        read_reference(text)
    assert refused.value.code == "invalid_reference" and len(refused.value.detail) < 400


def test_the_configured_origin_is_taken_too() -> None:
    assert read_reference("http://127.0.0.1:9/models/5?modelVersionId=6", frozenset({"127.0.0.1"})) == Reference(6, 5)
    with pytest.raises(Invalid):
        read_reference("http://127.0.0.1:9/models/5?modelVersionId=6")


def test_a_link_with_many_query_fields_is_read_and_too_many_are_refused_not_an_error() -> None:
    assert read_reference("https://civitai.com/models/1?modelVersionId=2" + "&utm_x=1" * 30) == Reference(2, 1)
    with pytest.raises(Invalid):
        read_reference("https://civitai.com/models/1?modelVersionId=2" + "&x=1" * 300)


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example\\@civitai.com/models/1",  # browsers read the host as evil.example
        "https://user:pass@civitai.com/models/1",
        "https://civitai.com:abc/models/1",
        "https://civitai.com:99999/models/1",
    ],
)
def test_urls_browsers_may_read_as_another_host_are_refused(url: str) -> None:
    with pytest.raises(Invalid):
        read_reference(url)


@pytest.mark.parametrize("query", ["ModelVersionId=5", "MODELVERSIONID=5", "modelversionid=5"])
def test_the_version_is_read_whatever_its_casing(query: str) -> None:
    assert read_reference(f"https://civitai.com/models/1?{query}") == Reference(5, 1)


@pytest.mark.parametrize("query", ["modelVersionId=", "modelVersionId=5&modelVersionId=6"])
def test_an_empty_or_doubled_version_is_refused_never_the_newest(query: str) -> None:
    with pytest.raises(Invalid):
        read_reference(f"https://civitai.com/models/1?{query}")
