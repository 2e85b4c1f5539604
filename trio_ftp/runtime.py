"""``ServerRuntime``: what a server keeps and changes while it runs, apart from its options.

The options (:mod:`trio_ftp.options`) are fixed at construction; everything here is built
from them once and then changes as sessions come and go: the listeners and cancel scopes of
the lifecycle, the sessions table, the connection and transfer counters, the state store
(connection slots and failed logins, maybe shared with other processes), the pool of data
ports, the speed-limit buckets and the event bus.

Admission counts twice: in this server (``available_connections``, ``connections_per_ip``:
its own sessions, whatever the store) and in the state store (every process sharing it).
The local count keeps one server within its limits even when a shared store is down or
has lost its data.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from .audit import Audit
from .datachannel import PortPool
from .events import EventBus
from .login_failures import LoginFailures
from .stores import ProcessStore, ResilientStore, StateStore, new_instance_id
from .throttle import ThrottleRegistry
from .users import AvailableConnections

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .connection import Connection
    from .metrics import Metrics

__all__ = ["KERNEL_COPY_THREADS", "SERVER_KEY", "ServerRuntime", "ip_key", "user_key"]

#: The store key counting every session (``maximum_connections``).
SERVER_KEY = "conn:server"


def ip_key(host: str) -> str:
    """The store key counting the sessions from ``host`` (``maximum_connections_per_ip``)."""
    return f"conn:ip:{host}"


def user_key(login: str | None) -> str:
    """The store key counting the sessions logged in as ``login`` (``User.maximum_connections``;
    ``None``: the anonymous user)."""
    return "conn:anonymous" if login is None else f"conn:user:{login}"


def counted_in(store: StateStore) -> StateStore:
    """The store the server counts in: a shared store behind a
    :class:`~trio_ftp.stores.ResilientStore` (bounded calls, per-process fallback)."""
    if not store.shared or isinstance(store, ResilientStore):
        return store
    return ResilientStore(store)


#: Transfers moving through the kernel at once; more wait for a slot (one chunk at most).
KERNEL_COPY_THREADS = 64


def _kernel_copy_threads() -> trio.CapacityLimiter:
    return trio.CapacityLimiter(KERNEL_COPY_THREADS)


@dataclass(eq=False, slots=True, kw_only=True)
class ServerRuntime:
    """The mutable state of one server (one per ``Server``; not shared, not compared).

    Attributes:
        available_connections: the server-wide connection slots (``maximum_connections``).
        connections_per_ip: this server's control connections holding a slot, per client
            address.
        state_store: where slots and failed logins are counted (a shared store wrapped in
            a :class:`~trio_ftp.stores.ResilientStore`).
        failures_per_ip, failure_window: the login-failure ban (``None``: no ban).
        instance_id: names this server in a shared store (``host:pid:random``).
        held: the store keys each session holds, by session id.
        port_pool: the free ports of ``data_ports``.
        throttles: the speed-limit buckets.
        connections: the sessions running now, by session id (aioftp's
            ``server.connections``).
        event_bus: where :meth:`~trio_ftp.Server.events` subscribers listen.
        audit: where the audit records go (the ``trio_ftp.audit`` log, a transfer log).
        metrics: the Prometheus metrics, once :meth:`~trio_ftp.Server.enable_metrics` ran.
        reload: what a SIGHUP does in a ``--workers`` worker (the command line sets it);
            None: the worker ignores SIGHUP.
        serving_hooks: called with the address once a ``--workers`` worker serves (the
            command line starts a worker's metrics endpoint so).
        kernel_copy_threads: worker threads for kernel-copy transfers (see fastpath.py),
            apart from trio's default pool so long transfers never starve the quick
            file-system calls.
        path_io_state: the state the path-IO backends of all sessions share.
        listeners: the bound listening sockets (empty before ``start()``).
        serve_scope: the scope of ``serve_forever()``; cancelling it ends every session.
        accept_scope: the scope of the accept loop alone (a graceful close stops it first).
        stopped: set when ``serve_forever()`` has returned.
        closing: ``close()`` has begun.
        active_transfers: transfers running now (a graceful close waits for them).
        transfer_ended: set (and replaced) each time a transfer ends.
    """

    available_connections: AvailableConnections
    port_pool: PortPool
    throttles: ThrottleRegistry
    state_store: StateStore = field(default_factory=ProcessStore)
    failures_per_ip: int | None = None
    failure_window: float = 600.0
    instance_id: str = field(default_factory=new_instance_id)
    held: dict[int, list[str]] = field(default_factory=dict)
    connections_per_ip: dict[str, int] = field(default_factory=dict)
    connections: dict[int, Connection] = field(default_factory=dict)
    event_bus: EventBus = field(default_factory=EventBus)
    audit: Audit = field(default_factory=Audit)
    metrics: Metrics | None = None
    reload: Callable[[], Awaitable[None]] | None = None
    serving_hooks: list[Callable[[tuple[str, int]], None]] = field(default_factory=list)
    kernel_copy_threads: trio.CapacityLimiter = field(default_factory=_kernel_copy_threads)
    path_io_state: object | None = None
    listeners: list[trio.SocketListener] = field(default_factory=list)
    serve_scope: trio.CancelScope | None = None
    accept_scope: trio.CancelScope | None = None
    stopped: trio.Event = field(default_factory=trio.Event)
    closing: bool = False
    active_transfers: int = 0
    transfer_ended: trio.Event = field(default_factory=trio.Event)

    # connection slots ------------------------------------------------------------------------
    def holder(self, session_id: int) -> str:
        """The session's name in the store: unique across processes and machines."""
        return f"{self.instance_id}:{session_id}"

    async def take(self, session_id: int, key: str, limit: int | None) -> bool:
        """Take ``key`` for the session in the store (always, for ``limit`` None: nothing
        is counted). A slot taken is remembered at once, so :meth:`release` finds it even
        if the caller is cancelled next."""
        if limit is None:
            return True
        keys = self.held.setdefault(session_id, [])
        if key in keys:
            return True
        granted = await self.state_store.acquire(key, limit, self.holder(session_id))
        if granted:
            keys.append(key)
        elif not keys:
            del self.held[session_id]
        return granted

    async def give_back(self, session_id: int, key: str) -> None:
        """Give back one key the session took (nothing if it holds none)."""
        keys = self.held.get(session_id)
        if keys is None or key not in keys:
            return
        keys.remove(key)
        if not keys:
            del self.held[session_id]
        await self.state_store.release(key, self.holder(session_id))

    async def banned(self, host: str) -> bool:
        """True while ``host`` has had ``failures_per_ip`` failed logins within the window."""
        if self.failures_per_ip is None:
            return False
        count = await self.state_store.failure_count(host, self.failure_window)
        return count >= self.failures_per_ip

    async def login_failed(self, host: str) -> None:
        """Count one failed login from ``host``."""
        if self.failures_per_ip is not None:
            await self.state_store.record_failure(
                host, self.failure_window, keep=self.failures_per_ip
            )

    async def admit(self, session_id: int, host: str, per_ip_limit: int | None) -> str | None:
        """Take the connection slots of a session from ``host``: None when taken (then
        :meth:`release` gives them back), else why not (the server is full, the address is
        banned for failed logins or full). Whatever a refusal had taken is given back."""
        if self.available_connections.locked():
            return "too many connections, try again later"
        if await self.banned(host):
            return "too many failed logins from your address, try later"
        if per_ip_limit is not None and self.connections_per_ip.get(host, 0) >= per_ip_limit:
            return "too many connections from your address, try again later"
        if not await self.take(session_id, SERVER_KEY, self.available_connections.maximum_value):
            return "too many connections, try again later"
        if not await self.take(session_id, ip_key(host), per_ip_limit):
            await self.give_back(session_id, SERVER_KEY)
            return "too many connections from your address, try again later"
        if self.available_connections.locked():  # filled while the store answered
            await self.release_keys(session_id)
            return "too many connections, try again later"
        self.available_connections.acquire()
        self.connections_per_ip[host] = self.connections_per_ip.get(host, 0) + 1
        return None

    def release(self, host: str) -> None:
        """Give back this server's own count of a session :meth:`admit` let in (the
        store's slots go with :meth:`release_keys`)."""
        self.available_connections.release()
        remaining = self.connections_per_ip[host] - 1
        if remaining:
            self.connections_per_ip[host] = remaining
        else:
            del self.connections_per_ip[host]

    async def release_keys(self, session_id: int) -> None:
        """Give back every store slot the session holds, each even if another fails (a
        shared store's failure is handled by its :class:`ResilientStore`)."""
        keys = self.held.pop(session_id, [])
        holder = self.holder(session_id)
        for key in reversed(keys):
            await self.state_store.release(key, holder)

    # compatibility ------------------------------------------------------------------------
    @property
    def login_failures(self) -> LoginFailures:
        """Deprecated: the failed-login table of a :class:`~trio_ftp.stores.ProcessStore`
        (a view of it). Shared stores have no such table: use ``state_store.failure_count``.
        """
        warnings.warn(
            "runtime.login_failures is deprecated: count with runtime.state_store",
            DeprecationWarning,
            stacklevel=2,
        )
        store = self.state_store
        if not isinstance(store, ProcessStore):
            raise TypeError(
                f"runtime.login_failures: {type(store).__name__} keeps no local table; "
                "use runtime.state_store.failure_count"
            )
        return LoginFailures(self.failures_per_ip, self.failure_window, ledger=store.failures)
