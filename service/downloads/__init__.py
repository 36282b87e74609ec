"""Downloading catalogued files from CivitAI: the HTTP part (fetch) and the jobs (manager)."""

from .manager import DownloadManager, Job

__all__ = ["DownloadManager", "Job"]
