"""Choosing a version's preview image and where it may come from (`civitai.preview_images`): pure."""

from __future__ import annotations

import pytest

from service.civitai.client import BadBody
from service.civitai.preview_images import (
    VersionImage,
    choose,
    image_host_allowed,
    small,
    version_images,
)

BASE = "https://civitai.com"


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://image.civitai.com/xG1/abc/width=450/1.jpeg", True),
        ("https://civitai.red/images/1.png", True),
        ("http://image.civitai.com/1.png", False),  # not https
        ("https://image.civitai.com.evil.example/1.png", False),
        ("https://evilcivitai.com/1.png", False),
        ("https://evil.example\\@image.civitai.com/1.png", False),
        ("https://user@image.civitai.com/1.png", False),
        ("https://image.civitai.com:8443/1.png", False),
        ("https://image.civitai.com:99999/1.png", False),
        ("file:///etc/passwd", False),
        ("javascript:alert(1)", False),
    ],
)
def test_images_come_only_from_civitai_s_hosts(url: str, allowed: bool) -> None:
    assert image_host_allowed(url, BASE) is allowed


def test_the_configured_origin_is_allowed_as_it_is() -> None:
    assert image_host_allowed("http://127.0.0.1:8080/images/1.png", "http://127.0.0.1:8080")
    assert not image_host_allowed("http://127.0.0.1:8081/images/1.png", "http://127.0.0.1:8080")


def test_the_image_is_asked_at_a_small_width() -> None:
    assert small("https://image.civitai.com/a/b/original=true/1.jpeg") == "https://image.civitai.com/a/b/width=450/1.jpeg"
    assert small("https://image.civitai.com/a/b/width=1024/1.jpeg") == "https://image.civitai.com/a/b/width=450/1.jpeg"
    assert small("https://image.civitai.com/a/b/1.jpeg") == "https://image.civitai.com/a/b/1.jpeg"


def test_ratings_old_and_new_and_types_are_read() -> None:
    images = version_images(
        {
            "images": [
                {"url": "v.mp4", "type": "video", "nsfwLevel": 1},
                {"url": "x.png", "nsfwLevel": 8},
                {"url": "unrated.png"},
                {"url": "soft.png", "nsfw": "Soft"},
                {"url": 5},
                "not an image",
            ]
        }
    )
    assert images == [
        VersionImage("v.mp4", False, True),
        VersionImage("x.png", True, False),
        VersionImage("unrated.png", True, None),
        VersionImage("soft.png", True, True),
    ]
    assert choose(images, nsfw=False) == "soft.png"
    assert choose(images, nsfw=True) == "x.png"
    assert version_images({"id": 1}) == []
    with pytest.raises(BadBody):
        version_images({"images": "many"})
