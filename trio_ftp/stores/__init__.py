"""Where the limits that span sessions are counted: connection slots (server, per address,
per user) and failed logins per address.

* :class:`ProcessStore`: this process's memory (the default);
* :class:`MachineStore`: a SQLite file shared by the worker processes of one machine;
* :class:`RedisStore`: Redis, shared by every instance (the ``redis`` extra);
* :class:`ResilientStore`: the wrapper the server puts around a shared store: bounded
  calls, per-process counts while the shared store is down (its docstring states the
  policy).

``open_store(url)`` makes one from a URL (the CLI's ``--state-store``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import DEFAULT_PREFIX, StateStore, StoreUnavailable, new_instance_id
from .machine import MachineStore
from .process import ProcessStore
from .resilient import ResilientStore
from .urls import open_store

if TYPE_CHECKING:
    from .redis_store import RedisStore

__all__ = [
    "DEFAULT_PREFIX",
    "MachineStore",
    "ProcessStore",
    "RedisStore",
    "ResilientStore",
    "StateStore",
    "StoreUnavailable",
    "new_instance_id",
    "open_store",
]


def __getattr__(name: str) -> Any:
    """``RedisStore`` on first use: importing the package must not need redis-py."""
    if name == "RedisStore":
        from .redis_store import RedisStore

        return RedisStore
    raise AttributeError(name)
