"""Catalog service for ComfyUI: which CivitAI model versions are catalogued, and on disk."""

__version__ = "0.1.0"
PROGRAM = "comfy-catalog"  # the name every message, the banner, --version and the User-Agent use
