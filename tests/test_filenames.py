"""Tests for service.disk.names: one safe file name, one safe relative folder."""

from __future__ import annotations

import pytest

from service.disk.names import (
    PARTIAL_SUFFIXES,
    check_file_name,
    check_relative_folder,
    is_partial_download,
)
from service.errors import Invalid

UNSAFE_NAMES: list[tuple[object, str]] = [
    ("../x.safetensors", "path separator"),
    ("a/b", "path separator"),
    ("a\\b", "path separator"),
    ("/abs", "path separator"),
    ("..", "reference to a folder"),
    (".", "reference to a folder"),
    ("", "is empty"),
    ("   ", "is empty"),
    ("\u3164", "looks empty"),  # Hangul filler
    ("\u115f\u1160", "looks empty"),  # Hangul choseong and jungseong fillers
    ("\uffa0 ", "looks empty"),  # halfwidth Hangul filler
    ("\u2800\u2800", "looks empty"),  # Braille blank
    ("\u17b4\u3164 \u17b5", "looks empty"),
    ("\u3164.safetensors", "draws nothing"),  # looks like a hidden file
    ("lo\u2800ra.safetensors", "draws nothing"),  # looks like lora.safetensors
    ("x\x00y", "control"),
    ("x\ny", "control"),
    ("x\ty.safetensors", "control"),
    ("x\x7fy", "control"),
    ("x\u2028y", "control"),
    ("\u202eevil", "control"),
    ("evil\u2066.safetensors", "control"),
    ("bad\ud800.safetensors", "unpaired surrogate"),
    ("C:evil", "drive prefix"),
    ("c:evil.safetensors", "drive prefix"),
    ("  lead.safetensors", "whitespace"),
    ("trail.safetensors ", "whitespace"),
    (".hidden", "starts with '.'"),
    (".models.json.tmp", "starts with '.'"),
    ("x.part", "partial-download"),
    ("x.safetensors.PART", "partial-download"),
    ("x.tmp", "partial-download"),
    ("x.download", "partial-download"),
    ("x.crdownload", "partial-download"),
    ("x.aria2", "partial-download"),
    ("x.partial", "partial-download"),
    ("a" * 244 + ".safetensors", "longer than 255 bytes"),
    ("モ" * 86, "longer than 255 bytes"),
    ("zero\u200bwidth.safetensors", "invisible"),  # U+200B zero width space
    ("\ufeffbom.safetensors", "invisible"),  # U+FEFF byte order mark
    ("soft\u00adhyphen.safetensors", "invisible"),  # U+00AD soft hyphen
    ("word\u2060joiner.safetensors", "invisible"),  # U+2060 word joiner
    ("lrm\u200e.safetensors", "invisible"),  # U+200E left-to-right mark
    ("evil\uff0fpath.safetensors", "separator"),  # fullwidth solidus: NFKC is "/"
    ("evil\uff3cpath.safetensors", "separator"),  # fullwidth reverse solidus: NFKC is "\\"
    ("\uff0e\uff0e", "reference to a folder"),  # fullwidth full stops: NFKC is ".."
    ("division\u2215slash.safetensors", "separator"),  # looks like "/" wherever it is shown
    ("fraction\u2044slash.safetensors", "separator"),
    ("big\u29f8solidus.safetensors", "separator"),
    ("reverse\u29f5solidus.safetensors", "separator"),  # reverse solidus operator: looks like "\\"
    ("CON", "Windows device name"),
    ("con.safetensors", "Windows device name"),
    ("Nul.txt", "Windows device name"),
    ("COM1.safetensors", "Windows device name"),
    ("lpt9", "Windows device name"),
    ("COM\u00b9.safetensors", "Windows device name"),  # COM¹, which Windows also reserves
    ("LPT\u00b3", "Windows device name"),
    ("CON .safetensors", "Windows device name"),  # Windows ignores the spaces before the dot
    ("CONIN$", "Windows device name"),  # the console's input and output, reserved as CON is
    ("conout$.safetensors", "Windows device name"),
    ("model.safetensors.", "ends with a dot"),
    ("model...", "ends with a dot"),
    ("what?.safetensors", "Windows does not allow"),
    ('quote".safetensors', "Windows does not allow"),
    ("a<b>.safetensors", "Windows does not allow"),
    ("pipe|.safetensors", "Windows does not allow"),
    ("star*.safetensors", "Windows does not allow"),
    (None, "must be a string"),
    (42, "must be a string"),
    (b"model.safetensors", "must be a string"),
]

SAFE_NAMES = [
    "waiIllustriousSDXL_v160.safetensors",
    "モデル.safetensors",
    "flux1-dev (fp8) v2.safetensors",
    "Detailed Hands XL [v1.0].safetensors",
    "ae.sft",
    "a" * 243 + ".safetensors",  # exactly 255 bytes
    "モ" * 85,  # exactly 255 bytes
    "model.part.safetensors",
    "CONSOLE.safetensors",  # only the device names themselves are reserved
    "com10.safetensors",
    "conin.safetensors",  # CONIN$ is reserved, CONIN is not
    "Ÿ.safetensors",
    "x..y.safetensors",
]


@pytest.mark.parametrize(("name", "problem"), UNSAFE_NAMES)
def test_unsafe_names_are_refused_with_the_problem_named(name: object, problem: str) -> None:
    with pytest.raises(Invalid) as caught:
        check_file_name(name)
    assert caught.value.code == "unsafe_file_name"
    assert caught.value.status == 400
    assert problem in caught.value.detail


@pytest.mark.parametrize("name", SAFE_NAMES)
def test_safe_names_come_back_unchanged(name: str) -> None:
    assert check_file_name(name) is name


@pytest.mark.parametrize("name", ["x\x00y", "x\ny", "\u202eevil", "x\u2028y", "x\x1b[31m"])
def test_detail_never_carries_control_characters_raw(name: str) -> None:
    with pytest.raises(Invalid) as caught:
        check_file_name(name)
    assert not any(char in caught.value.detail for char in name if not char.isprintable())
    assert repr(name) in caught.value.detail


def test_detail_names_what_was_checked() -> None:
    with pytest.raises(Invalid, match=r"^The CivitAI file name 'a/b' contains a path separator"):
        check_file_name("a/b", what="CivitAI file name")


def test_detail_shortens_very_long_names() -> None:
    with pytest.raises(Invalid) as caught:
        check_file_name("a" * 1000)
    assert len(caught.value.detail) < 200


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("x.part", True),
        ("x.PART", True),
        ("x.partial", True),
        ("x.tmp", True),
        ("x.Download", True),
        ("x.crdownload", True),
        ("x.aria2", True),
        ("x.safetensors", False),
        ("x.part.safetensors", False),
        ("xpart", False),
        ("x.aria", False),
    ],
)
def test_is_partial_download(name: str, expected: bool) -> None:
    assert is_partial_download(name) is expected


def test_partial_suffixes_are_lower_case_dotted_and_cover_the_listed_tools() -> None:
    assert set(PARTIAL_SUFFIXES) == {".part", ".partial", ".tmp", ".download", ".crdownload", ".aria2"}
    assert all(suffix.startswith(".") and suffix == suffix.lower() for suffix in PARTIAL_SUFFIXES)


@pytest.mark.parametrize(
    ("dest", "expected"),
    [
        ("loras", "loras"),
        ("loras/", "loras"),
        ("loras/style", "loras/style"),
        ("loras/style/", "loras/style"),
        ("upscale_models", "upscale_models"),
        ("loras/SDXL (styles)", "loras/SDXL (styles)"),
        ("モデル/スタイル", "モデル/スタイル"),
        ("checkpoints/incoming.part", "checkpoints/incoming.part"),  # the suffix rule is for files only
    ],
)
def test_safe_relative_folders_are_normalized(dest: str, expected: str) -> None:
    assert check_relative_folder(dest) == expected


@pytest.mark.parametrize(
    ("dest", "problem"),
    [
        ("/models/loras", "absolute path"),
        ("/", "absolute path"),
        ("loras\\style", "backslash"),
        ("", "is empty"),
        ("loras//style", "is empty"),
        ("loras//", "is empty"),
        ("../loras", "reference to a folder"),
        ("loras/..", "reference to a folder"),
        ("loras/./x", "reference to a folder"),
        ("loras/.cache", "starts with '.'"),
        ("C:/models", "drive prefix"),
        ("loras/ style", "whitespace"),
        ("loras/\u202eevil", "control"),
        ("loras/x\x00", "control"),
        ("loras/" + "a" * 256, "longer than 255 bytes"),
        ("loras/a\u200bb", "invisible"),  # the one rule holds for every part of a folder
        ("loras\uff0fstyle", "separator"),
        ("loras/\uff0e\uff0e", "reference to a folder"),
        ("loras/CON", "Windows device name"),
        ("aux.d/loras", "Windows device name"),
        ("loras/style.", "ends with a dot"),
        ("loras/what?", "Windows does not allow"),
        (None, "must be a string"),
        (["loras"], "must be a string"),
    ],
)
def test_unsafe_relative_folders_are_refused(dest: object, problem: str) -> None:
    with pytest.raises(Invalid) as caught:
        check_relative_folder(dest)
    assert caught.value.code == "unsafe_folder"
    assert problem in caught.value.detail
