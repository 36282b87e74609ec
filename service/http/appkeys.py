"""Typed application keys, in one place so no module imports another in a circle."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from ..civitai import CivitaiClient
    from ..civitai.updates import UpdateChecker
    from ..disk.watcher import Watcher
    from ..downloads import DownloadManager
    from ..downloads.previews import PreviewSaver
    from ..hashes.hasher import Hasher
    from ..library.editor import CatalogEditor
    from ..library.library import Library
    from ..settings import Settings
    from ..sidecars.images import Thumbnails
    from .events import ChangeFeed

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
LIBRARY: web.AppKey[Library] = web.AppKey("library")
EDITOR: web.AppKey[CatalogEditor] = web.AppKey("editor")
CIVITAI: web.AppKey[CivitaiClient] = web.AppKey("civitai")
WATCHER: web.AppKey[Watcher] = web.AppKey("watcher")
FEED: web.AppKey[ChangeFeed] = web.AppKey("feed")
DOWNLOADS: web.AppKey[DownloadManager] = web.AppKey("downloads")
UPDATES: web.AppKey[UpdateChecker] = web.AppKey("updates")
HASHER: web.AppKey[Hasher | None] = web.AppKey("hasher")  # None with HASHING=off
THUMBNAILS: web.AppKey[Thumbnails] = web.AppKey("thumbnails")
PREVIEWS: web.AppKey[PreviewSaver] = web.AppKey("previews")
