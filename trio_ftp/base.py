"""``ServerBase``: aioftp's constructor and lifecycle, run by trio; handlers build on it.

Theory of operation
-------------------
``start()`` binds the listeners. ``serve_forever()`` opens the *sessions* nursery and, inside
it, the *accept* nursery running :func:`trio.serve_listeners` with ``handler_nursery`` set to
the sessions nursery, all under one cancel scope. ``close()`` cancels that scope: accepting
stops, every session (and its data channels and transfer) is cancelled, each session's
teardown runs shielded with short time limits, and ``close()`` returns when
``serve_forever()`` has returned. ``serve()`` is ``start`` + ``task_status.started(address)``
+ ``serve_forever`` for ``nursery.start``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import socket
import ssl as _ssl
import time
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from .aioftp_checks import check_server_class, legacy_verbs
from .boundaries import UserCodeFailed, call_user_code, session_end_limit
from .commands import CommandSpec, collect_commands
from .connection import Connection
from .datachannel import PortPool
from .errors import FTPError
from .events import EventBus, EventKind, EventStream, ServerEvent
from .interfaces import Handler
from .listen import ASYNCIO_ONLY, open_listeners
from .login_failures import LoginFailures
from .metrics import Metrics
from .options import (
    DataPeerCheck,
    DialledAddress,
    FlatOptionAttributes,
    Network,
    PassiveAddressChooser,
    ProxyMode,
    ServerOptions,
)
from .pathio import AbstractPathIO, PathIO
from .paths import resolve_virtual
from .runtime import ServerRuntime, counted_in, user_key
from .session import Session
from .stores import ProcessStore, StateStore
from .throttle import SpeedLimited, ThrottleRegistry, waited_seconds
from .users import AbstractUserManager, AvailableConnections, MemoryUserManager, User
from .validation import as_seconds

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["ServerBase"]

logger = logging.getLogger("trio_ftp.server")

_ServerT = TypeVar("_ServerT", bound="ServerBase")


#: Bytes a speed limit lets through at once after a pause: small, so limited transfers
#: move evenly (their blocks are cut to this size too).
THROTTLE_BURST = 64 * 1024
#: The user-manager calls a session makes (an instance attribute replacing one is user code).
_MANAGER_METHODS = frozenset({"get_user", "authenticate", "notify_login", "notify_logout"})


@dataclass(frozen=True)
class SessionInfo:
    """One live session, as :meth:`ServerBase.sessions` lists it.

    Attributes:
        id: the session id (as in the log lines); :meth:`ServerBase.end_session` takes it.
        client: the client's ``host:port``.
        user: the login name, once logged in.
        command: the command being handled, or the last one.
        transfer: the running transfer (``"RETR /path"``), or None.
        transfer_bytes: bytes it moved so far.
        transfer_seconds: how long it has run.
    """

    id: int
    client: str
    user: str | None
    command: str | None
    transfer: str | None = None
    transfer_bytes: int | None = None
    transfer_seconds: float | None = None


class ServerBase(FlatOptionAttributes, SpeedLimited):
    """The server's state and lifecycle; :class:`trio_ftp.Server` adds the command handlers.

    The arguments mean what aioftp documents for them.

    Args:
        users: a list of :class:`User` or an :class:`AbstractUserManager`; ``None`` means one
            anonymous read/write user rooted in the current directory.
        block_size: bytes per file read or write when a transfer does not go through the
            kernel (TLS, ASCII, speed limits, other backends); 1 MiB by default: FTPS
            downloads run ~1.6x faster than with 256 KiB blocks, and aioftp's 8 KiB costs a
            worker-thread call per 8 KiB.
        socket_timeout: seconds each socket read or write (control and data) may take: a
            stalled data connection gets ``426`` (300 by default, as vsftpd; ``None``: no
            limit).
        idle_timeout: seconds a control connection may go without a complete command (not
            counting transfers); then ``421`` and close (300 by default; ``None``: never).
        wait_future_timeout: seconds a transfer waits for its data connection (then ``425``).
        path_timeout: seconds each path-IO operation may take (then ``451``). With ``None``
            a backend call that never returns holds its session only, until the client
            leaves or :meth:`close` ends it.
        callback_timeout: seconds a call into user code that has no timeout of its own may
            take: an overridden :meth:`greeting` (then ``421`` and the session ends), a
            ``passive_address`` callable (``451``), the user manager's calls when its
            ``timeout`` is ``None`` (its own timeout wins when set). 30 by default;
            ``None``: no limit. A call made while a session ends (``notify_logout``, the
            close of a file) has at most ``trio_ftp.boundaries.SESSION_END_TIMEOUT``
            (5 s) whatever its timeout, so :meth:`close` always returns.
        path_io_factory: the path-IO backend class (:class:`PathIO`, :class:`MemoryPathIO`...).
        maximum_connections: control connections served at once; the next gets ``421``.
        read_speed_limit, write_speed_limit: bytes per second for the whole server, uploads
            (read) and downloads (write); ``None``: unlimited. Attributes: changing them
            takes effect on running transfers.
        read_speed_limit_per_connection, write_speed_limit_per_connection: the same for each
            connection. ``User`` has the same four, per user and per connection of that user;
            every limit that applies holds at once.
        ipv4_pasv_forced_response_address: aioftp's name for ``passive_address`` (a string
            only); give one or the other.
        passive_address: the IPv4 address announced in ``227`` (for NAT): a string, or a
            callable ``(connection) -> str | None`` choosing per connection (``None``: the
            default), or an async one (awaited within ``callback_timeout``). A plain
            callable runs on the event loop: it must not block. The default, and
            ``0.0.0.0``, mean the control connection's local address; a callable that
            raises or times out gets ``451``. Also a host name (resolved again for each
            ``PASV``, within ``callback_timeout``; failure: ``451``), or
            :data:`trio_ftp.DIALLED`: the address the client dialled (behind a load balancer,
            the PROXY header's destination; else the local address).
        passive_address_map: client networks (CIDR) -> the IPv4 address ``227`` announces
            to clients in them (SFTPGo's ``passive_ip_overrides``); the longest matching
            prefix wins, a client in none gets ``passive_address``.
        data_peer_check: who may connect to a passive data port: ``"strict"`` (default)
            the session's client address (the proxied one when ``proxy_protocol_data``);
            ``"transport"`` the control connection's transport peer (the load balancer);
            ``"off"`` anyone (then anyone who guesses the port can take the transfer).
        data_ports: the ports passive listeners may use; ``None`` lets the kernel choose.
        active_mode: honour ``PORT``/``EPRT`` (the server connects to the client); when
            False they are answered ``504``.
        permit_foreign_addresses: let ``PORT``/``EPRT`` name an address other than the
            control connection's peer. Off by default: that is the FTP bounce attack
            (RFC 2577 §3), answered ``501``.
        permit_privileged_ports: let ``PORT``/``EPRT`` name a port below 1024 (``501``
            otherwise, RFC 2577 §3).
        encoding: encoding of commands, replies and listings.
        ssl: implicit FTPS (aioftp's meaning): every control connection is TLS from its
            first byte, and data connections are TLS too.
        welcome_message: the ``220`` greeting text.
        system_type: the ``215`` SYST reply text.
        tls_context: explicit FTPS: the plain port offers ``AUTH TLS`` (RFC 4217).
        tls_control_required: refuse ``USER``/``PASS`` (``530``) on a control connection
            that is not TLS, so a password is never read in clear.
        tls_data_required: refuse transfers (``521``) unless ``PROT P`` is in force.
        tls_require_session_reuse: a data connection's TLS session must resume the control
            connection's (vsftpd's ``require_ssl_reuse``); others are dropped (``425``).
        tls_strict_eof: an upload ended by a TCP FIN without TLS ``close_notify`` fails
            (``426``); by default it is accepted, as most clients end uploads that way.
        tls_allow_ccc: honour ``CCC`` (back to a clear control connection); refused by
            default.
        tls_handshake_timeout: seconds a TLS handshake (control or data) may take.
        maximum_connections_per_ip: control connections from one client address at once;
            the next gets ``421``.
        login_failure_delay: seconds before a failed ``PASS`` is answered (``trio.sleep``:
            only that session waits).
        maximum_login_attempts: failed logins after which the session is closed with
            ``421`` (``None``: no limit).
        maximum_login_failures_per_ip: failed logins from one client address, across its
            sessions, after which that address is refused (``421``, new sessions at the
            greeting) until ``login_failure_window`` seconds pass (``None``: no limit).
        login_failure_window: seconds a failed login counts against its address.
        atomic_uploads: ``STOR`` and ``STOU`` write to a hidden temporary file in the same
            directory, renamed over the target only when the upload succeeds and removed
            when it fails; the target name never shows a partial file. (``APPE`` and
            ``REST`` + ``STOR`` extend a file in place: their point is to keep what
            arrived.) Without it, a failed upload leaves what arrived: a prefix of what
            was sent.
        permit_special_mode_bits: like vsftpd's ``chmod`` mask: unless True, the setuid,
            setgid and sticky bits (``0o7000``) are never set, by ``SITE CHMOD`` (``550``)
            or by an atomic upload replacing a file that had them.
        proxy_protocol: PROXY protocol (haproxy's v1 and v2 headers) on the control
            listener: ``"off"`` (default), ``"optional"`` (a trusted sender may send a
            header; one that sends nothing within ``proxy_protocol_timeout`` is served as a
            direct client) or ``"required"`` (only trusted senders, each with a header). A
            header from an untrusted sender, a malformed header, or none in ``required``
            mode closes the connection (logged). The header's source is then the session's
            client address everywhere: logs, events, per-IP limits, login-failure bans,
            PORT/EPRT checks.
        proxy_protocol_from: the networks (CIDR strings or ``ipaddress`` networks) whose
            connections may carry a header: the load balancers. Needed unless ``"off"``.
        proxy_protocol_timeout: seconds a trusted sender has to send its header (3).
        proxy_protocol_data: passive data connections take PROXY headers too: one from a
            trusted sender must start with a header (before any TLS handshake).
        state_store: where ``maximum_connections`` (server and user),
            ``maximum_connections_per_ip`` and the login-failure ban are counted: a
            :class:`~trio_ftp.stores.StateStore`. By default a new
            :class:`~trio_ftp.stores.ProcessStore` (this server alone);
            :class:`~trio_ftp.stores.MachineStore` shares the counts with the other
            processes of the machine, :class:`~trio_ftp.stores.RedisStore` with every
            instance. A shared store is used through a
            :class:`~trio_ftp.stores.ResilientStore` (see its policy for a store that is
            down). Whoever made the store closes it.

    Configuration and state: the keywords below build :attr:`options`, a frozen
    :class:`~trio_ftp.options.ServerOptions` (``server.options.timeouts.idle``...); a
    ready one gives a server with :meth:`from_options`. The flat names
    (``server.idle_timeout``...) stay readable, read-only. What changes while the server
    runs (listeners, sessions, counters, the failed-login table, the event bus) is
    :attr:`runtime`, a :class:`~trio_ftp.runtime.ServerRuntime`. The speed limits stay plain
    attributes: changing one applies to running transfers.

    Cancellation: every coroutine here is a plain trio checkpoint; cancelling ``serve()`` or
    ``serve_forever()`` closes every session before it returns.

    User code (the user manager, the path-IO backend and its factory, ``greeting``,
    ``passive_address``, custom commands and ``SITE`` handlers) is a boundary: an
    :class:`Exception` raised there ends at most the session that made the call, with a
    reply and one logged traceback, never ``serve()``; see :mod:`trio_ftp.boundaries`.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass written for aioftp that would misbehave fails here, at class creation
        (:mod:`trio_ftp.aioftp_checks`): an override of a hook trio_ftp never calls, or
        ``self.get_paths(...)`` used without ``await``."""
        super().__init_subclass__(**kwargs)
        if not cls.__module__.startswith("trio_ftp."):
            check_server_class(cls)

    def __init__(
        self,
        users: Sequence[User] | AbstractUserManager | None = None,
        *,
        block_size: int = 1024 * 1024,
        socket_timeout: float | None = 300.0,
        idle_timeout: float | None = 300.0,
        wait_future_timeout: float | None = 1,
        path_timeout: float | None = None,
        callback_timeout: float | None = 30.0,
        path_io_factory: type[AbstractPathIO[Any]] = PathIO,
        maximum_connections: int | None = None,
        read_speed_limit: float | None = None,
        write_speed_limit: float | None = None,
        read_speed_limit_per_connection: float | None = None,
        write_speed_limit_per_connection: float | None = None,
        ipv4_pasv_forced_response_address: str | None = None,
        data_ports: Iterable[int] | None = None,
        passive_address: str | DialledAddress | PassiveAddressChooser | None = None,
        passive_address_map: Mapping[Network, str] | Iterable[tuple[Network, str]] = (),
        data_peer_check: DataPeerCheck = "strict",
        active_mode: bool = True,
        permit_foreign_addresses: bool = False,
        permit_privileged_ports: bool = False,
        encoding: str = "utf-8",
        ssl: _ssl.SSLContext | None = None,
        welcome_message: str = "trio_ftp ready",
        system_type: str = "UNIX Type: L8",
        tls_context: _ssl.SSLContext | None = None,
        tls_control_required: bool = False,
        tls_data_required: bool = False,
        tls_require_session_reuse: bool = False,
        tls_strict_eof: bool = False,
        tls_allow_ccc: bool = False,
        tls_handshake_timeout: float = 10.0,
        maximum_connections_per_ip: int | None = None,
        login_failure_delay: float = 1.0,
        maximum_login_attempts: int | None = 3,
        maximum_login_failures_per_ip: int | None = 20,
        login_failure_window: float = 600.0,
        atomic_uploads: bool = False,
        permit_special_mode_bits: bool = False,
        proxy_protocol: ProxyMode = "off",
        proxy_protocol_from: Iterable[Network] = (),
        proxy_protocol_timeout: float = 3.0,
        proxy_protocol_data: bool = False,
        state_store: StateStore | None = None,
    ) -> None:
        super().__init__(
            read_speed_limit,
            write_speed_limit,
            read_speed_limit_per_connection,
            write_speed_limit_per_connection,
        )
        self._options = ServerOptions.from_keywords(
            block_size=block_size,
            socket_timeout=socket_timeout,
            idle_timeout=idle_timeout,
            wait_future_timeout=wait_future_timeout,
            path_timeout=path_timeout,
            callback_timeout=callback_timeout,
            maximum_connections=maximum_connections,
            ipv4_pasv_forced_response_address=ipv4_pasv_forced_response_address,
            data_ports=data_ports,
            passive_address=passive_address,
            passive_address_map=passive_address_map,
            data_peer_check=data_peer_check,
            active_mode=active_mode,
            permit_foreign_addresses=permit_foreign_addresses,
            permit_privileged_ports=permit_privileged_ports,
            encoding=encoding,
            ssl=ssl,
            welcome_message=welcome_message,
            system_type=system_type,
            tls_context=tls_context,
            tls_control_required=tls_control_required,
            tls_data_required=tls_data_required,
            tls_require_session_reuse=tls_require_session_reuse,
            tls_strict_eof=tls_strict_eof,
            tls_allow_ccc=tls_allow_ccc,
            tls_handshake_timeout=tls_handshake_timeout,
            maximum_connections_per_ip=maximum_connections_per_ip,
            login_failure_delay=login_failure_delay,
            maximum_login_attempts=maximum_login_attempts,
            maximum_login_failures_per_ip=maximum_login_failures_per_ip,
            login_failure_window=login_failure_window,
            atomic_uploads=atomic_uploads,
            permit_special_mode_bits=permit_special_mode_bits,
            proxy_protocol=proxy_protocol,
            proxy_protocol_from=proxy_protocol_from,
            proxy_protocol_timeout=proxy_protocol_timeout,
            proxy_protocol_data=proxy_protocol_data,
        )
        options = self._options
        self.path_io_factory = path_io_factory
        if isinstance(users, AbstractUserManager):
            self.user_manager: AbstractUserManager = users
        else:
            self.user_manager = MemoryUserManager(users)
        self.state_store = state_store if state_store is not None else ProcessStore()
        self.runtime = ServerRuntime(
            available_connections=AvailableConnections(options.limits.connections),
            state_store=counted_in(self.state_store),
            failures_per_ip=options.login.failures_per_ip,
            failure_window=as_seconds(options.login.failure_window),
            port_pool=PortPool(options.data_channels.ports),
            throttles=ThrottleRegistry(self, burst=min(options.limits.block_size, THROTTLE_BURST)),
        )
        table = collect_commands(type(self))
        for verb, name in legacy_verbs(type(self), set(table)):
            table[verb] = (name, CommandSpec(verb))
        self.command_specs: dict[str, CommandSpec] = {
            verb: spec for verb, (_, spec) in table.items()
        }
        self.commands_mapping: dict[str, Handler] = {
            verb.lower(): getattr(self, name) for verb, (name, _) in table.items()
        }

    @classmethod
    def from_options(
        cls: type[_ServerT],
        options: ServerOptions,
        users: Sequence[User] | AbstractUserManager | None = None,
        *,
        path_io_factory: type[AbstractPathIO[Any]] = PathIO,
        read_speed_limit: float | None = None,
        write_speed_limit: float | None = None,
        read_speed_limit_per_connection: float | None = None,
        write_speed_limit_per_connection: float | None = None,
        state_store: StateStore | None = None,
    ) -> _ServerT:
        """A server configured by ``options`` (a :class:`~trio_ftp.options.ServerOptions`).

        The same as passing the options' flat keywords (:meth:`ServerOptions.keywords`) to
        the constructor, so a subclass's ``__init__`` runs; ``server.options == options``.
        """
        return cls(
            users,
            path_io_factory=path_io_factory,
            read_speed_limit=read_speed_limit,
            write_speed_limit=write_speed_limit,
            read_speed_limit_per_connection=read_speed_limit_per_connection,
            write_speed_limit_per_connection=write_speed_limit_per_connection,
            state_store=state_store,
            **options.keywords(),
        )

    @property
    def options(self) -> ServerOptions:
        """The server's configuration, by group (frozen: build a new server to change it)."""
        return self._options

    # the runtime state under the names aioftp and earlier versions gave it -----------------
    @property
    def connections(self) -> dict[int, Connection]:
        """The sessions running now, by session id."""
        return self.runtime.connections

    @property
    def available_connections(self) -> AvailableConnections:
        """The server-wide connection slots (``maximum_connections``)."""
        return self.runtime.available_connections

    @property
    def login_failures(self) -> LoginFailures:
        """Deprecated: failed logins per client address, for a
        :class:`~trio_ftp.stores.ProcessStore` only (``state_store.failure_count`` counts
        in any store)."""
        return self.runtime.login_failures

    @property
    def data_ports(self) -> PortPool:
        """The pool of ``data_ports`` (the configured ports are ``options.data_channels.ports``)."""
        return self.runtime.port_pool

    @property
    def throttles(self) -> ThrottleRegistry:
        """The speed-limit buckets."""
        return self.runtime.throttles

    @property
    def event_bus(self) -> EventBus:
        """Where :meth:`events` subscribers listen."""
        return self.runtime.event_bus

    @property
    def kernel_copy_threads(self) -> trio.CapacityLimiter:
        """Worker threads for kernel-copy transfers."""
        return self.runtime.kernel_copy_threads

    # lifecycle -----------------------------------------------------------------------------
    async def start(
        self,
        host: str | None = None,
        port: int = 0,
        *,
        reuse_port: bool | None = False,
        backlog: int | None = None,
        family: int = socket.AF_UNSPEC,
        sock: socket.socket | None = None,
        ssl_handshake_timeout: float | None = None,
        **asyncio_only: object,
    ) -> None:
        """Bind the listening socket(s); :attr:`address` is then known. Does not serve yet.

        Takes aioftp's arguments (those of :func:`asyncio.start_server`):

        - ``reuse_port``: share the port with other processes through ``SO_REUSEPORT``
          (the kernel spreads connections over them: :func:`trio_ftp.serve_workers`);
          raises :class:`trio_ftp.reuseport.ReusePortUnavailable` where the system has no
          such option.
        - ``backlog``: the listen queue's length; ``family``: ``socket.AF_INET`` or
          ``AF_INET6`` binds that family's addresses only; ``sock``: serve on a bound
          socket of yours instead of ``host``/``port``.
        - ``ssl_handshake_timeout``: sets ``tls_handshake_timeout``.
        - ``loop``, ``limit``, ``flags``, ``reuse_address``, ``start_serving``: accepted,
          with nothing to do in trio (:data:`trio_ftp.listen.ASYNCIO_ONLY` says why);
          ``ssl``: refused (``TypeError``): give ``Server(ssl=...)``, as aioftp wants.
        """
        for name in asyncio_only:
            if name == "ssl":
                raise TypeError("start() takes no ssl: give Server(ssl=...) or tls_context=")
            if name not in ASYNCIO_ONLY:
                raise TypeError(f"start() got an unexpected keyword argument {name!r}")
        if self.runtime.closing:
            raise RuntimeError("this server was closed and cannot serve again: make a new Server")
        if self.runtime.listeners:
            raise RuntimeError("server already started")
        if ssl_handshake_timeout is not None:
            tls = dataclasses.replace(self._options.tls, handshake_timeout=ssl_handshake_timeout)
            self._options = dataclasses.replace(self._options, tls=tls)
        listeners = await open_listeners(
            host, port, reuse_port=bool(reuse_port), backlog=backlog, family=family, sock=sock
        )
        self.runtime.listeners = listeners
        logger.info("listening on %s", ", ".join(_format(listener) for listener in listeners))
        self._warn_if_anonymous_can_write()

    def _warn_if_anonymous_can_write(self) -> None:
        """A WARNING at start when anyone may upload: ``Server()`` alone serves the current
        directory to anonymous clients read/write (aioftp's default)."""
        manager = self.user_manager
        if not isinstance(manager, MemoryUserManager):
            return
        for user in manager.users:
            if user.login is None and any(p.writable for p in user.permissions):
                logger.warning(
                    "anonymous clients may write to %s (give User(permissions=[Permission("
                    "'/', writable=False)]) to make it read-only)",
                    user.base_path,
                )

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` actually bound (the first listener's)."""
        if not self.runtime.listeners:
            raise RuntimeError("server not started")
        sockname = self.runtime.listeners[0].socket.getsockname()
        return str(sockname[0]), int(sockname[1])

    async def serve_forever(self) -> None:
        """Accept and serve until cancelled or :meth:`close` is called; then close all."""
        if not self.runtime.listeners:
            raise RuntimeError("call start() first")
        try:
            with trio.CancelScope() as self.runtime.serve_scope:
                if self.runtime.closing:
                    self.runtime.serve_scope.cancel()
                # The accept nursery sits inside the sessions nursery: cancelling the scope
                # stops accepting and ends every session, and both are gone on exit.
                async with trio.open_nursery() as sessions, trio.open_nursery() as accepting:
                    self.runtime.accept_scope = accepting.cancel_scope
                    sessions.start_soon(self.runtime.state_store.keep_alive)  # leases, purges
                    serve = functools.partial(trio.serve_listeners, handler_nursery=sessions)
                    accepting.start_soon(serve, self._handle_connection, self.runtime.listeners)
        finally:
            with trio.CancelScope(shield=True):
                for listener in self.runtime.listeners:
                    await listener.aclose()
            self.runtime.event_bus.close()
            self.runtime.stopped.set()

    async def serve(
        self,
        host: str | None = None,
        port: int = 0,
        *,
        task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
        **start_arguments: Any,
    ) -> None:
        """Bind, report ``(host, port)`` through ``task_status.started``, serve until cancelled.

        ``await nursery.start(server.serve, "127.0.0.1", 0)`` returns the bound address;
        ``start_arguments`` are :meth:`start`'s (aioftp's).
        """
        await self.start(host, port, **start_arguments)
        task_status.started(self.address)
        await self.serve_forever()

    async def run(self, host: str | None = None, port: int = 0, **start_arguments: Any) -> None:
        """``start``, ``serve_forever``, ``close``: aioftp's all-in-one entry point
        (``start_arguments`` are :meth:`start`'s, aioftp's)."""
        await self.start(host, port, **start_arguments)
        try:
            await self.serve_forever()
        finally:
            with trio.CancelScope(shield=True):
                await self.close()

    async def close(self, grace: float | None = None) -> None:
        """Stop accepting, cancel every session and transfer, return when all have ended.

        With ``grace`` (seconds), running transfers may finish first: accepting stops at
        once and new transfers are refused (``421``), then whatever still runs after
        ``grace`` is cancelled (``426``). Every session is closed with ``421``.

        Timeouts: ``grace`` bounds the wait for transfers; the teardown of each session is
        itself bounded: a second or two for the goodbye, and at most
        ``boundaries.SESSION_END_TIMEOUT`` (5 s) for each call into user code made while
        it ends (the close of a file a transfer left open, ``notify_logout``), even when
        that code never returns.
        """
        self.runtime.closing = True
        if self.runtime.serve_scope is None:
            for listener in self.runtime.listeners:
                await listener.aclose()
            return
        if grace is not None and self.runtime.accept_scope is not None:
            self.runtime.accept_scope.cancel()
            with trio.move_on_after(grace):
                while self.runtime.active_transfers:
                    await self.runtime.transfer_ended.wait()
        self.runtime.serve_scope.cancel()
        await self.runtime.stopped.wait()

    async def aclose(self, grace: float | None = None) -> None:
        """``close(grace)`` under trio's name for it."""
        await self.close(grace)

    @property
    def closing(self) -> bool:
        """True once :meth:`close` has begun."""
        return self.runtime.closing

    @property
    def metrics(self) -> Metrics | None:
        """The Prometheus metrics, once :meth:`enable_metrics` ran (else None)."""
        return self.runtime.metrics

    def enable_metrics(self, registry: CollectorRegistry | None = None) -> Metrics:
        """Count this server's Prometheus metrics from now on (see :mod:`trio_ftp.metrics`)
        in ``registry`` (prometheus_client's default one when None); again returns the same
        metrics. Needs ``pip install 'trio_ftp[metrics]'``."""
        if self.runtime.metrics is None:
            runtime = self.runtime
            self.runtime.metrics = Metrics(
                self.commands_mapping,
                registry=registry,
                active_sessions=lambda: len(runtime.connections),
                ports_in_use=lambda: runtime.port_pool.in_use,
                throttle_wait=waited_seconds,
            )
        return self.runtime.metrics

    def sessions(self) -> list[SessionInfo]:
        """The live sessions: who, from where, doing what (for an operator's view)."""
        now = time.monotonic()
        found = []
        for session_id, connection in list(self.runtime.connections.items()):
            state = connection.state
            progress = connection.transfer_progress
            running = connection.control.transfer_running and progress is not None
            found.append(
                SessionInfo(
                    id=session_id,
                    client=f"{connection.client_host}:{connection.client_port}",
                    user=state.login_name if state.logged_in else None,
                    command=state.command or None,
                    transfer=progress.what if running and progress else None,
                    transfer_bytes=progress.bytes if running and progress else None,
                    transfer_seconds=now - progress.started if running and progress else None,
                )
            )
        return found

    def end_session(self, session_id: int) -> bool:
        """End one live session (its transfer is aborted, its client gets ``421``); False
        when no session has that id. Call it in the server's trio thread."""
        connection = self.runtime.connections.get(session_id)
        if connection is None:
            return False
        connection.log.info("ended by the operator")
        connection.control.cancel()
        return True

    def events(self, buffer: int = 256) -> EventStream:
        """Subscribe to what happens: ``async for event in server.events(): ...``.

        See :mod:`trio_ftp.events` for the kinds and the drop policy of a full buffer.
        """
        return self.runtime.event_bus.subscribe(buffer)

    def publish(self, connection: Connection, kind: EventKind, **fields: Any) -> None:
        """Record a :class:`~trio_ftp.events.ServerEvent` about ``connection``: the audit
        log (and transfer log) get it, then ``server.events()`` subscribers."""
        state = connection.state
        if "user" not in fields:
            fields["user"] = state.login_name if state.logged_in else None
        event = ServerEvent(
            kind,
            state.session_id,
            f"{connection.client_host}:{connection.client_port}",
            **fields,
        )
        self.runtime.audit.record(connection.log.prefix, connection.client_host, event)
        if self.runtime.metrics is not None:
            self.runtime.metrics.event(event)
        if self.runtime.event_bus.has_subscribers:
            self.runtime.event_bus.publish(event)

    def transfer_began(self) -> None:
        """Count a running transfer (graceful shutdown waits for them)."""
        self.runtime.active_transfers += 1

    def transfer_done(self) -> None:
        """A transfer ended, however it ended."""
        self.runtime.active_transfers -= 1
        self.runtime.transfer_ended.set()
        self.runtime.transfer_ended = trio.Event()

    def _handle_connection(self, stream: trio.SocketStream) -> Coroutine[Any, Any, None]:
        """The task for one accepted connection: the session's own ``run()`` coroutine,
        made here synchronously, so an idle session's task holds no frame of ours (256
        bytes each). ``Session.run`` never raises an ``Exception``; when the session cannot
        be made (the peer left between accept and ``getpeername``), the task does nothing
        and :func:`trio.serve_listeners` closes the stream."""
        try:
            return Session(self, stream).run()
        except OSError as exc:
            logger.debug("connection dropped before its session began: %r", exc)
        except Exception:  # a session that cannot even start costs its connection only
            logger.exception("could not start a session")
        return _nothing()

    async def serve_connection(
        self,
        stream: trio.abc.Stream,
        *,
        peer: tuple[str, int] | None = None,
        local: tuple[str, int] | None = None,
    ) -> None:
        """Run one FTP session on an already-connected stream, until it ends.

        For a ``trio.SocketStream`` the addresses come from the socket; for any other stream
        (``trio.testing.memory_stream_pair``, a stream from your own listener) pass ``peer``
        and ``local``: PASV listens on ``local``'s host and accepts data connections from
        ``peer``'s host only. Never raises for anything the client or user code does
        (``trio.Cancelled`` and ``KeyboardInterrupt`` go through).
        """
        session = Session(self, stream, peer=peer, local=local)
        try:
            await session.run()
        except Exception:  # pragma: no cover - Session.run catches; last line of defence
            logger.exception("session %d failed", session.id)

    # hooks the session calls -----------------------------------------------------------------
    def session_feature_lines(self, connection: Connection) -> list[str]:
        """FEAT lines that depend on configuration or session state; mixins extend this
        cooperatively (``[*super().session_feature_lines(connection), ...]``)."""
        return []

    def new_path_io(self, connection: Connection) -> AbstractPathIO[Any]:
        """Make a session's path-IO backend; backends with shared state share it."""
        path_io = self.path_io_factory(
            timeout=self.options.timeouts.path_io,
            connection=connection,
            state=self.runtime.path_io_state,
        )
        if self.runtime.path_io_state is None:
            self.runtime.path_io_state = path_io.state
        return path_io

    async def greet(self, connection: Connection) -> bool:
        """Run :meth:`greeting` (which a subclass may override) as a boundary: within
        ``callback_timeout``; if it raises or times out, ``421`` and the session ends."""
        # Ours unless overridden: then it only counts in the state store, whose calls are
        # bounded where they can wait (ResilientStore), so it needs no deadline of its own.
        ours = type(self).greeting is ServerBase.greeting
        try:
            return await call_user_code(
                lambda: self.greeting(connection),
                what="greeting",
                seconds=None if ours else self.options.timeouts.user_code,
                log=connection.log,
                failed=UserCodeFailed("421", "service not available, closing connection"),
            )
        except UserCodeFailed as exc:
            connection.response(exc.code, exc.text)
            return False

    async def greeting(self, connection: Connection) -> bool:
        """Send ``220``, or ``421`` when the server or this client's address is full (then
        the session ends). The slots taken here are given back by :meth:`release_slots`."""
        refusal = await self.runtime.admit(
            connection.session_id, connection.client_host, self.options.limits.connections_per_ip
        )
        if refusal is not None:
            connection.response("421", refusal)
            self.publish(connection, "connection_refused", reason=refusal)
            return False
        connection.acquired = True
        connection.response("220", self.options.protocol.welcome_message)
        return True

    async def release_slots(self, connection: Connection) -> None:
        """Give back every slot the session holds (:meth:`greeting`'s, a login's); again
        does nothing. The session calls it last, whatever user code did while the session
        ended; each store call is bounded (``ResilientStore``), the whole by
        ``boundaries.SESSION_END_TIMEOUT``."""
        if connection.acquired:
            connection.acquired = False
            self.runtime.release(connection.client_host)
        if connection.session_id not in self.runtime.held:
            return  # nothing in the store (no limits, or released already)
        if not self.runtime.state_store.shared:  # this process's memory: never waits
            await self.runtime.release_keys(connection.session_id)
            return
        with trio.move_on_after(session_end_limit(None)) as scope:
            await self.runtime.release_keys(connection.session_id)
        if scope.cancelled_caught:
            connection.log.warning("the state store did not release the session's slots")

    async def session_ended(self, connection: Connection) -> None:
        """Release what the session held (user slot, connection slots), whatever ended it.
        Runs shielded, within ``boundaries.SESSION_END_TIMEOUT`` or so."""
        await self.release_slots(connection)
        await self.forget_user(connection, ending=True)

    @property
    def user_manager_timeout(self) -> float | None:
        """Seconds a user-manager call may take: its own ``timeout``, else
        ``callback_timeout``; None (no deadline, so no cancel scope per call) for the
        built-in :class:`~trio_ftp.MemoryUserManager` itself, which answers from memory
        and never waits (a subclass may, and gets the deadline)."""
        if self._manager_never_waits:
            return None
        own: float | None = self.user_manager.timeout
        return own if own is not None else self.options.timeouts.user_code

    @property
    def _manager_never_waits(self) -> bool:
        """The user manager is the built-in :class:`~trio_ftp.MemoryUserManager` itself,
        with none of its methods replaced on the instance."""
        manager = self.user_manager
        return type(manager) is MemoryUserManager and not vars(manager).keys() & _MANAGER_METHODS

    async def forget_user(self, connection: Connection, *, ending: bool = False) -> None:
        """Tell the user manager the session no longer uses its user (logout, re-USER).

        Never raises for the user manager: ``notify_logout`` raising or overrunning its
        time (:attr:`user_manager_timeout`; while the session ends, ``ending``, at most
        ``boundaries.SESSION_END_TIMEOUT``) is logged, and the logout stands.
        """
        if connection.state.logged_in:
            self.publish(connection, "logout")
        user, logged = connection.state.logged_out()
        if user is None or not logged:
            return  # only a login took a slot (notify_login)
        await self.runtime.give_back(connection.session_id, user_key(user.login))
        timeout = self.user_manager_timeout  # None for the built-in manager: it never waits
        if ending and not self._manager_never_waits:
            timeout = session_end_limit(timeout)
        what = f"user manager notify_logout({user.login!r})"
        try:
            await call_user_code(
                lambda: self.user_manager.notify_logout(user),
                what=what,
                seconds=timeout,
                log=connection.log,
                failed=UserCodeFailed("451", "user database error"),
            )
        except UserCodeFailed:
            pass  # logged where it happened
        except FTPError as exc:  # a reply has no meaning here
            connection.log.warning("%s raised %r", what, exc)

    async def get_paths(
        self, connection: Connection, path: str | PurePosixPath
    ) -> tuple[Any, PurePosixPath]:
        """Return ``(real path, virtual path)`` for a client's path argument.

        The one confinement check: ``..`` cannot climb above the user's root (pure), and the
        backend's ``confine`` refuses a real path that leaves ``base_path`` through a symlink.
        Cached for the duration of one command.
        """
        cache = connection.path_cache
        key = (connection.current_directory, str(path))
        if cache is not None and key in cache:
            return cache[key]
        virtual = resolve_virtual(connection.current_directory, path)
        user = connection.user
        if user is None:
            raise RuntimeError("get_paths before a login")
        real = await connection.path_io.confine(user.base_path, virtual.relative_to("/"))
        if cache is not None:
            cache[key] = (real, virtual)
        return real, virtual


async def _nothing() -> None:
    """A task with nothing to do."""


def _format(listener: trio.SocketListener) -> str:
    host, port = listener.socket.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
