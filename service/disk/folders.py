"""ComfyUI's model folders by name: the legacy aliases its loaders still read, folded into one name."""

from __future__ import annotations

FOLDER_ALIASES = {
    "unet": "diffusion_models",
    "clip": "text_encoders",
    "t2i_adapter": "controlnet",
}


def canonical_folder(dest: str) -> str:
    """A folder with ComfyUI's legacy aliases folded into one name (unet -> diffusion_models, ...)."""
    first, sep, rest = dest.strip("/").partition("/")
    return FOLDER_ALIASES.get(first, first) + sep + rest


def same_folder(a: object, b: str) -> bool:
    """True when `a` is a folder name that means the folder `b` does."""
    return isinstance(a, str) and canonical_folder(a) == canonical_folder(b)
