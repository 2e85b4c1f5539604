"""TokenBucket's argument checks and its refund before first use (test_throttle.py measures the
rates themselves)."""

from __future__ import annotations

import math

import pytest
import trio

from trio_ftp.throttle import TokenBucket


@pytest.mark.parametrize("poll_interval", [0, -1, math.inf, math.nan])
def test_poll_interval_must_be_positive_and_finite(poll_interval):
    with pytest.raises(ValueError, match="poll_interval must be a positive number"):
        TokenBucket(1000, burst=10, poll_interval=poll_interval)


@pytest.mark.parametrize("burst", [0, -1, True, 1.5])
def test_burst_must_be_a_positive_integer(burst):
    with pytest.raises(ValueError, match="burst must be a positive integer"):
        TokenBucket(1000, burst=burst)


def test_burst_is_read_only():
    bucket = TokenBucket(1000, burst=64)
    assert bucket.burst == 64
    with pytest.raises(AttributeError):
        bucket.burst = 128  # type: ignore[misc]


async def test_refund_before_first_use_never_exceeds_the_burst(autojump_clock):
    """A refund to an unused (full) bucket is capped at the burst: 1500 bytes at 1000 B/s with
    a burst of 1000 still wait half a second."""
    bucket = TokenBucket(1000, burst=1000)
    bucket.refund(500)
    start = trio.current_time()
    await bucket.acquire(1500)
    assert trio.current_time() - start == pytest.approx(0.5, abs=0.01)
    assert bucket.sleeps >= 1
