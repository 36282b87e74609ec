"""The pure parts of one download: where a redirect may go, whom the key is for, how long to wait."""

from __future__ import annotations

import pytest

from service.downloads.fetch import DownloadFailed, _next_hop, origin


@pytest.mark.parametrize(
    ("current", "location", "expected"),
    [
        ("https://civitai.com/api/download/models/1", "https://b2.example/file?sig=1", "https://b2.example/file?sig=1"),
        ("https://civitai.com/api/download/models/1", "/other/path", "https://civitai.com/other/path"),
        ("http://127.0.0.1:9/a", "http://127.0.0.1:10/b", "http://127.0.0.1:10/b"),
        ("http://127.0.0.1:9/a", "https://storage.example/b", "https://storage.example/b"),
    ],
)
def test_redirects_that_are_followed(current: str, location: str, expected: str) -> None:
    assert _next_hop(current, location) == expected


@pytest.mark.parametrize(
    ("current", "location", "code"),
    [
        ("https://civitai.com/a", "http://storage.example/b", "insecure_redirect"),  # never downgrade HTTPS
        ("https://civitai.com/a", "ftp://storage.example/b", "bad_redirect"),
        ("https://civitai.com/a", "file:///etc/passwd", "bad_redirect"),
        ("https://civitai.com/a", "", "bad_redirect"),
        ("https://civitai.com/a", None, "bad_redirect"),
    ],
)
def test_redirects_that_are_refused(current: str, location: str | None, code: str) -> None:
    with pytest.raises(DownloadFailed) as caught:
        _next_hop(current, location)
    assert caught.value.code == code


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://CivitAI.com/api/download/models/1", "https://civitai.com"),
        ("http://127.0.0.1:8080/x", "http://127.0.0.1:8080"),
        ("https://civitai.com.evil.example/x", "https://civitai.com.evil.example"),
    ],
)
def test_the_key_goes_only_to_the_same_origin(url: str, expected: str) -> None:
    assert origin(url) == expected
    assert origin(url) != origin("https://civitai.com") or expected == "https://civitai.com"
