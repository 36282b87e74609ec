"""One rate-limit gate for every CivitAI call of the service.

A 429 from CivitAI closes the gate until the time its Retry-After names (seconds or an
HTTP date). Every later call (an add, an update check, a download, a hash lookup) waits
at the gate instead of asking and failing on its own. A caller that cannot hold that
long (a click in the extension) is told at once when to retry.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from ..errors import Unavailable

logger = logging.getLogger(__name__)

DEFAULT_RETRY_AFTER_S = 30.0
MAX_RETRY_AFTER_S = 3600.0


def parse_retry_after(value: str | None, now: datetime | None = None) -> float:
    """Seconds to wait from a Retry-After header: a number of seconds or an HTTP date; 30 s when absent or unreadable."""
    raw = (value or "").strip()
    if raw.isascii() and raw.isdigit():
        return max(1.0, min(float(raw), MAX_RETRY_AFTER_S))
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return DEFAULT_RETRY_AFTER_S
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    return max(1.0, min(seconds, MAX_RETRY_AFTER_S))


class RateGate:
    """Shared by every CivitAI call: closed for a while after a 429."""

    def __init__(self) -> None:
        self._open_at = 0.0  # time.monotonic() when calls may go again

    def remaining(self) -> float:
        """Seconds until calls may go again (0 when open)."""
        return max(0.0, self._open_at - time.monotonic())

    def limited(self, retry_after_s: float) -> None:
        """CivitAI answered 429: close the gate for that long (never shortening a longer wait)."""
        until = time.monotonic() + retry_after_s
        if until > self._open_at:
            self._open_at = until
            logger.warning("CivitAI is limiting requests; every call to it waits %.0f s", retry_after_s)

    async def wait(self, longest_s: float = math.inf) -> None:
        """Wait until the gate opens; when that is more than `longest_s` away, say when to retry instead."""
        while (remaining := self.remaining()) > 0:
            if remaining > longest_s:
                raise self.refusal(remaining)
            await asyncio.sleep(remaining)

    @staticmethod
    def refusal(remaining: float) -> Unavailable:
        """The answer for a caller that cannot wait: 503 with Retry-After."""
        seconds = max(1, math.ceil(remaining))
        return Unavailable(
            f"CivitAI is limiting requests; try again in {seconds} s.", code="civitai_rate_limited", retry_after=seconds
        )
