"""One run of the service on one generated library: set up, measure phase by phase, tear everything down."""

import argparse
import asyncio
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from .adds import measure_adds
from .client import ServiceClient
from .common import CLEANUP, _r, log, tree_rss_kb
from .dataset import Dataset, generate
from .fake_civitai import FakeCivitai
from .freshness import measure_catalog_edit, measure_file_landing
from .load import Loader
from .memory import MemorySampler
from .processes import CeilingProc, ServiceProc, tail
from .rebuild import measure_rebuild
from .throughput import check_statuses, fetch_map, measure_throughput


@dataclass
class Ctx:
    """What every run shares: the options, the load generator, the fake CivitAI, one HTTP session."""
    args: argparse.Namespace
    loader: Loader
    fake: FakeCivitai
    session: aiohttp.ClientSession
    api_key: str
    fresh_n: int
    largest_n: int
    extra_env: dict[str, str] = field(default_factory=dict)


class SizeRun:
    """The measurements of one catalog size; `res` fills in as it goes, so an interrupted run still reports."""

    kind = "size"

    def __init__(self, ctx: Ctx, n: int) -> None:
        self.ctx = ctx
        self.n = n
        self.res: dict[str, Any] = {"n": n}
        self.ds: Dataset
        self.svc: ServiceProc | None = None
        self.client: ServiceClient
        self.memory: MemorySampler
        self.ceiling: CeilingProc | None = None

    @property
    def label(self) -> str:
        """The key of this run in the results."""
        return str(self.n)

    @property
    def ready_timeout_s(self) -> float:
        """How long the service may take to answer /ready."""
        return 30.0 + self.n / 1000.0

    def log(self, msg: str) -> None:
        """Print a line prefixed with this run."""
        log(self.label, msg)

    def make_dataset(self, root: Path, models_root: Path) -> Dataset:
        """The library this run measures."""
        return generate(self.n, root, models_root)

    async def run(self) -> dict[str, Any]:
        """Generate, start the service, measure, stop; errors are recorded, not raised (except an interrupt)."""
        args = self.ctx.args
        root = CLEANUP.add_dir(Path(tempfile.mkdtemp(prefix=f"bench-{self.label}-", dir=args.tmpdir)))
        models_root = CLEANUP.add_dir(Path(tempfile.mkdtemp(prefix=f"bench-{self.label}-models-",
                                                            dir=args.models_tmpdir)))
        try:
            self.log("generating catalogs…")
            self.ds = ds = self.make_dataset(root, models_root)
            self.res["generate_s"] = _r(ds.gen_seconds, 3)
            self.res["files_created"] = ds.files_created
            self.res["models_json_bytes"] = ds.models_json.stat().st_size
            self.log(f"generated {self.n} entries, {ds.files_created} files, models.json "
                     f"{self.res['models_json_bytes'] / 1e6:.1f} MB in {ds.gen_seconds:.2f} s")

            self.svc = ServiceProc(ds, self.ctx.api_key, self.ctx.fake.base_url, self.ctx.extra_env, args.service_cwd)
            self.log(f"starting service on port {self.svc.port}…")
            self.svc.spawn()
            assert self.svc.proc is not None
            self.memory = MemorySampler(self.svc.proc.pid, also=self._sample_ceiling)
            self.memory.start()
            ready_s = await self.svc.wait_ready(self.ctx.session, self.ready_timeout_s)
            self.res["ready_s"] = _r(ready_s, 3)
            self.res["rss_after_ready_mb"] = _r(self.memory.sample() / 1024, 1)
            self.log(f"ready in {ready_s:.2f} s, RSS {self.res['rss_after_ready_mb']} MB")
            self.client = ServiceClient(self.ctx.session, self.svc.base, self.ctx.api_key)
            await self.measure()
            self.memory.sample()
        except (asyncio.CancelledError, KeyboardInterrupt):
            self.res["error"] = "interrupted"
            raise
        except Exception as e:  # noqa: BLE001 - record and go on with the next N
            self.res["error"] = f"{type(e).__name__}: {e}"
            self.res["traceback"] = traceback.format_exc()
            self.log(f"ERROR: {type(e).__name__}: {e}")
        finally:
            await self._tear_down(root, models_root)
        if "rss_max_mb" in self.res:
            self.log(f"max RSS {self.res['rss_max_mb']} MB (VmHWM {self.res.get('rss_hwm_mb')} MB), by phase "
                     f"{self.res.get('rss_by_phase_mb')}")
        return self.res

    async def measure(self) -> None:
        """Status, map, throughput; at the freshness size file landings and idle edits; adds; edits under load."""
        args, ctx = self.ctx.args, self.ctx
        self.memory.enter("load")
        await check_statuses(self)
        body, etag, gz_body, gz_etag = await fetch_map(self)
        await measure_throughput(self, body, etag, gz_body, gz_etag)
        del body, gz_body
        self.res["rss_after_load_mb"] = _r(self.memory.sample() / 1024, 1)
        if self.ceiling is not None:
            self.ceiling.stop()  # it holds a copy of the map and is not needed any more
        if self.n == ctx.fresh_n and not args.skip_freshness:
            self.memory.enter("freshness")
            await measure_file_landing(self)
            await measure_catalog_edit(self)
        if self.n in (ctx.fresh_n, ctx.largest_n) and not args.skip_add:
            self.memory.enter("add")
            self.res["add"] = await measure_adds(self, args.adds)
        if not args.skip_rebuild:
            self.memory.enter("rebuild")
            await measure_rebuild(self)

    def _sample_ceiling(self) -> None:
        if self.ceiling is not None and self.ceiling.proc is not None and self.ceiling.proc.poll() is None:
            kb = tree_rss_kb(self.ceiling.proc.pid)
            if kb:
                self.res["ceiling_rss_max_mb"] = max(self.res.get("ceiling_rss_max_mb") or 0, _r(kb / 1024, 1))

    async def _tear_down(self, root: Path, models_root: Path) -> None:
        if hasattr(self, "memory"):
            await self.memory.stop()
            self.res.update(self.memory.results())
        if hasattr(self, "client") and self.client.point_answers:
            self.res["point_answers"] = self.client.point_answers
        if self.svc is not None and self.svc.proc is not None:
            hwm = self.svc.hwm_kb()
            if hwm:
                self.res["rss_hwm_mb"] = _r(hwm / 1024, 1)
            self.res["service_stop"] = self.svc.stop()
            log_tail = tail(self.svc.log_path, 15).replace(self.ctx.api_key, "<API_KEY>")
            if log_tail:
                self.res["service_log_tail"] = log_tail
        if self.ceiling is not None:
            self.ceiling.stop()
        for d in (root, models_root):
            if self.ctx.args.keep_tmp:
                self.log(f"keeping {d}")
                CLEANUP.dirs.remove(d)
            else:
                CLEANUP.remove_dir(d)
