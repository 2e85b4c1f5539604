"""``ResilientStore``: a shared store that can fail, and the per-process counts that take
over when it does.

The policy, when the shared store (Redis, the machine's SQLite file, a store of your own)
fails:

* Every call to the shared store has ``timeout`` seconds (0.5 by default); a session never
  waits on it longer than that (once per store call its admission makes: a ban check and
  two slots at the greeting, one slot at a login).
* When a call raises or overruns, the store is *down*: the failure is logged at ERROR (at
  most once per ``log_every`` seconds, 60 by default, with the number of failures since
  the last line), and for ``retry_after`` seconds (5 by default) every call goes straight
  to the per-process :class:`~trio_ftp.stores.ProcessStore`: the server keeps serving,
  each process counting alone (so a limit may be exceeded, up to once per process).
* Then one call tries the shared store again (others meanwhile stay local); when it
  answers, counts are shared again (logged at WARNING).
* A slot is given back to the store that granted it: those granted locally while the
  shared store was down stay local (and uncounted by the other processes) until their
  sessions end. A release the shared store could not take is left to the lease (Redis) or
  to the purge of dead processes (SQLite).
* Failed logins are recorded in both stores, and an address's count is the larger of the
  two: a ban seen by this process holds through an outage.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from .base import StateStore
from .process import ProcessStore

__all__ = ["ResilientStore"]

logger = logging.getLogger("trio_ftp.stores")

T = TypeVar("T")


class _Down(Exception):
    """The shared store did not answer (already counted and logged)."""


class ResilientStore(StateStore):
    """``shared`` within ``timeout`` per call, ``local`` while ``shared`` is down.

    Args:
        shared: the store to count in.
        local: the fallback (a new :class:`ProcessStore` by default).
        timeout: seconds each call to ``shared`` may take.
        retry_after: seconds the fallback serves alone after a failure.
        log_every: seconds between two ERROR lines about the shared store.
    """

    def __init__(
        self,
        shared: StateStore,
        *,
        local: ProcessStore | None = None,
        timeout: float = 0.5,
        retry_after: float = 5.0,
        log_every: float = 60.0,
    ) -> None:
        super().__init__(prefix=shared.prefix)
        self.shared_store = shared
        self.local = local if local is not None else ProcessStore()
        self.timeout = timeout
        self.retry_after = retry_after
        self.log_every = log_every
        self._down_until: float | None = None
        self._probing = False
        self._last_log: float | None = None
        self._unlogged = 0
        #: ``(key, holder)`` pairs the fallback granted (released there).
        self._granted_locally: set[tuple[str, str]] = set()

    @property
    def up(self) -> bool:
        """False while the shared store is considered down (calls go to the fallback)."""
        return self._down_until is None

    def _failed(self, what: str, error: BaseException | None) -> None:
        now = trio.current_time()
        self._down_until = now + self.retry_after
        self._unlogged += 1
        if self._last_log is None or now - self._last_log >= self.log_every:
            reason = "timed out" if error is None else repr(error)
            logger.error(
                "state store %s failed (%s; %d failure(s) since the last report): counting "
                "in this process alone, retrying in %g s",
                what,
                reason,
                self._unlogged,
                self.retry_after,
            )
            self._last_log, self._unlogged = now, 0

    async def _shared(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call()`` on the shared store, or :class:`_Down`."""
        if self._down_until is not None:
            if self._probing or trio.current_time() < self._down_until:
                raise _Down
            self._probing = True  # this call is the probe; others stay local meanwhile
        error: BaseException | None = None
        try:
            with trio.move_on_after(self.timeout):
                try:
                    result = await call()
                except Exception as exc:
                    error = exc
                else:
                    if self._down_until is not None:
                        logger.warning("state store is back: counts are shared again")
                        self._down_until = None
                    return result
        finally:
            self._probing = False
        self._failed(what, error)
        raise _Down

    async def acquire(self, key: str, limit: int, holder: str) -> bool:
        try:
            return await self._shared(
                "acquire", lambda: self.shared_store.acquire(key, limit, holder)
            )
        except _Down:
            pass
        granted = self.local.try_acquire(key, limit, holder)
        if granted:
            self._granted_locally.add((key, holder))
        return granted

    async def release(self, key: str, holder: str) -> None:
        if (key, holder) in self._granted_locally:
            self._granted_locally.discard((key, holder))
            self.local.release_now(key, holder)
            return
        with contextlib.suppress(_Down):
            await self._shared("release", lambda: self.shared_store.release(key, holder))

    async def record_failure(self, address: str, window: float, *, keep: int = 1000) -> None:
        await self.local.record_failure(address, window, keep=keep)
        with contextlib.suppress(_Down):
            await self._shared(
                "record_failure",
                lambda: self.shared_store.record_failure(address, window, keep=keep),
            )

    async def failure_count(self, address: str, window: float) -> int:
        local = await self.local.failure_count(address, window)
        try:
            shared = await self._shared(
                "failure_count", lambda: self.shared_store.failure_count(address, window)
            )
        except _Down:
            return local
        return max(local, shared)

    async def keep_alive(self) -> None:
        """The shared store's :meth:`keep_alive`, started again ``retry_after`` seconds
        after it raises (logged like any failure)."""
        while True:
            try:
                await self.shared_store.keep_alive()
            except Exception as exc:
                self._failed("keep_alive", exc)
            else:
                return
            await trio.sleep(self.retry_after)

    async def aclose(self) -> None:
        await self.shared_store.aclose()
