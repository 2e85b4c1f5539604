"""Data channels: passive listeners, active targets, the data connection, and the port pool.

Theory of operation
-------------------
PASV/EPSV call :meth:`DataChannels.open_passive`: any previous channel of the session is
closed first (its listener socket closed and its port returned at once, so a one-port pool can
be reused immediately), then a listener is bound on the control connection's local address
(RFC 959 §4.1.2: the data port is on the server the client talks to), on a port from the
server-wide :class:`PortPool` when ``data_ports`` is set. A child task of the session nursery
accepts connections until one passes ``data_peer_check`` (by default: it comes from the
session's client address; others are dropped and logged: that is what stops data-port
theft), stores it as
``connection.data_connection`` and closes the listener. A transfer takes it with
:meth:`DataChannels.take_stream`, which waits at most ``wait_future_timeout`` (then ``425``).
The accept task has its own cancel scope; a new PASV, ABOR without a transfer, or the end of
the session cancels it, and its ``finally`` closes the socket and returns the port.

Behind a load balancer (``proxy_protocol_data``), a data connection from a trusted sender
starts with a PROXY header naming the client, read (within ``proxy_protocol_timeout``, never
a byte past it) before the peer check and before any TLS handshake.

PORT/EPRT call :meth:`DataChannels.open_active` (RFC 959 §4.1.2, RFC 2428 §2), which closes
any previous channel and only records the client's address as an :class:`ActiveTarget`:
nothing is connected until a transfer calls :meth:`DataChannels.take_stream`, which then
connects from the control connection's local address (RFC 959 §3.2) inside the transfer task,
so ABOR and the end of the session cancel the connect like any other part of the transfer.

Either kind of channel is kept as ``connection.data_channel`` (aioftp's name for it,
``connection.passive_server``, reads the same field: it means "a data channel is set up",
PASV/EPSV *or* PORT/EPRT). A channel serves one transfer.
"""

from __future__ import annotations

import os
import socket
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from .anyport import AnyPort
from .controlsocket import ControlSocket
from .errors import DataConnectionError, NoAvailablePort, ReplyError
from .proxyprotocol import ProxyProtocolError
from .proxyreceive import receive_header
from .tls import TLSHandshakeFailed, handshake, wrap_server_side
from .tlstransport import tls_data_transport
from .validation import address_of, as_seconds

if TYPE_CHECKING:
    from .connection import Connection
    from .metrics import Metrics
    from .options import ServerOptions

__all__ = ["ActiveTarget", "DataChannels", "PassiveListener", "PortPool", "same_host"]


class PortPool:
    """The server-wide set of ports passive listeners may use (``data_ports``).

    ``None`` means "any free port" (of the kernel's ephemeral range, see :mod:`.anyport`).
    A port is lent to one listener at a time and comes back when that listener closes,
    whatever the reason.
    """

    def __init__(self, ports: Iterable[int] | None, any_port: AnyPort | None = None) -> None:
        self._free: deque[int] | None = None
        #: Where an unlimited pool's listeners bind (see :mod:`.anyport`).
        self.any_port = any_port or AnyPort.from_kernel()
        #: Ports lent now (passive listeners open; counted when unlimited too).
        self.in_use = 0
        if ports is not None:
            self._free = deque(dict.fromkeys(int(p) for p in ports))
            for port in self._free:
                if not 0 < port < 65536:
                    raise ValueError(f"data_ports: {port} is not a TCP port number")

    @property
    def limited(self) -> bool:
        """True when ``data_ports`` was given."""
        return self._free is not None

    def take(self) -> int:
        """Lend a free port (``0`` when unlimited). Raises :class:`NoAvailablePort`."""
        if self._free is None:
            self.in_use += 1
            return 0
        if not self._free:
            raise NoAvailablePort("every data port is in use")
        self.in_use += 1
        return self._free.popleft()

    def give_back(self, port: int) -> None:
        """Return a lent port (at the end of the queue, so ports rotate)."""
        self.in_use -= 1
        if self._free is not None:
            self._free.append(port)

    @property
    def free(self) -> int | None:
        """How many ports are free now (``None`` when unlimited)."""
        return None if self._free is None else len(self._free)


class PassiveListener:
    """One PASV/EPSV listening socket (``connection.data_channel``)."""

    def __init__(self, sock: trio.socket.SocketType, port: int, pool: PortPool, lent: int) -> None:
        self.socket = sock
        self.port = port
        self.scope = trio.CancelScope()
        self._pool = pool
        self._lent = lent
        self._closed = False

    def close(self) -> None:
        """Close the socket and return the port to the pool; idempotent, synchronous."""
        if self._closed:
            return
        self._closed = True
        self.scope.cancel()
        self.socket.close()
        self._pool.give_back(self._lent)

    @classmethod
    def bind(cls, host: str, pool: PortPool) -> PassiveListener:
        """Bind a listener on ``host``: each free pool port once, or, without
        ``data_ports``, the ports :mod:`.anyport` proposes."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        attempts = pool.free if pool.limited else 1
        last_error: OSError | None = None
        for _ in range(attempts or 0):
            lent = pool.take()
            for port in (lent,) if lent else pool.any_port.candidates():
                try:
                    plain = _listening_socket(family, host, port)
                except OSError as exc:
                    last_error = exc
                    continue
                sock = trio.socket.from_stdlib_socket(plain)
                return cls(sock, sock.getsockname()[1], pool, lent)
            pool.give_back(lent)
        if last_error is not None and not pool.limited:
            raise last_error
        raise NoAvailablePort("every data port is in use")


def _listening_socket(family: socket.AddressFamily, host: str, port: int) -> socket.socket:
    """A plain socket listening on ``(host, port)``, bound synchronously: ``host`` is the
    control connection's own numeric address, so there is nothing to resolve, and binding
    a local port never waits (trio's async bind would cost a scheduler trip per PASV)."""
    plain = socket.socket(family, socket.SOCK_STREAM)
    try:
        if port:
            # A port whose last data connection is in TIME_WAIT must be reusable at once.
            # Never for port 0: with SO_REUSEADDR the kernel's own search gets slower still
            # (see anyport).
            plain.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        plain.bind((host, port))
        plain.listen(1)
    except OSError:
        plain.close()
        raise
    return plain


@dataclass(frozen=True)
class ActiveTarget:
    """One PORT/EPRT destination: where the server connects for the next transfer.

    Kept as ``connection.data_channel``, like a passive listener, so the transfer handlers'
    ``data_channel_ready`` condition accepts it.
    """

    host: str
    port: int

    def close(self) -> None:
        """Nothing to release: the connection is made, and closed, by the transfer."""


def same_host(a: str, b: str) -> bool:
    """True if two addresses name the same host (IPv4-mapped IPv6 equals its IPv4)."""
    return a == b or (address_of(a) or a) == (address_of(b) or b)


class DataChannels:
    """The data-channel state of one session.

    Its collaborators are explicit: the session's ``connection`` (where the channel and an
    accepted data connection are kept, so ``ConnectionConditions`` can wait for them), the
    server's ``options`` and shared port ``pool``, and the nursery its accept tasks run in
    (:meth:`run_in`, called by the session once its nursery is open).
    """

    __slots__ = (
        "_connection",
        "_handshaking",
        "_metrics",
        "_nursery",
        "_options",
        "_pool",
        "_proxy",
        "_tls",
        "failure",
    )

    def __init__(
        self,
        connection: Connection,
        options: ServerOptions,
        pool: PortPool,
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._handshaking = False  # a passive data connection's TLS handshake is running
        self._connection = connection
        self._options = options.data_channels
        self._tls = options.tls
        self._proxy = options.proxy
        self._pool = pool
        self._nursery: trio.Nursery | None = None
        #: Why the last data connection attempt was refused (for the 425 text).
        self.failure: str | None = None

    def run_in(self, nursery: trio.Nursery) -> None:
        """Accept tasks run in ``nursery`` (the session's) from now on."""
        self._nursery = nursery

    async def open_passive(self) -> PassiveListener:
        """Close any previous channel, bind a new listener and start accepting on it.

        Raises:
            NoAvailablePort: every ``data_ports`` port is in use (or none could be bound).
            OSError: binding failed for another reason.
            RuntimeError: the session is not running (no nursery yet).
        """
        if self._nursery is None:
            raise RuntimeError("data channels are not running in a session yet")
        await self.close()
        self.failure = None
        listener = PassiveListener.bind(self._connection.server_host, self._pool)
        self._connection.data_channel = listener
        self._nursery.start_soon(self._accept, listener)
        return listener

    async def open_active(self, host: str, port: int) -> ActiveTarget:
        """Check a PORT/EPRT address, close any previous channel and record the target.

        Nothing is connected here; :meth:`take_stream` connects when a transfer starts.

        Raises:
            ReplyError: ``501`` for an address other than the control connection's peer
                (FTP bounce protection, RFC 2577 §3) unless ``permit_foreign_addresses``,
                or a port below 1024 unless ``permit_privileged_ports``. The previous
                channel is then left as it was.
        """
        settings = self._options
        address = address_of(host)
        if address is None:
            raise ReplyError("501", f"not an IP address: {host!r}")
        peer = self._connection.client_host
        if not settings.permit_foreign_addresses and not same_host(host, peer):
            raise ReplyError("501", "foreign address refused (FTP bounce protection)")
        if not settings.permit_privileged_ports and port < 1024:
            raise ReplyError("501", f"privileged port {port} refused (use a port >= 1024)")
        await self.close()
        self.failure = None
        # IPv4-mapped becomes plain IPv4; an IPv6 address keeps its zone (``%eth0``).
        target = ActiveTarget(str(address) if address.version == 4 else host, port)
        self._connection.data_channel = target
        return target

    async def _connect(self, target: ActiveTarget) -> trio.abc.Stream:
        """Connect to an active target from the control connection's local address.

        Timeouts: ``wait_future_timeout`` for the TCP connect (then ``425``), then
        ``tls_handshake_timeout`` with ``PROT P``. Cancellation: runs in the transfer task,
        so ABOR and the session's end cancel it; the socket is closed.
        """
        family = socket.AF_INET6 if ":" in target.host else socket.AF_INET
        local_host = self._connection.server_host
        local = address_of(local_host)
        bind: str | None = None  # RFC 959 §3.2: connect from the address the client talks to
        if local is not None and local.version == (6 if family == socket.AF_INET6 else 4):
            bind = str(local) if local.version == 4 else local_host
        timeout = self._connection.wait_future_timeout
        sock = trio.socket.socket(family, socket.SOCK_STREAM)
        try:
            with trio.fail_after(as_seconds(timeout)):
                if bind is not None:
                    await sock.bind((bind, 0))
                await sock.connect((target.host, target.port))
        except (OSError, trio.TooSlowError) as exc:
            sock.close()
            if isinstance(exc, trio.TooSlowError):
                reason = "connect timed out"
            else:
                reason = os.strerror(exc.errno) if exc.errno else "connect failed"
            self._connection.log.info(
                "active data connection to %s:%s failed: %r", target.host, target.port, exc
            )
            raise DataConnectionError(f"can't open data connection: {reason}") from None
        except BaseException:
            sock.close()
            raise
        self._connection.log.debug("data connection to %s:%s", target.host, target.port)
        protected = await self._protect(trio.SocketStream(sock))
        if protected is None:
            raise DataConnectionError(f"can't open data connection: {self.failure}")
        return protected

    async def _accept(self, listener: PassiveListener) -> None:
        log = self._connection.log
        try:
            with listener.scope:
                while True:
                    sock, address = await listener.socket.accept()
                    stream = trio.SocketStream(sock)
                    transport = str(address[0])
                    peer = await self._data_peer(stream, transport)
                    if peer is None:
                        continue
                    if not self._peer_allowed(peer, transport):
                        log.warning(
                            "dropped data connection from %s: not the %s (data_peer_check=%s)",
                            peer,
                            "control peer" if self._options.peer_check == "strict" else "balancer",
                            self._options.peer_check,
                        )
                        await trio.aclose_forcefully(stream)
                        continue
                    log.debug("data connection from %s:%s", peer, address[1])
                    self._handshaking = True
                    try:
                        protected = await self._protect(stream)
                    finally:
                        self._handshaking = False
                    if protected is None:
                        continue
                    self._connection.data_connection = protected
                    return
        except (OSError, trio.ClosedResourceError) as exc:
            log.debug("passive listener ended: %r", exc)
        finally:
            listener.close()

    async def _data_peer(self, stream: trio.SocketStream, transport: str) -> str | None:
        """The client address of a passive data connection from ``transport``: the source
        its PROXY header names when data connections take them (``proxy_protocol_data``)
        and the sender is trusted, else ``transport``. None when it was dropped: an
        untrusted sender in ``required`` mode, a missing, late or malformed header.

        Timeouts: ``proxy_protocol_timeout`` for the header.
        """
        proxy = self._proxy
        if not proxy.data:
            return transport
        log = self._connection.log
        if not proxy.trusts(transport):
            if proxy.mode == "optional":
                return transport  # a direct connection, checked as it is
            log.warning("dropped data connection from %s: not in proxy_protocol_from", transport)
            await trio.aclose_forcefully(stream)
            return None
        try:
            with trio.fail_after(proxy.header_timeout):
                header = await receive_header(ControlSocket(stream))
        except (ProxyProtocolError, trio.TooSlowError, trio.BrokenResourceError) as exc:
            reason = str(exc) if isinstance(exc, ProxyProtocolError) else type(exc).__name__
            log.warning("dropped data connection from %s: bad PROXY header: %s", transport, reason)
            await trio.aclose_forcefully(stream)
            return None
        except BaseException:  # cancelled (ABOR, new PASV, session end): leave nothing open
            await trio.aclose_forcefully(stream)
            raise
        return transport if header.source is None else header.source[0]

    def _peer_allowed(self, peer: str, transport: str) -> bool:
        """``data_peer_check``: strict, the session's client; transport, the control
        connection's transport peer (the balancer); off, anyone."""
        check = self._options.peer_check
        if check == "strict":
            return same_host(peer, self._connection.client_host)
        if check == "transport":
            return same_host(transport, self._connection.transport_host)
        return True

    async def _protect(self, stream: trio.SocketStream) -> trio.abc.Stream | None:
        """With ``PROT P``, wrap and handshake at once (aioftp's client handshakes before it
        sends RETR; waiting for the command would deadlock it). None if the handshake failed.

        Timeouts: ``tls_handshake_timeout``. Cancellation: runs in the accept task's scope
        (passive) or the transfer's (active), so a new PASV, ABOR, the transfer's failure or
        the session's end cancel it.
        """
        context = self._tls.context
        if self._connection.prot != "P" or context is None:
            return stream
        tls = wrap_server_side(tls_data_transport(stream), context, session_tickets=False)
        log = self._connection.log
        try:
            with trio.fail_after(as_seconds(self._tls.handshake_timeout)):
                await handshake(tls)
        except (TLSHandshakeFailed, trio.TooSlowError) as exc:
            if self._metrics is not None:
                self._metrics.tls_handshake("data", ok=False)
            timed_out = isinstance(exc, trio.TooSlowError)
            self.failure = "TLS handshake timed out" if timed_out else "TLS handshake failed"
            log.info(
                "data connection dropped: %s",
                f"TLS handshake timed out after {self._tls.handshake_timeout} s"
                if timed_out
                else exc,
            )
            await trio.aclose_forcefully(tls)
            return None
        except BaseException:  # cancelled (ABOR, new PASV, session end): leave nothing open
            await trio.aclose_forcefully(tls)
            raise
        if self._metrics is not None:
            self._metrics.tls_handshake("data", ok=True)
        if self._tls.session_reuse_required and not tls.session_reused:
            self.failure = "the data connection must reuse the control connection's TLS session"
            log.warning("data connection dropped: TLS session not reused")
            await trio.aclose_forcefully(tls)
            return None
        return tls

    async def take_stream(self) -> trio.abc.Stream:
        """The data connection for a transfer, waiting at most ``wait_future_timeout``.

        Passive: the connection the accept task took. Active: a new connection to the
        PORT/EPRT address. The channel is used up: the next transfer needs a new PASV, EPSV,
        PORT or EPRT.

        Raises:
            DataConnectionError: no data connection arrived in time, or connecting to the
                client failed (``425``).
        """
        connection = self._connection
        channel = connection.data_channel
        if isinstance(channel, ActiveTarget):
            connection.data_channel = None
            return await self._connect(channel)
        if connection.state.data_connection is None:  # else the client was quicker: no wait
            with trio.move_on_after(as_seconds(connection.wait_future_timeout)):
                await connection.wait_for("data_connection")
        if connection.state.data_connection is None and self._handshaking:
            # The client connected in time; its TLS handshake has tls_handshake_timeout of
            # its own (the accept task ends it then), not what is left of this wait.
            with trio.move_on_after(as_seconds(self._tls.handshake_timeout) + 1):
                await connection.wait_for("data_connection")
        stream = connection.state.data_connection
        if stream is None:
            await self.close()
            reason = self.failure or "the client did not connect"
            raise DataConnectionError(f"can't open data connection: {reason}")
        connection.data_connection = None
        self._drop_channel()
        return stream

    async def close(self) -> None:
        """Close the listener and any data connection not yet used by a transfer."""
        self._drop_channel()
        stream = self._connection.state.data_connection
        if stream is not None:
            self._connection.data_connection = None
            await trio.aclose_forcefully(stream)

    def _drop_channel(self) -> None:
        channel = self._connection.data_channel
        if channel is not None:
            self._connection.data_channel = None
            channel.close()
