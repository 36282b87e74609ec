"""Memory of the service by phase: VmRSS of the service and its children, sampled, with the peak of each phase."""

import asyncio
from collections.abc import Callable
from typing import Any

from .common import MEMORY_SAMPLE_S, _r, tree_rss_kb


class MemorySampler:
    """Samples the RSS of a process tree every 100 ms from the service's start, keeping each phase's peak."""

    def __init__(self, pid: int, also: Callable[[], None] | None = None) -> None:
        self.pid = pid
        self.also = also  # sampled alongside (the ceiling server)
        self.phase = "start"
        self.peaks_kb: dict[str, int] = {}  # in the order the phases came
        self.max_kb = 0
        self._task: asyncio.Task | None = None

    def sample(self) -> int:
        """Sample now; the tree's RSS in kB (0 when the process is gone)."""
        kb = tree_rss_kb(self.pid)
        if kb:
            self.max_kb = max(self.max_kb, kb)
            self.peaks_kb[self.phase] = max(self.peaks_kb.get(self.phase, 0), kb)
        return kb

    def enter(self, phase: str) -> None:
        """Samples from now on count for `phase` (one sample closes the one before)."""
        self.sample()
        self.phase = phase

    async def _run(self) -> None:
        while True:
            self.sample()
            if self.also is not None:
                self.also()
            await asyncio.sleep(MEMORY_SAMPLE_S)

    def start(self) -> None:
        """Start sampling in the background."""
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop sampling."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - sampling must not fail the run
                pass
            self._task = None

    def results(self) -> dict[str, Any]:
        """rss_max_mb, the peak of each phase and the phase of the peak."""
        if not self.max_kb:
            return {}
        by_phase = {phase: _r(kb / 1024, 1) for phase, kb in self.peaks_kb.items()}
        return {
            "rss_max_mb": _r(self.max_kb / 1024, 1),
            "rss_by_phase_mb": by_phase,
            "rss_peak_phase": max(self.peaks_kb, key=lambda p: self.peaks_kb[p]),
        }
