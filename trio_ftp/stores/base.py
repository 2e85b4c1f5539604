"""``StateStore``: where connection slots and failed logins are counted.

The server asks a store, never a local counter, whether a session may start (the server's
``maximum_connections``, ``maximum_connections_per_ip``, a user's ``maximum_connections``)
and whether an address is banned for failed logins. One store object may be shared by
several servers; a shared store (:class:`~trio_ftp.stores.MachineStore`,
:class:`~trio_ftp.stores.RedisStore`) makes the limits hold across worker processes and
machines.

Keys are logical (``"conn:ip:192.0.2.7"``); a store puts its ``prefix`` (``"trio_ftp:"``
by default) in front, so several deployments can share one database.
"""

from __future__ import annotations

import abc
import os
import secrets
import socket

__all__ = ["DEFAULT_PREFIX", "StateStore", "StoreUnavailable", "new_instance_id"]

#: What every key of a store starts with unless told otherwise.
DEFAULT_PREFIX = "trio_ftp:"


class StoreUnavailable(Exception):
    """A shared store could not answer in time (the database is down, locked, slow)."""


def new_instance_id() -> str:
    """``host:pid:random``: unique across the processes and machines sharing a store."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class StateStore(abc.ABC):
    """Counts that may be shared: connection slots per key and failed logins per address.

    Every method may raise :class:`StoreUnavailable` (or any ``Exception``, for a store
    written elsewhere): the server wraps shared stores in a
    :class:`~trio_ftp.stores.ResilientStore`, which bounds each call in time and falls back
    to per-process counts.

    Args:
        prefix: put in front of every key.
    """

    def __init__(self, *, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = prefix

    @property
    def shared(self) -> bool:
        """True when the counts reach beyond this process (the server then wraps the store
        in a :class:`~trio_ftp.stores.ResilientStore`)."""
        return True

    @abc.abstractmethod
    async def acquire(self, key: str, limit: int, holder: str) -> bool:
        """Atomically: if fewer than ``limit`` holders hold ``key``, add ``holder`` and
        return True; else False. A holder that already holds ``key`` keeps it (True)."""

    @abc.abstractmethod
    async def release(self, key: str, holder: str) -> None:
        """``holder`` no longer holds ``key`` (nothing happens if it did not)."""

    @abc.abstractmethod
    async def record_failure(self, address: str, window: float, *, keep: int = 1000) -> None:
        """One failed login from ``address``, remembered ``window`` seconds; a store may
        forget all but the ``keep`` most recent of an address (the count that matters)."""

    @abc.abstractmethod
    async def failure_count(self, address: str, window: float) -> int:
        """Failed logins from ``address`` in the last ``window`` seconds."""

    async def keep_alive(self) -> None:  # noqa: B027 - optional: most stores need none
        """Runs while a server serves (in ``serve_forever``'s nursery): refresh the leases
        of the holders this process holds, purge what dead processes left. Returns at once
        when the store needs nothing of the kind."""

    async def aclose(self) -> None:  # noqa: B027 - optional: not every store holds resources
        """Let go of connections and files. The server never calls it: whoever made the
        store closes it."""
