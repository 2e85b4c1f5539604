"""``ProcessStore``: counts in this process's memory, the default.

The counts are shared by the servers given the same object, not by processes. Times come
from ``trio.current_time()``, so tests may run it on trio's ``MockClock``; memory is
bounded whatever clients do: holders by the sessions that hold them, failures by
``max_addresses`` addresses of at most ``keep`` times each.
"""

from __future__ import annotations

import trio

from ..login_failures import MAX_ADDRESSES, FailureLedger
from .base import StateStore

__all__ = ["ProcessStore"]


class ProcessStore(StateStore):
    """A :class:`~trio_ftp.stores.StateStore` in memory; never fails, never waits.

    Its calls are cancellation points but not schedule points
    (``checkpoint_if_cancelled``): a session makes several per login and logout, and a
    scheduler round trip each cost more than the counting.

    Args:
        max_addresses: addresses whose failed logins are remembered at once (the least
            recently failing are forgotten first).
    """

    def __init__(self, *, max_addresses: int = MAX_ADDRESSES, prefix: str = "") -> None:
        super().__init__(prefix=prefix)
        self.holders: dict[str, set[str]] = {}
        self.failures = FailureLedger(max_addresses=max_addresses)

    @property
    def shared(self) -> bool:
        return False

    def try_acquire(self, key: str, limit: int, holder: str) -> bool:
        """:meth:`acquire`, synchronously."""
        holders = self.holders.get(key, set())
        if holder in holders:
            return True
        if len(holders) >= limit:
            return False
        holders.add(holder)
        self.holders[key] = holders
        return True

    def release_now(self, key: str, holder: str) -> None:
        """:meth:`release`, synchronously."""
        holders = self.holders.get(key)
        if holders is not None:
            holders.discard(holder)
            if not holders:
                del self.holders[key]

    async def acquire(self, key: str, limit: int, holder: str) -> bool:
        await trio.lowlevel.checkpoint_if_cancelled()
        return self.try_acquire(key, limit, holder)

    async def release(self, key: str, holder: str) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        self.release_now(key, holder)

    async def record_failure(self, address: str, window: float, *, keep: int = 1000) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        self.failures.record(address, trio.current_time(), keep=keep)

    async def failure_count(self, address: str, window: float) -> int:
        await trio.lowlevel.checkpoint_if_cancelled()
        return self.failures.count(address, trio.current_time(), window)
