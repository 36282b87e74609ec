"""The app factory. `create_app` does no I/O; everything real happens in cleanup contexts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator

from aiohttp import web

from ..catalog.document import CATALOG_NAMES, catalog_path
from ..civitai import CivitaiClient
from ..civitai.updates import UpdateChecker
from ..disk.extra_paths import load_extra_model_paths
from ..disk.mounts import network_paths
from ..disk.scan import FolderSource
from ..disk.watcher import Watcher
from ..downloads import DownloadManager
from ..downloads.previews import PreviewSaver
from ..hashes.hasher import Hasher
from ..library.editor import CatalogEditor
from ..library.library import Library
from ..map.statuslog import StatusLog
from ..settings import Settings
from ..sidecars.images import Thumbnails
from .appkeys import (
    CIVITAI,
    DOWNLOADS,
    EDITOR,
    FEED,
    HASHER,
    LIBRARY,
    PREVIEWS,
    SETTINGS,
    THUMBNAILS,
    UPDATES,
    WATCHER,
)
from .events import ChangeFeed, close_streams
from .pipeline import CorsPolicy, no_route, request_pipeline, response_hook
from .routes import ROUTES

logger = logging.getLogger(__name__)

WATCHER_START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 3.0


def model_sources(settings: Settings) -> tuple[FolderSource, ...]:
    """The folders whose files count as on disk: MODELS_DIR and those of EXTRA_MODEL_PATHS (reads the file)."""
    return (FolderSource(str(settings.models_dir)), *load_extra_model_paths(settings.extra_model_paths))


def create_app(settings: Settings, api_key: str) -> web.Application:
    """Build the application for these settings and this API key."""
    cors = CorsPolicy(settings.cors_origins, settings.cors_extension_ids)
    app = web.Application(client_max_size=settings.max_body_bytes)
    app.on_response_prepare.append(response_hook(cors))
    app.on_shutdown.append(close_streams)
    app.on_shutdown.append(stop_civitai_calls)
    library = Library(settings.catalog_dir, (FolderSource(str(settings.models_dir)),))
    library.index.parts.stale_s = settings.stale_part_s
    feed = ChangeFeed(details_of=library.index.slot_fields)
    library.index.listeners.append(feed.publish)
    library.index.listeners.append(StatusLog(library.index, lambda: library.ready))
    civitai = CivitaiClient(
        settings.civitai_base_url, settings.civitai_api_key, settings.civitai_timeout_s, fallback_url=settings.civitai_fallback_url
    )
    app[SETTINGS] = settings
    app[LIBRARY] = library
    app[CIVITAI] = civitai
    editor = app[EDITOR] = CatalogEditor(settings.catalog_dir, library, civitai)
    previews = app[PREVIEWS] = PreviewSaver(civitai, library.index, enabled=settings.previews, nsfw=settings.previews_nsfw)
    app[FEED] = feed
    app[DOWNLOADS] = downloads(settings, library, civitai, editor, previews)
    updates = UpdateChecker(civitai, settings.catalog_dir, library.index.catalogued_models, settings.update_check_interval_h)
    updates.listeners.append(lambda answer: feed.announce("updates", answer))
    app[UPDATES] = updates
    app[THUMBNAILS] = Thumbnails()
    app[HASHER] = None
    if settings.hashing:
        hasher = Hasher(
            library, civitai, settings.catalog_dir, settle_s=settings.hash_settle_s, show_uncatalogued=settings.show_uncatalogued
        )
        library.disk_listeners.append(hasher.files_touched)
        app[HASHER] = hasher
    watcher = app[WATCHER] = Watcher(
        library,
        settings.catalog_dir,
        (catalog_path(settings.catalog_dir, name).name for name in CATALOG_NAMES),
        debounce_ms=settings.watch_debounce_ms,
        polling=bool(settings.watch_force_polling),
        poll_interval_ms=settings.watch_poll_interval_ms,
    )
    library.new_links = watcher.request_rewatch
    app.cleanup_ctx.extend([catalog_files_ctx, civitai_ctx, library_ctx, downloads_ctx, updates_ctx, hasher_ctx, previews_ctx])
    guarded = request_pipeline(cors, api_key, settings.max_body_bytes, lambda: library.ready)
    for route in ROUTES:
        handler = guarded(route.handler, needs_index=route.needs_index, query=route.query, streams_body=route.streams_body)
        if route.method == "GET":
            app.router.add_get(route.path, handler)  # HEAD too
        else:
            app.router.add_route(route.method, route.path, handler)
    app.router.add_route("*", r"/{tail:[\s\S]*}", guarded(no_route, query=None))  # last: what no other route takes (line breaks too)
    return app


WARM_GZIP_VERSIONS = 10_000


def downloads(settings: Settings, library: Library, civitai: CivitaiClient, editor: CatalogEditor, previews: PreviewSaver) -> DownloadManager:
    """The download queue: CivitAI's files through its rate gate, the verified hash written
    into the catalog, a preview saved once a file is placed."""
    return DownloadManager(
        library,
        settings.models_dir,
        settings.civitai_base_url,
        settings.civitai_api_key,
        concurrency=settings.download_concurrency,
        enabled=settings.downloads,
        gate=civitai.gate,
        civitai=civitai,
        record_hash=editor.record_hash,
        placed=previews.want,
        huggingface_url=settings.huggingface_base_url,
    )


async def stop_civitai_calls(app: web.Application) -> None:
    """on_shutdown: requests waiting on CivitAI answer 503 now instead of holding the stop."""
    await app[CIVITAI].stop()


async def catalog_files_ctx(app: web.Application) -> AsyncIterator[None]:
    """Missing catalogs are created as empty ones before anything reads them."""
    for store in app[EDITOR].stores.values():
        if await asyncio.to_thread(store.ensure_exists):
            logger.info("created an empty %s", store.path.name)
    yield


async def civitai_ctx(app: web.Application) -> AsyncIterator[None]:
    """The one outbound HTTP session, closed at shutdown."""
    await app[CIVITAI].open()
    yield
    await app[CIVITAI].close()


async def downloads_ctx(app: web.Application) -> AsyncIterator[None]:
    """The downloader's session; at shutdown running downloads stop and keep their parts."""
    await app[DOWNLOADS].open()
    yield
    await app[DOWNLOADS].close()


async def updates_ctx(app: web.Application) -> AsyncIterator[None]:
    """Update checks: the cached answers at once, a check once a day; stopped at shutdown."""
    updates = app[UPDATES]
    await asyncio.to_thread(updates.load)
    stop = asyncio.Event()
    task = asyncio.create_task(updates.run_forever(stop), name="update checks")
    yield
    stop.set()
    for running in (task, updates.running):
        if running is not None and not running.done():
            running.cancel()
    await asyncio.gather(task, *([updates.running] if updates.running else []), return_exceptions=True)


async def hasher_ctx(app: web.Application) -> AsyncIterator[None]:
    """Hash and identify model files in the background (HASHING=on); stopped at shutdown."""
    hasher = app[HASHER]
    if hasher is None:
        yield
        return
    stop = asyncio.Event()
    task = asyncio.create_task(hasher.run(stop), name="hashing")
    yield
    stop.set()
    _done, pending = await asyncio.wait([task], timeout=STOP_TIMEOUT_S)
    for running in pending:
        running.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def previews_ctx(app: web.Application) -> AsyncIterator[None]:
    """Save previews after downloads and imports (PREVIEWS=on), in the background; stopped at shutdown."""
    task = asyncio.create_task(app[PREVIEWS].run(), name="previews")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def library_ctx(app: web.Application) -> AsyncIterator[None]:
    """Watch, build the index in the background (so /health answers at once), reconcile; stop all."""
    settings, library, watcher = app[SETTINGS], app[LIBRARY], app[WATCHER]
    library.set_sources(await asyncio.to_thread(model_sources, settings))
    for source in library.sources:  # as ComfyUI logs its search paths
        found = await asyncio.to_thread(os.path.isdir, source.path)
        logger.info("model folder %s%s: %s", source.path, f" ({source.logical})" if source.logical else "", "found" if found else "MISSING")
    if settings.watch_force_polling is None:
        remote = await asyncio.to_thread(network_paths, [s.path for s in library.sources] + [str(settings.catalog_dir)])
        if remote:
            watcher.polling = True
            logger.info("polling for changes: %d watched folder(s) sit on a network or FUSE filesystem", len(remote))
    stop = asyncio.Event()
    tasks = [asyncio.create_task(watcher.run(stop), name="watcher")]

    async def build() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watcher.live.wait(), WATCHER_START_TIMEOUT_S)
        await library.start()
        if len(library.index) >= WARM_GZIP_VERSIONS:  # the page's first read of a large map need not wait for its compression
            tasks.append(asyncio.create_task(library.index.snapshot.gzip_body(), name="first gzip"))
        tasks.append(asyncio.create_task(library.rescan_forever(settings.reconcile_interval_s, stop), name="reconcile"))
        tasks.append(asyncio.create_task(watcher.watch_roots(stop), name="root watch"))
        tasks.append(asyncio.create_task(watcher.watch_for_pauses(stop), name="pause watch"))

    tasks.append(asyncio.create_task(build(), name="index-build"))
    yield
    stop.set()
    _done, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    library.index.parts.close()
    logger.info("watcher stopped")
