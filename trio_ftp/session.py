"""One control connection: the command loop, the reply writer, the transfer task.

Theory of operation
-------------------
A session owns one nursery. Its body runs the command loop: read bytes (through
:class:`~trio_ftp.controlsocket.ControlSocket`, the one owner of the control socket's I/O,
with the idle timeout as a cancel scope around that read alone), let the codec cut them into
commands, look the verb up in ``commands_mapping`` and
await the handler inline, then flush the replies the handler queued. Replies are queued with
``connection.response(code, text)`` (synchronous, as in aioftp) and written by :meth:`flush`,
the one writer, under a lock and ``socket_timeout``, so replies never interleave and a client
that stops reading costs only its own session.

A transfer (RETR, STOR, LIST...) is started by its handler with
``connection.start_transfer(fn, ...)``: it runs as a child task of the session nursery inside
its own cancel scope, while the loop keeps reading. While it runs, *immediate* commands (ABOR,
NOOP, STAT) are answered at once, even behind commands already waiting; any other command
waits in a queue (at most :data:`MAX_QUEUED_COMMANDS`; one more gets ``421`` and the session
ends) and the queue is run in order once the transfer ends (RFC 959 §5.4 sequencing). A
queued command that starts another transfer holds the rest of the queue back in turn. The
transfer's end wakes the loop out of its read through a cancel scope that exists only while
commands are queued, so an idle session pays for none of this. ABOR cancels the transfer
scope; the ``worker`` decorator turns that cancellation into ``426`` then ``226``.

Data channels (PASV/EPSV listeners and accepted data connections) are children of the same
nursery (see :mod:`trio_ftp.datachannel`). When the loop ends (QUIT, EOF, idle timeout, fatal
protocol error) or the session is cancelled (``Server.close()``), the nursery is cancelled and
the teardown in :meth:`run` closes everything under a shield with short time limits: nothing
outlives the session.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import math
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import trio

from . import boundaries
from .codec import Command, CommandDecoder, encode_reply, has_surrogates, is_http_request
from .connection import Connection
from .controlsocket import ControlSocket
from .datachannel import DataChannels
from .errors import FTPError, PermissionDenied, ProtocolError, ReplyError, reply_for
from .interfaces import SessionHost
from .logsafe import SessionLog
from .pathio import GuardedPathIO
from .proxyprotocol import ProxyHeader, ProxyProtocolError
from .proxyreceive import header_prefix, receive_header
from .state import SessionState
from .tls import TLSHandshakeFailed, handshake, wrap_server_side
from .validation import as_seconds

__all__ = ["Session"]

logger = logging.getLogger("trio_ftp.session")

_RECEIVE_SIZE = 4096
#: Time a dying session may spend saying goodbye (flushing replies, closing TLS).
_GOODBYE_TIMEOUT = 1.0
#: Bound on sending a finished transfer's replies, which is shielded from cancellation.
_FINAL_REPLY_TIMEOUT = 10.0
_session_ids = itertools.count(1)

#: Most ordinary commands that may wait behind a running transfer (RFC 959 §5.4 allows a
#: client to send them without waiting for replies). One more gets ``421`` and the session
#: ends: no real client pipelines that deep. The codec bounds every line to
#: ``MAX_LINE_LENGTH`` (4 KiB), so a queue holds at most 128 KiB of command text.
MAX_QUEUED_COMMANDS = 32

#: Errors that mean "the control connection is gone or unusable": end the session quietly.
_STREAM_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError)


@dataclass
class _Transfer:
    verb: str = ""  # the command that started it: its errors get that command's codes
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: trio.Event = field(default_factory=trio.Event)
    aborted: bool = False  # cancelled by the client's ABOR (not by the session's end)


class _IdleTimeout(Exception):
    """No complete command within ``idle_timeout`` (see :meth:`Session._next_command`)."""


class _UntrustedHeader(Exception):
    """A PROXY header from a sender outside ``proxy_protocol_from`` (optional mode)."""


class Session:
    """The trio glue for one control connection (created by ``Server``; not public API).

    It is the handlers' :class:`~trio_ftp.interfaces.SessionControl` (``connection.control``)
    and knows its server only as a :class:`~trio_ftp.interfaces.SessionHost`. Slotted: an
    idle session's memory is what it keeps, and a dict of two dozen attributes was a sixth
    of it.
    """

    __slots__ = (
        "_backend_failed",
        "_ended_normally",
        "_header_watch",
        "_idle",
        "_nursery",
        "_queued",
        "_reading",
        "_replies",
        "_verb",
        "_wake",
        "_write_lock",
        "_writers",
        "connection",
        "control_socket",
        "data",
        "decoder",
        "id",
        "log",
        "metrics",
        "options",
        "server",
        "state",
        "transfer",
    )

    def __init__(
        self,
        server: SessionHost,
        stream: trio.abc.Stream,
        *,
        peer: tuple[str, int] | None = None,
        local: tuple[str, int] | None = None,
    ) -> None:
        """``peer``/``local`` default to the socket's addresses (give them for other streams)."""
        self.server = server
        self.control_socket = ControlSocket(stream)  # the one reader and writer of the socket
        self.id = next(_session_ids)
        if isinstance(stream, trio.SocketStream):
            peer = peer or stream.socket.getpeername()
            local = local or stream.socket.getsockname()
            # ftplib's abort() sends the end of "ABOR\r\n" as TCP urgent data: read it inline.
            with contextlib.suppress(OSError):
                stream.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
        if peer is None or local is None:
            raise ValueError("peer and local addresses are needed for a non-socket stream")
        peer_host, peer_port = str(peer[0]), int(peer[1])
        self.log = SessionLog(logger, {"session": self.id, "peer": f"{peer_host}:{peer_port}"})
        self.options = server.options
        self.decoder = CommandDecoder(self.options.protocol.encoding)
        self._replies: list[bytes] = []
        self._write_lock: trio.Lock | None = None
        self._writers = 0
        self.transfer: _Transfer | None = None
        self._verb = ""  # the verb being handled (see start_transfer)
        # What the client sent behind the running transfer, in order (None when empty: an
        # idle session holds no queue); a decoding error waits there for its turn too.
        self._queued: collections.deque[Command | ProtocolError] | None = None
        # Cancelled when the transfer ends, to wake the loop out of its read (see _serve).
        self._wake: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        # The idle timeout's cancel scope, one for the whole command loop (a scope per read
        # cost more than the read): its deadline is the idle clock while a command is read
        # (``_reading``), infinite otherwise.
        self._idle: trio.CancelScope | None = None
        self._reading = False
        self._ended_normally = False
        # The first bytes of a client that may not send a PROXY header, while they could
        # still be one (None: not watching; see _check_untrusted_header).
        self._header_watch: bytes | None = None
        local_host, local_port = str(local[0]), int(local[1])
        self.state = SessionState(
            session_id=self.id,
            client_host=peer_host,
            client_port=peer_port,
            server_host=local_host,
            server_port=local_port,
            transport_host=peer_host,
            transport_port=peer_port,
            dialled_host=local_host,
            dialled_port=local_port,
        )
        connection = self.connection = Connection(self.state)
        connection.log = self.log
        connection.control = self
        timeouts = self.options.timeouts
        connection.socket_timeout = timeouts.socket
        connection.idle_timeout = timeouts.idle
        connection.wait_future_timeout = timeouts.data_connection_wait
        connection.path_timeout = timeouts.path_io
        connection.block_size = self.options.limits.block_size
        #: The server's metrics when enabled (read once: every reply and command counts).
        self.metrics = server.metrics
        self.data = connection.data = DataChannels(
            connection, self.options, server.data_ports, metrics=self.metrics
        )
        # Server-level limits until a login adds the user's (handlers/auth.py).
        connection.limit_by(server.throttles, None)
        self._backend_failed = False

    def _open_backend(self) -> None:
        """Make the session's path-IO backend (once the client's address is known: the
        factory may read it). It is user code (``path_io_factory``): if it raises, run()
        answers 421 and ends this session only. A factory is synchronous: it must not block."""
        try:
            backend = self.server.new_path_io(self.connection)
        except Exception:
            self.log.exception("path_io_factory raised")
            self._backend_failed = True
        else:
            self.connection.path_io = GuardedPathIO(backend, self.options.timeouts.path_io)

    # replies -------------------------------------------------------------------------------
    def respond(self, code: str, text: str | list[str] = "") -> None:
        """Queue a reply; :meth:`flush` sends it. Multi-line when ``text`` is a list."""
        self.log.debug("<- %s %s", code, text)
        if self.metrics is not None:
            self.metrics.reply(code)
        self._replies.append(encode_reply(code, text, self.options.protocol.encoding))

    def _flushed_now(self) -> bool:
        """Send the queued replies without yielding, if they can be: nobody is mid-write
        (no other task can slip a reply in between) and the connection takes them whole
        (plain TCP, or TLS through ``tlswrite``). False when something is left for
        :meth:`flush`."""
        control = self.control_socket
        if self._write_lock is not None or not control.writes_at_once:
            return not self._replies and self._write_lock is None
        if self._replies:
            data = control.send_now(b"".join(self._replies))
            self._replies.clear()
            if data:
                self._replies.append(data)
                return False
        return not control.pending

    async def flush(self) -> None:
        """Send every queued reply, in order. Timeouts: ``socket_timeout`` for the write."""
        if self._flushed_now():
            return
        # The lock exists only while someone is writing: idle sessions keep none.
        lock = self._write_lock
        if lock is None:
            lock = self._write_lock = trio.Lock()
        self._writers += 1
        try:
            async with lock:
                while self._replies or self.control_socket.pending:
                    data = b"".join(self._replies)
                    self._replies.clear()
                    await self._send(data)
        finally:
            self._writers -= 1
            if not self._writers:
                self._write_lock = None

    async def _send(self, data: bytes) -> None:
        """Send ``data`` on the control connection. A reply nearly always fits the socket
        buffer: it is written at once, without a timeout scope; whatever does not fit (or
        cannot be written so) is sent under ``socket_timeout``."""
        control = self.control_socket
        data = control.send_now(data)
        if not data and not control.pending:
            return
        with trio.fail_after(as_seconds(self.options.timeouts.socket)):
            await control.send_all(data)

    # transfers -----------------------------------------------------------------------------
    def start_transfer(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run ``fn(*args)`` as this session's transfer, in the background, abortable."""
        if self._nursery is None or self.transfer is not None:
            raise ReplyError("503", "a transfer is already in progress")
        if self.server.closing:
            raise ReplyError("421", "server shutting down, closing connection", fatal=True)
        transfer = _Transfer(self._verb)
        self.transfer = transfer
        self.server.transfer_began()
        self._nursery.start_soon(self._run_transfer, transfer, fn, args)

    async def _run_transfer(
        self, transfer: _Transfer, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]
    ) -> None:
        try:
            try:
                with transfer.scope:
                    try:
                        await fn(*args)
                    except Exception as exc:
                        self._respond_error(exc, transfer.verb)
            finally:
                self.transfer = None
                transfer.done.set()
                if self._wake is not None:  # the queued commands' turn has come
                    self._wake.cancel()
                elif self._reading and self._idle is not None:  # idle time counts from now
                    self._idle.deadline = self._idle_deadline()
            # The transfer's last replies (226, or 426/226) go out whole even if the session
            # is being cancelled: a send cut halfway would leave the client a broken line.
            try:
                if not self._flushed_now():
                    with trio.CancelScope(shield=True), trio.move_on_after(_FINAL_REPLY_TIMEOUT):
                        await self.flush()
            except _STREAM_GONE:
                self.cancel()
        finally:
            self.server.transfer_done()  # only now may a graceful close() go on

    def cancel_transfer(self) -> None:
        """Cancel the running transfer, if any, without waiting (an abort the client did not
        ask for: the worker answers ``426`` alone)."""
        if self.transfer is not None:
            self.transfer.scope.cancel()

    async def abort_transfer(self) -> bool:
        """Cancel the running transfer and wait for it; False if none was running."""
        transfer = self.transfer
        if transfer is None:
            return False
        transfer.aborted = True
        transfer.scope.cancel()
        await transfer.done.wait()
        return True

    @property
    def stream(self) -> trio.abc.Stream:
        """The control connection's stream now in use (TLS after ``AUTH TLS``)."""
        return self.control_socket.stream

    @property
    def transfer_aborted(self) -> bool:
        """True while the running transfer is being cancelled by the client's ``ABOR``."""
        return self.transfer is not None and self.transfer.aborted

    @property
    def transfer_running(self) -> bool:
        """True while a transfer runs (``STAT`` and ``ABOR`` ask)."""
        return self.transfer is not None

    def cancel(self) -> None:
        """End the session from any task (the teardown still runs)."""
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    # the loop ------------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve the connection until it ends; never raises an :class:`Exception`, whatever
        the client or user code does (``Cancelled`` and ``KeyboardInterrupt`` go through).
        The session is listed in ``server.connections`` while it runs."""
        self.server.connections[self.id] = self.connection
        state = self.state
        self.log.info("session started (local %s:%s)", state.server_host, state.server_port)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.data.run_in(nursery)
                try:
                    if await self._take_proxy_header():
                        self._open_backend()
                        self.server.publish(self.connection, "connect")
                        if self._backend_failed:
                            self.respond("421", "service not available, closing connection")
                        else:
                            await self._serve()
                    self._ended_normally = True
                except _UntrustedHeader:
                    self.log.warning(
                        "closing: PROXY header from %s, which is not in proxy_protocol_from",
                        state.transport_host,
                    )
                except _STREAM_GONE as exc:
                    self.log.info("control connection lost: %s", type(exc).__name__)
                except TLSHandshakeFailed as exc:
                    self.log.info("%s", exc)
                except _IdleTimeout:
                    self.log.info("idle timeout")
                    self.respond("421", "idle timeout, closing control connection")
                finally:
                    nursery.cancel_scope.cancel()
        except Exception:
            self.log.exception("session failed")
        finally:
            try:
                await self._teardown()
            except Exception:  # never out of here: the server's handler relies on it
                self.log.exception("session teardown failed")
            finally:
                del self.server.connections[self.id]
            self.log.info("session ended")

    # PROXY protocol --------------------------------------------------------------------------
    async def _take_proxy_header(self) -> bool:
        """Before anything else (greeting, implicit TLS): read the load balancer's PROXY
        header when ``proxy_protocol`` asks for one; False closes the connection at once.

        A sender outside ``proxy_protocol_from`` is closed in ``required`` mode; in
        ``optional`` mode it is served, and a header in its first bytes closes it (see
        :meth:`_check_untrusted_header`). A trusted sender has ``proxy_protocol_timeout``
        seconds to send its header; in ``optional`` mode, silence for that long or a first
        byte that can't start a header (a TLS ClientHello) means a direct client, and
        nothing is taken from the connection.

        Timeouts: ``proxy_protocol_timeout`` for the whole header.
        """
        proxy = self.options.proxy
        if not proxy.enabled:
            return True
        transport = self.state.transport_host
        if not proxy.trusts(transport):
            if proxy.mode == "required":
                self.log.warning(
                    "closing: %s is not in proxy_protocol_from (PROXY header required)", transport
                )
                return False
            if self.options.tls.implicit:
                return await self._no_header_before_tls()
            self._header_watch = b""
            return True
        started = False
        with trio.move_on_after(proxy.header_timeout):
            try:
                first = await self.control_socket.peek(1)
                if not first:
                    self.log.info("connection closed before its PROXY header")
                    return False
                if proxy.mode == "optional" and header_prefix(first) is False:
                    self.log.debug("no PROXY header: served as a direct client")
                    return True
                started = True
                header = await receive_header(self.control_socket)
            except ProxyProtocolError as exc:
                self.log.warning("closing: bad PROXY header: %s", str(exc))
                return False
            self._use_proxy_header(header)
            return True
        if proxy.mode == "required" or started:
            self.log.warning("closing: no whole PROXY header within %g s", proxy.header_timeout)
            return False
        self.log.debug("no PROXY header within %g s: a direct client", proxy.header_timeout)
        return True

    async def _no_header_before_tls(self) -> bool:
        """Implicit FTPS from a sender that may not send a PROXY header: look (without
        taking anything) at its first bytes, a TLS ClientHello, before the handshake; a
        header there closes the connection. Only a socket can be looked at so."""
        if not self.control_socket.plain:
            return True
        timeout = self.options.proxy.header_timeout
        with trio.move_on_after(timeout):
            first = await self.control_socket.peek(len(b"PROXY "))
            if header_prefix(first):
                raise _UntrustedHeader
        return True

    def _use_proxy_header(self, header: ProxyHeader) -> None:
        """The header's source becomes the client (logs, events, limits, bans, PORT checks)."""
        if header.source is None:
            kind = "LOCAL" if header.local else "UNKNOWN"
            self.log.info(
                "PROXY v%d %s header: the connection's addresses stand", header.version, kind
            )
            return
        state = self.state
        state.proxied(header.source, header.destination)
        peer = f"{state.client_host}:{state.client_port}"
        self.log = self.connection.log = SessionLog(logger, {"session": self.id, "peer": peer})
        self.log.info(
            "PROXY v%d header: client %s dialled %s:%s (via %s:%s)",
            header.version,
            peer,
            state.dialled_host,
            state.dialled_port,
            state.transport_host,
            state.transport_port,
        )

    def _check_untrusted_header(self, data: bytes) -> None:
        """Watch the first bytes of a client outside ``proxy_protocol_from`` (optional mode):
        a PROXY header there raises :class:`_UntrustedHeader` (the session ends)."""
        seen = (self._header_watch or b"") + data[:16]
        verdict = header_prefix(seen)
        if verdict:
            raise _UntrustedHeader
        self._header_watch = None if verdict is False else seen

    # TLS -------------------------------------------------------------------------------------
    @property
    def tls_context(self) -> ssl.SSLContext | None:
        """The context that protects (or may protect) this session's connections."""
        return self.options.tls.context

    async def start_tls(self) -> None:
        """Upgrade the control connection in place (implicit FTPS, or after ``AUTH TLS``).

        Bytes the client sent after ``AUTH`` and before the handshake are discarded: RFC 4217
        §9 forbids acting on plaintext that could have been injected.

        Raises:
            TLSHandshakeFailed: the session cannot go on (the caller ends it).
        """
        context = self.tls_context
        assert context is not None
        if self.decoder.buffered:
            self.log.warning("discarded %d bytes sent before TLS", self.decoder.buffered)
        self.decoder = CommandDecoder(self.options.protocol.encoding)
        if self._queued is not None:  # commands queued behind AUTH came in clear too
            self.log.warning("discarded %d commands sent before TLS", len(self._queued))
            self._queued = None
        stream = wrap_server_side(self.control_socket.stream, context)
        self.control_socket.use(stream)
        metrics = self.metrics
        try:
            with trio.fail_after(as_seconds(self.options.tls.handshake_timeout)):
                await handshake(stream)
        except (trio.TooSlowError, TLSHandshakeFailed) as exc:
            if metrics is not None:
                metrics.tls_handshake("control", ok=False)
            if isinstance(exc, TLSHandshakeFailed):
                raise
            raise TLSHandshakeFailed("TLS handshake timed out") from None
        if metrics is not None:
            metrics.tls_handshake("control", ok=True)
        self.state.tls_started(implicit=self.options.tls.implicit)
        self.log.info("control connection is TLS (%s)", stream.version())

    async def stop_tls(self) -> None:
        """``CCC``: go back to a clear control connection (RFC 4217 §6)."""
        stream = self.control_socket.stream
        assert isinstance(stream, trio.SSLStream)
        with trio.fail_after(as_seconds(self.options.timeouts.socket)):
            transport, trailing = await stream.unwrap()
        self.control_socket.use(transport)
        self.decoder.feed(bytes(trailing))
        self.state.tls_stopped()

    async def _serve(self) -> None:
        if self.options.tls.implicit:
            await self.start_tls()  # implicit FTPS: data is protected from the start
        if not await self.server.greet(self.connection):
            await self.flush()
            return
        await self.flush()
        with trio.CancelScope() as self._idle:
            await self._command_loop()
        if self._idle.cancelled_caught:
            raise _IdleTimeout

    async def _command_loop(self) -> None:
        first = True
        client_gone = False
        while True:
            queued = self._queued
            if queued is not None and self.transfer is None:
                # The transfer ended: what waited for it runs now, in order, without reading.
                item = queued.popleft()
                if not queued:
                    self._queued = None
                if not await self._run_queued(item):
                    return
                continue
            if client_gone:
                # EOF behind queued commands: they still run (as they would have without
                # pipelining), after the transfer; then the session ends.
                if self.transfer is None:
                    return
                await self.transfer.done.wait()
                continue
            try:
                if queued is None:
                    command = await self._next_command()
                else:
                    woken = await self._next_command_or_wake()
                    if woken is False:
                        continue
                    command = woken
            except ProtocolError as exc:
                if exc.fatal:
                    self.log.warning("closing: %s", exc.text)
                    await self._close_with(exc.code, exc.text)
                    return
                if self._busy:  # answered in its turn, like the command it was meant to be
                    if not self._enqueue(exc):
                        await self._refuse_overflow()
                        return
                    continue
                self.respond(exc.code, exc.text)
                await self.flush()
                continue
            if command is None:
                if self._queued is None:
                    return  # the client left; a running transfer is cancelled with the session
                client_gone = True
                continue
            if first and is_http_request(command):
                self.log.warning("closing: HTTP request on the FTP port")
                return
            first = False
            if self._busy:
                spec = self.server.command_specs.get(command.verb)
                if spec is None or not spec.immediate:
                    if not self._enqueue(command):
                        await self._refuse_overflow()
                        return
                    continue
            keep_going = await self._dispatch(command)
            await self.flush()
            if not keep_going:
                return

    @property
    def _busy(self) -> bool:
        """A transfer runs or commands wait for one: ordinary commands queue up."""
        return self.transfer is not None or self._queued is not None

    def _enqueue(self, item: Command | ProtocolError) -> bool:
        """Hold ``item`` until the running transfer ends; False if the queue is full."""
        queued = self._queued
        if queued is None:
            queued = self._queued = collections.deque()
        elif len(queued) >= MAX_QUEUED_COMMANDS:
            return False
        queued.append(item)
        return True

    async def _refuse_overflow(self) -> None:
        self.log.warning(
            "closing: more than %d commands queued behind a transfer", MAX_QUEUED_COMMANDS
        )
        await self._close_with(
            "421", f"too many commands sent ahead (limit {MAX_QUEUED_COMMANDS}), closing connection"
        )

    async def _close_with(self, code: str, text: str) -> None:
        """Last words before the session ends: the running transfer is aborted first (its
        ``426``/``226`` go out before this reply), queued commands are dropped."""
        self._queued = None
        await self.abort_transfer()
        self.respond(code, text)
        await self.flush()

    async def _run_queued(self, item: Command | ProtocolError) -> bool:
        """Answer one queued item and send the replies; False ends the session."""
        if isinstance(item, ProtocolError):  # never fatal: those end the session at once
            self.respond(item.code, item.text)
            keep_going = True
        else:
            keep_going = await self._dispatch(item)
        await self.flush()
        return keep_going

    async def _next_command_or_wake(self) -> Command | Literal[False] | None:
        """:meth:`_next_command` while commands are queued: False as soon as the running
        transfer ends (``_run_transfer`` cancels the scope), so the queue runs without
        waiting for the client to send something. A read cancelled while waiting loses
        nothing: the bytes stay in the socket (or, on TLS, in the ``SSLStream``, which may
        be cancelled in a read outside a handshake)."""
        with trio.CancelScope() as self._wake:
            try:
                return await self._next_command()
            finally:
                self._wake = None
        return False

    def _idle_deadline(self) -> float:
        """When the read now starting gives up: ``idle_timeout`` from now, or never while
        a transfer runs or commands wait for one (a long download is not idleness)."""
        if self._busy:
            return math.inf
        return trio.current_time() + as_seconds(self.options.timeouts.idle)

    async def _next_command(self) -> Command | None:
        """The next command, or None at EOF.

        Timeouts: ``idle_timeout`` from the end of the previous command to the end of this
        one (the command loop's scope is cancelled, and :meth:`_serve` raises
        :class:`_IdleTimeout`), so a client trickling bytes that never complete a line is
        still dropped; not counted while a transfer runs: the transfer's end starts the
        clock (``_run_transfer``). The timeout bounds this read only (the deadline is
        infinite again before the command runs), never a child task of the session.
        """
        scope = self._idle
        assert scope is not None, "commands are read in the command loop only"
        scope.deadline = self._idle_deadline()
        self._reading = True
        try:
            while (command := self.decoder.next_command()) is None:
                data = await self.control_socket.receive_some(_RECEIVE_SIZE)
                if not data:
                    return None
                if self._header_watch is not None:
                    self._check_untrusted_header(data)
                self.decoder.feed(data)
        finally:
            self._reading = False
            scope.deadline = math.inf  # the command runs without the idle clock
        self.log.debug("-> %r", command)
        return command

    async def _dispatch(self, command: Command) -> bool:
        """Run one command's handler; False ends the session. Before login only the verbs
        marked ``before_login`` run; any other known verb gets ``530``."""
        verb = command.verb.lower()
        handler = self.server.commands_mapping.get(verb)
        spec = self.server.command_specs.get(command.verb)
        if self.metrics is not None:  # every command, refused or not (unknown: "other")
            self.metrics.command(command.verb)
        if handler is None:
            self.respond("502", f"command {command.verb!r} not implemented")
            return True
        if not (spec is not None and spec.before_login) and not self.state.logged_in:
            self.respond("530", "bad sequence of commands (not logged in)")  # as _login says
            return True
        if spec is not None and spec.needs_argument and not command.arg.strip():
            self.respond("501", f"syntax error: {command.verb} needs an argument")
            return True
        if has_surrogates(command.arg) and not await self._names_existing_path(command.arg):
            self.respond("501", f"argument is not valid {self.options.protocol.encoding}")
            return True
        connection = self.connection
        connection.path_cache = {}  # get_paths' cache, for this one command
        self.state.command_began(command.verb)
        self._verb = command.verb  # a transfer it starts answers errors as this verb
        try:
            result = await handler(connection, command.arg)
        except TLSHandshakeFailed:
            raise  # the control stream is unusable: end the session
        except Exception as exc:
            self._respond_error(exc, command.verb)
            return not (isinstance(exc, ReplyError) and exc.fatal)
        finally:
            connection.path_cache = None
            connection.path_io.forget_stats()  # a command sees its own file system only
            self.state.command_ended(command.verb)
        return result is not False

    async def _names_existing_path(self, argument: str) -> bool:
        """An argument with bytes invalid in the encoding is accepted only as the name of an
        existing file (one the client saw in a listing), never to create a new name."""
        if not self.state.logged_in:
            return False
        try:
            real, _ = await self.server.get_paths(self.connection, argument)
            return bool(await self.connection.path_io.exists(real))
        except FTPError:
            return False

    def _respond_error(self, exc: BaseException, verb: str | None = None) -> None:
        code, text = reply_for(exc, verb)
        if isinstance(exc, PermissionDenied):  # confinement, or a file that is not regular
            self.server.publish(
                self.connection, "permission_denied", reason=self.state.command or None
            )
        elif isinstance(exc, (FTPError, *_STREAM_GONE)):
            self.log.info("%s %s (%s)", code, text, type(exc).__name__)
        else:
            self.log.error("handler failed, answered %s", code, exc_info=exc)
        self.respond(code, text)

    async def _teardown(self) -> None:
        if self.server.closing and not self._ended_normally:
            self.respond("421", "server shutting down, closing connection")
        try:
            flushed = self._flushed_now()
        except (*_STREAM_GONE, OSError):
            flushed = True  # nobody left to read it
        with trio.CancelScope(shield=True):
            if flushed and self.control_socket.plain:
                # Nothing left to wait for: a plain socket closes at once, no timeouts needed.
                await self.data.close()
                await self.control_socket.aclose()
            else:
                with trio.move_on_after(_GOODBYE_TIMEOUT):
                    try:
                        await self.flush()
                    except (*_STREAM_GONE, OSError):
                        pass
                await self.data.close()
                with trio.move_on_after(_GOODBYE_TIMEOUT) as scope:
                    await self.control_socket.aclose()
                if scope.cancelled_caught:  # a TLS goodbye that never came: close the socket
                    await trio.aclose_forcefully(self.control_socket.stream)
            try:
                await self._session_ended()
            finally:
                await self.server.release_slots(self.connection)  # bounded, no user code

    async def _session_ended(self) -> None:
        """``server.session_ended`` (which subclasses may extend) as a boundary: its calls
        into user code are bounded by ``SESSION_END_TIMEOUT`` each (``forget_user``); this
        bounds the whole a second later, and nothing it raises leaves the session."""
        limit = boundaries.SESSION_END_TIMEOUT + _GOODBYE_TIMEOUT
        with trio.move_on_after(limit) as scope:
            try:
                await self.server.session_ended(self.connection)
            except Exception:
                self.log.exception("session_ended raised")
        if scope.cancelled_caught:
            self.log.warning("session_ended did not return within %g s", limit)
