"""Data channels: passive listeners, the accepted data connection, and the port pool.

Theory of operation
-------------------
PASV/EPSV call :meth:`DataChannels.open_passive`: any previous channel of the session is
closed first (its listener socket closed and its port returned at once, so a one-port pool can
be reused immediately), then a listener is bound on the control connection's local address
(RFC 959 §4.1.2: the data port is on the server the client talks to), on a port from the
server-wide :class:`PortPool` when ``data_ports`` is set. A child task of the session nursery
accepts connections until one comes from the control connection's peer address (others are
dropped and logged: that is what stops data-port theft), stores it as
``connection.data_connection`` and closes the listener. A transfer takes it with
:meth:`DataChannels.take_stream`, which waits at most ``wait_future_timeout`` (then ``425``).
The accept task has its own cancel scope; a new PASV, ABOR without a transfer, or the end of
the session cancels it, and its ``finally`` closes the socket and returns the port.
"""

from __future__ import annotations

import ipaddress
import math
import socket
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

import trio

from .errors import DataConnectionError, NoAvailablePort
from .tls import TLSHandshakeFailed, handshake, wrap_server_side

if TYPE_CHECKING:
    from .connection import Connection
    from .session import Session

__all__ = ["DataChannels", "PassiveListener", "PortPool", "same_host"]


class PortPool:
    """The server-wide set of ports passive listeners may use (``data_ports``).

    ``None`` means "any port the kernel picks". A port is lent to one listener at a time and
    comes back when that listener closes, whatever the reason.
    """

    def __init__(self, ports: Iterable[int] | None) -> None:
        self._free: deque[int] | None = None
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
            return 0
        if not self._free:
            raise NoAvailablePort("every data port is in use")
        return self._free.popleft()

    def give_back(self, port: int) -> None:
        """Return a lent port (at the end of the queue, so ports rotate)."""
        if self._free is not None:
            self._free.append(port)

    @property
    def free(self) -> int | None:
        """How many ports are free now (``None`` when unlimited)."""
        return None if self._free is None else len(self._free)


class PassiveListener:
    """One PASV/EPSV listening socket (aioftp's ``connection.passive_server``)."""

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
        if self._lent:
            self._pool.give_back(self._lent)

    @classmethod
    async def bind(cls, host: str, pool: PortPool) -> PassiveListener:
        """Bind a listener on ``host``, trying each free pool port once."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        attempts = pool.free if pool.limited else 1
        last_error: OSError | None = None
        for _ in range(attempts or 0):
            lent = pool.take()
            sock = trio.socket.socket(family, socket.SOCK_STREAM)
            try:
                # A port whose last data connection is in TIME_WAIT must be reusable at once.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                await sock.bind((host, lent))
                sock.listen(1)
            except OSError as exc:
                sock.close()
                pool.give_back(lent)
                last_error = exc
                continue
            return cls(sock, sock.getsockname()[1], pool, lent)
        if last_error is not None and not pool.limited:
            raise last_error
        raise NoAvailablePort("every data port is in use")


def same_host(a: str, b: str) -> bool:
    """True if two addresses name the same host (IPv4-mapped IPv6 equals its IPv4)."""

    def norm(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | str:
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return host
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return address.ipv4_mapped
        return address

    return norm(a) == norm(b)


class DataChannels:
    """The data-channel state of one session."""

    def __init__(self, session: Session) -> None:
        self.session = session
        #: Why the last data connection attempt was refused (for the 425 text).
        self.failure: str | None = None

    @property
    def _connection(self) -> Connection:
        return self.session.connection

    async def open_passive(self) -> PassiveListener:
        """Close any previous channel, bind a new listener and start accepting on it.

        Raises:
            NoAvailablePort: every ``data_ports`` port is in use (or none could be bound).
            OSError: binding failed for another reason.
        """
        await self.close()
        self.failure = None
        listener = await PassiveListener.bind(
            self.session.local_host, self.session.server.data_ports
        )
        self._connection.passive_server = listener
        nursery = self.session._nursery
        assert nursery is not None
        nursery.start_soon(self._accept, listener)
        return listener

    async def _accept(self, listener: PassiveListener) -> None:
        log = self.session.log
        try:
            with listener.scope:
                while True:
                    sock, address = await listener.socket.accept()
                    stream = trio.SocketStream(sock)
                    if not same_host(str(address[0]), self.session.peer_host):
                        log.warning(
                            "dropped data connection from %s: not the control peer", address[0]
                        )
                        await trio.aclose_forcefully(stream)
                        continue
                    log.debug("data connection from %s:%s", address[0], address[1])
                    protected = await self._protect(stream)
                    if protected is None:
                        continue
                    self._connection.data_connection = protected
                    return
        except (OSError, trio.ClosedResourceError) as exc:
            log.debug("passive listener ended: %r", exc)
        finally:
            listener.close()

    async def _protect(self, stream: trio.SocketStream) -> trio.abc.Stream | None:
        """With ``PROT P``, wrap and handshake at once (aioftp's client handshakes before it
        sends RETR; waiting for the command would deadlock it). None if the handshake failed.

        Timeouts: ``tls_handshake_timeout``. Cancellation: runs in the accept task's scope,
        so a new PASV, ABOR, the transfer's failure or the session's end cancel it.
        """
        session = self.session
        context = session.tls_context
        if self._connection.prot != "P" or context is None:
            return stream
        tls = wrap_server_side(stream, context, session_tickets=False)
        server = session.server
        try:
            with trio.fail_after(
                math.inf if server.tls_handshake_timeout is None else server.tls_handshake_timeout
            ):
                await handshake(tls)
        except (TLSHandshakeFailed, trio.TooSlowError) as exc:
            self.failure = "TLS handshake failed"
            session.log.info("data connection dropped: %s", exc or "TLS handshake timed out")
            await trio.aclose_forcefully(tls)
            return None
        except BaseException:  # cancelled (ABOR, new PASV, session end): leave nothing open
            await trio.aclose_forcefully(tls)
            raise
        if server.tls_require_session_reuse and not tls.session_reused:
            self.failure = "the data connection must reuse the control connection's TLS session"
            session.log.warning("data connection dropped: TLS session not reused")
            await trio.aclose_forcefully(tls)
            return None
        return tls

    async def take_stream(self) -> trio.abc.Stream:
        """The data connection for a transfer, waiting at most ``wait_future_timeout``.

        The channel is used up: the next transfer needs a new PASV/EPSV.

        Raises:
            DataConnectionError: no data connection arrived in time (``425``).
        """
        connection = self._connection
        timeout = connection.wait_future_timeout
        with trio.move_on_after(math.inf if timeout is None else timeout):
            await connection.wait_for("data_connection")
        if "data_connection" not in connection:
            await self.close()
            reason = self.failure or "the client did not connect"
            raise DataConnectionError(f"can't open data connection: {reason}")
        stream: trio.abc.Stream = connection.pop("data_connection")
        listener = connection.pop("passive_server")
        if listener is not None:
            listener.close()
        return stream

    async def close(self) -> None:
        """Close the listener and any data connection not yet used by a transfer."""
        connection = self._connection
        listener: PassiveListener | None = connection.pop("passive_server")
        if listener is not None:
            listener.close()
        stream: trio.abc.Stream | None = connection.pop("data_connection")
        if stream is not None:
            await trio.aclose_forcefully(stream)
