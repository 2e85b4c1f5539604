"""``ServerRuntime``: what a server keeps and changes while it runs, apart from its options.

The options (:mod:`trio_ftp.options`) are fixed at construction; everything here is built
from them once and then changes as sessions come and go: the listeners and cancel scopes of
the lifecycle, the sessions table, the connection and transfer counters, the failed-login
table, the pool of data ports, the speed-limit buckets and the event bus.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from .datachannel import PortPool
from .events import EventBus
from .login_failures import LoginFailures
from .throttle import ThrottleRegistry
from .users import AvailableConnections

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["KERNEL_COPY_THREADS", "ServerRuntime"]

#: Transfers moving through the kernel at once; more wait for a slot (one chunk at most).
KERNEL_COPY_THREADS = 64


def _kernel_copy_threads() -> trio.CapacityLimiter:
    return trio.CapacityLimiter(KERNEL_COPY_THREADS)


@dataclass(eq=False, slots=True, kw_only=True)
class ServerRuntime:
    """The mutable state of one server (one per ``Server``; not shared, not compared).

    Attributes:
        available_connections: the server-wide connection slots (``maximum_connections``).
        connections_per_ip: control connections holding a slot, per client address.
        login_failures: failed logins per client address (the login policy's table).
        port_pool: the free ports of ``data_ports``.
        throttles: the speed-limit buckets.
        connections: the sessions running now, by session id (aioftp's
            ``server.connections``).
        event_bus: where :meth:`~trio_ftp.Server.events` subscribers listen.
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
    login_failures: LoginFailures
    port_pool: PortPool
    throttles: ThrottleRegistry
    connections_per_ip: dict[str, int] = field(default_factory=dict)
    connections: dict[int, Connection] = field(default_factory=dict)
    event_bus: EventBus = field(default_factory=EventBus)
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
    def admit(self, host: str, per_ip_limit: int | None) -> str | None:
        """Take a connection slot for a session from ``host``: None when taken, else why
        not (the server is full, the address is banned for failed logins or full)."""
        if self.available_connections.locked():
            return "too many connections, try again later"
        if self.login_failures.blocked(host, trio.current_time()):
            return "too many failed logins from your address, try later"
        per_ip = self.connections_per_ip.get(host, 0)
        if per_ip_limit is not None and per_ip >= per_ip_limit:
            return "too many connections from your address, try again later"
        self.available_connections.acquire()
        self.connections_per_ip[host] = per_ip + 1
        return None

    def release(self, host: str) -> None:
        """Give back the slot :meth:`admit` took for ``host``."""
        self.available_connections.release()
        remaining = self.connections_per_ip[host] - 1
        if remaining:
            self.connections_per_ip[host] = remaining
        else:
            del self.connections_per_ip[host]
