"""A big catalog (--big-catalog-mb): models.json made huge by a long unknown "notes" field per entry.

The service is started on it; /health is asked every 10 ms, first idle, then while a few
adds (each a rewrite of the whole file) run. Reported: /health's worst latency during the
adds, the add latency, and peak memory.
"""

import asyncio
import time
from pathlib import Path

from .adds import measure_adds
from .bench import Ctx, SizeRun
from .common import HEALTH_POLL_S, _r
from .dataset import Dataset, generate
from .load import RequestLoops
from .throughput import check_statuses, fetch_and_check_map

IDLE_HEALTH_S = 1.0


class BigCatalogRun(SizeRun):
    """The service on a catalog of --big-catalog-entries entries and about --big-catalog-mb MB."""

    kind = "big_catalog"

    def __init__(self, ctx: Ctx, n: int) -> None:
        super().__init__(ctx, n)
        self.catalog_bytes = int(self.ctx.args.big_catalog_mb * 1e6)
        self.res["kind"] = self.kind
        self.res["catalog_mb_asked"] = self.ctx.args.big_catalog_mb

    @property
    def label(self) -> str:
        """The key of this run in the results."""
        return f"big-{self.ctx.args.big_catalog_mb:g}MB"

    @property
    def ready_timeout_s(self) -> float:
        """Longer than for a size: the parse grows with the bytes."""
        return super().ready_timeout_s + self.catalog_bytes / 5e6  # parsing is about 10 s for 500 MB here

    def make_dataset(self, root: Path, models_root: Path) -> Dataset:
        """The big library: notes make models.json the asked size."""
        return generate(self.n, root, models_root, catalog_bytes=self.catalog_bytes)

    async def measure(self) -> None:
        """/health idle, then during the adds; the map checked once."""
        c, args = self.client, self.ctx.args
        self.memory.enter("load")
        await check_statuses(self)
        await fetch_and_check_map(self)
        loops = RequestLoops(c.session, {})
        loops.add("health", c.base + "/health", interval_s=HEALTH_POLL_S)
        async with loops:
            await asyncio.sleep(IDLE_HEALTH_S)
            self.memory.enter("add")
            t0 = time.perf_counter()
            self.res["add"] = await measure_adds(self, args.big_adds)
            t1 = time.perf_counter()
            self.memory.enter("after adds")
        self.res["health_idle"] = loops.stats([s for s in loops.samples if s.end < t0])
        self.res["health_during_adds"] = loops.stats(loops.window(t0, t1))
        h = self.res["health_during_adds"]
        self.log(f"/health during adds: p50 {h['p50_ms']} ms, max {h['max_ms']} ms ({h['n']} requests, "
                 f"{h['errors']} errors); idle max {self.res['health_idle']['max_ms']} ms")
        self.res["adds_window_s"] = _r(t1 - t0, 1)
