"""The rate-limit gate and Retry-After in both of its forms."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from service.civitai import RateGate, parse_retry_after
from service.errors import Unavailable

NOW = datetime(2026, 11, 24, 15, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("17", 17.0),
        (" 5 ", 5.0),
        ("0", 1.0),
        ("999999", 3600.0),
        ("Tue, 24 Nov 2026 15:00:42 GMT", 42.0),  # an HTTP date
        ("Tue, 24 Nov 2026 14:00:00 GMT", 1.0),  # in the past: go again soon
        (None, 30.0),
        ("", 30.0),
        ("soon", 30.0),
        ("-3", 30.0),
    ],
)
def test_retry_after_in_seconds_or_as_a_date(header: str | None, seconds: float) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


async def test_a_closed_gate_tells_callers_who_cannot_wait_when_to_retry() -> None:
    gate = RateGate()
    await gate.wait(0)  # open: no wait
    gate.limited(30)
    gate.limited(5)  # a shorter limit never shortens the wait
    assert 29 < gate.remaining() <= 30
    with pytest.raises(Unavailable) as caught:
        await gate.wait(5)
    assert caught.value.code == "civitai_rate_limited" and caught.value.retry_after == 30


async def test_a_caller_that_can_wait_goes_when_the_gate_opens() -> None:
    gate = RateGate()
    gate.limited(0.05)
    await gate.wait()
    assert gate.remaining() == 0
