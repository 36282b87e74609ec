"""Checks that a name from outside is safe to use as one file name (or a relative folder) under a models folder,
and says which names are model files."""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable

from ..errors import Invalid

MAX_NAME_BYTES = 255
DOWNLOAD_PART_SUFFIX = ".part"  # what a download is written as until it is whole: `<file>.part`
PARTIAL_SUFFIXES: tuple[str, ...] = (".part", ".partial", ".tmp", ".download", ".crdownload", ".aria2")
# What ComfyUI's loaders list: folder_paths.supported_pt_extensions, plus .gguf for the GGUF
# loaders. Anything else beside a model (.txt, .json, .png, .civitai.info) is not a model file.
MODEL_EXTENSIONS = frozenset({".safetensors", ".ckpt", ".pt", ".pt2", ".bin", ".pth", ".pkl", ".sft", ".gguf"})

# Line/paragraph separators and the bidirectional embedding, override and isolate controls (plus the
# invisible direction marks), which can make a name display differently from what it is.
_INVISIBLE_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
# Letters and symbols that draw nothing: the Hangul fillers, the halfwidth one, the Braille blank,
# the Khmer inherent vowels and the combining grapheme joiner. A name of only these (and spaces)
# looks empty; one that holds them looks like another name.
_BLANK_LOOKING = dict.fromkeys(map(ord, "\u115f\u1160\u3164\uffa0\u2800\u17b4\u17b5\u034f"))
_DRIVE_PREFIX = re.compile(r"^[A-Za-z]:")
_UNSAFE_NAME = "unsafe_file_name"
_UNSAFE_FOLDER = "unsafe_folder"


def is_model_file(name: str) -> bool:
    """True when ComfyUI would list a file of this name (as folder_paths.filter_files_extensions: splitext, any case)."""
    return os.path.splitext(name)[1].lower() in MODEL_EXTENSIONS


def is_partial_download(name: str) -> bool:
    """True when the name ends, in any case, in a suffix that download tools give unfinished files."""
    return name.lower().endswith(PARTIAL_SUFFIXES)


def _visible(name: str) -> str:
    """The name as it looks: without the characters that draw nothing."""
    return name.translate(_BLANK_LOOKING)


def _is_control(char: str) -> bool:
    return unicodedata.category(char) == "Cc" or char in _INVISIBLE_CONTROLS


def _has_control(name: str) -> bool:
    return any(_is_control(char) for char in name)


def _has_surrogate(name: str) -> bool:
    return any(unicodedata.category(char) == "Cs" for char in name)


def _has_separator(name: str) -> bool:
    return "/" in name or "\\" in name


def _has_lookalike_separator(name: str) -> bool:
    """A separator in disguise: one that NFKC turns into / or \\ (fullwidth ／), or a slash look-alike (∕ ⁄ ⧸)."""
    return _has_separator(unicodedata.normalize("NFKC", name)) or any(char in _SLASH_LOOKALIKES for char in name)


def _is_dot_name(name: str) -> bool:
    return name in {".", ".."} or unicodedata.normalize("NFKC", name) in {".", ".."}


def _is_device_name(name: str) -> bool:
    """CON, PRN, AUX, NUL, CONIN$, CONOUT$, COM1-9, LPT1-9 (also COM¹-³), with any extension: Windows reserves them."""
    stem = unicodedata.normalize("NFKC", name).split(".", 1)[0].rstrip(" ").upper()
    return stem in _DEVICE_NAMES


def _has_format_character(name: str) -> bool:
    return any(unicodedata.category(char) == "Cf" for char in name)


def _has_outer_space(name: str) -> bool:
    return name != name.strip()


def _too_long(name: str) -> bool:
    return len(name.encode("utf-8")) > MAX_NAME_BYTES


_SLASH_LOOKALIKES = frozenset("\u2215\u2044\u29f8\u29f9\u2216\u29f5\ufe68")
# As Python 3.13's ntpath.isreserved lists them (COM¹ is COM1 once NFKC-normalised).
_DEVICE_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"} | {f"{port}{n}" for port in ("COM", "LPT") for n in "123456789"}
)
_WINDOWS_FORBIDDEN = frozenset('<>:"|?*')

# (test, problem) pairs checked in order; the first that matches names the problem.
# Whitespace-only and control characters come first so later sentences can quote the name safely.
_Rule = tuple[Callable[[str], bool], str]
_COMPONENT_RULES: tuple[_Rule, ...] = (
    (lambda name: not name.strip(), "is empty"),
    (lambda name: not _visible(name).strip(), "looks empty (it holds only characters that draw nothing, such as U+3164)"),
    (lambda name: _visible(name) != name, "contains a character that draws nothing (such as U+3164), so it does not look like what it is"),
    (_has_control, "contains a control or invisible formatting character"),
    (_has_format_character, "contains an invisible format character (zero-width, soft hyphen, byte order mark...)"),
    (_has_surrogate, "contains an unpaired surrogate, which cannot be written as UTF-8"),
    (_has_separator, "contains a path separator ('/' or '\\')"),
    (_is_dot_name, "is a reference to a folder ('.' or '..')"),
    (_has_lookalike_separator, "contains a character that is or looks like a path separator"),
    (lambda name: bool(_DRIVE_PREFIX.match(name)), "starts with a Windows drive prefix"),
    (_has_outer_space, "starts or ends with whitespace"),
    (lambda name: name.startswith("."), "starts with '.' (hidden files are not allowed)"),
    (lambda name: name.endswith("."), "ends with a dot, which Windows drops"),
    (_is_device_name, "is a Windows device name (CON, NUL, COM1, CONIN$...), which no Windows machine can open"),
    (lambda name: any(char in _WINDOWS_FORBIDDEN for char in name), 'has a character Windows does not allow in names (<>:"|?*)'),
    (_too_long, f"is longer than {MAX_NAME_BYTES} bytes in UTF-8"),
)
_PARTIAL_RULE: _Rule = (is_partial_download, "ends in a partial-download suffix")


def _quote(name: str) -> str:
    shown = name if len(name) <= 80 else name[:77] + "..."
    return repr(shown)


def _problem(name: str, rules: tuple[_Rule, ...]) -> str | None:
    return next((problem for test, problem in rules if test(name)), None)


def check_file_name(name: object, *, what: str = "file name", downloaded: bool = False) -> str:
    """Return the name unchanged if it is safe as one file name in a models folder, else raise
    Invalid. `downloaded`: this service writes the file, as `<name>.part` first, so the name
    must leave room for that suffix in the filesystem's 255 bytes."""
    if not isinstance(name, str):
        raise Invalid(f"The {what} must be a string, not {type(name).__name__}.", code=_UNSAFE_NAME)
    problem = _problem(name, (*_COMPONENT_RULES, _PARTIAL_RULE))
    if problem is None and downloaded and len(name.encode("utf-8")) + len(DOWNLOAD_PART_SUFFIX) > MAX_NAME_BYTES:
        problem = (
            f"is longer than {MAX_NAME_BYTES - len(DOWNLOAD_PART_SUFFIX)} bytes in UTF-8: a download writes it as "
            f"'<name>{DOWNLOAD_PART_SUFFIX}' first, and a file name has at most {MAX_NAME_BYTES}"
        )
    if problem is not None:
        raise Invalid(f"The {what} {_quote(name)} {problem}.", code=_UNSAFE_NAME)
    return name


def check_relative_folder(dest: object) -> str:
    """Return a catalog dest folder ('a' or 'a/b') minus a trailing slash if every part is safe, else raise."""
    if not isinstance(dest, str):
        raise Invalid(f"The folder must be a string, not {type(dest).__name__}.", code=_UNSAFE_FOLDER)
    if dest.startswith("/"):
        raise Invalid(
            f"The folder {_quote(dest)} is an absolute path; give one relative to the models folder.",
            code=_UNSAFE_FOLDER,
        )
    if "\\" in dest:
        raise Invalid(
            f"The folder {_quote(dest)} contains a backslash; separate folders with '/'.", code=_UNSAFE_FOLDER
        )
    trimmed = dest[:-1] if dest.endswith("/") else dest
    for part in trimmed.split("/"):
        problem = _problem(part, _COMPONENT_RULES)
        if problem is not None:
            raise Invalid(
                f"The folder {_quote(dest)} has a part {_quote(part)} that {problem}.", code=_UNSAFE_FOLDER
            )
    return trimmed


_TEXT_RULES: tuple[_Rule, ...] = (
    (_has_surrogate, "is not UTF-8, so no catalog can hold it"),
    (_has_control, "contains a control or invisible formatting character"),
    (_has_format_character, "contains an invisible format character (zero-width, soft hyphen, bidi, byte order mark...)"),
)


def check_folder_text(dest: str) -> str:
    """Return a folder found on disk unchanged if a catalog can hold it as text (UTF-8, nothing
    that draws otherwise than it reads), else raise Invalid. Looser than `check_relative_folder`:
    the folder is there already, only what would be written about it is checked."""
    for part in dest.split("/"):
        problem = _problem(part, _TEXT_RULES)
        if problem is not None:
            raise Invalid(f"The folder {printable(dest)!r} has a part that {problem}.", code=_UNSAFE_FOLDER)
    return dest


def printable(name: str) -> str:
    """A name from disk as JSON can carry it: bytes that are not UTF-8 shown as \\xNN."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
