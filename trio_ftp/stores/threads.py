"""Blocking database calls from trio: in a worker thread, under a limiter, within a time.

A call that overruns its time is abandoned (its thread finishes on its own, bounded by the
client's socket or busy timeout, and keeps its limiter token until then): so a database
that hangs holds a bounded number of threads, and no trio task longer than ``seconds``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import trio

from .base import StoreUnavailable

__all__ = ["run_blocking"]

T = TypeVar("T")


async def run_blocking(
    call: Callable[[], T], *, limiter: trio.CapacityLimiter, seconds: float, what: str
) -> T:
    """``call()`` in a worker thread; :class:`StoreUnavailable` after ``seconds``."""
    with trio.move_on_after(seconds):
        return await trio.to_thread.run_sync(call, abandon_on_cancel=True, limiter=limiter)
    raise StoreUnavailable(f"{what} did not answer within {seconds:g} s")
