"""Catalog service for ComfyUI: which CivitAI model versions are catalogued, and on disk."""

__version__ = "0.1.0"
