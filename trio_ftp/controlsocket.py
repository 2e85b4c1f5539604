"""The control connection's bytes: the one place that reads and writes its socket directly.

A session spends most of its life waiting for the next command and sends small replies that
nearly always fit the socket buffer. On a plain ``trio.SocketStream`` this module therefore
goes below the stream: a read waits for readability in one frame (an idle session holds no
chain of trio's wrappers), and a reply is written with one system call, without a timeout
scope and without yielding, so the session can send its replies synchronously. For any other
stream (``trio.SSLStream`` after ``AUTH TLS``, memory streams in tests) it uses the stream's
own methods, except that replies on a ``trio.SSLStream`` are encrypted and written at once
too where :mod:`trio_ftp.tlswrite` can. The stream may change under it (``AUTH TLS``,
``CCC``): :meth:`ControlSocket.use` is the one place that swaps it.

It keeps trio's guarantees: two tasks sending at once get ``trio.BusyResourceError``, OS
errors become ``trio.BrokenResourceError`` (``ClosedResourceError`` once closed), and an
async call that completes without blocking still executes a checkpoint (trio's
try-then-checkpoint: ``checkpoint_if_cancelled`` before, ``cancel_shielded_checkpoint``
after).
"""

from __future__ import annotations

import errno
import os
import socket

import trio

from .tlswrite import TLSWriter, writer_for

__all__ = ["ControlSocket"]


class ControlSocket:
    """Reads and writes of one control connection (not public API)."""

    __slots__ = ("_ahead", "_sending", "_socket", "_tls", "stream")

    stream: trio.abc.Stream
    """The stream currently in use."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._sending = False  # a task is in send_all: nobody else may write
        self._ahead = b""  # what peek() read from a stream that cannot peek (not a socket)
        self.use(stream)

    def use(self, stream: trio.abc.Stream) -> None:
        """Read and write ``stream`` from now on (after ``AUTH TLS`` or ``CCC``).

        Raises:
            trio.BrokenResourceError: :meth:`peek` read bytes ahead from the old stream (only
                a stream that is not a socket) that the new one would lose.
        """
        if self._ahead:
            raise trio.BrokenResourceError("bytes read ahead cannot be handed to a new stream")
        self.stream = stream
        self._socket = stream.socket if isinstance(stream, trio.SocketStream) else None
        self._tls: TLSWriter | None = writer_for(stream)

    async def peek(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` of the bytes the next reads will return, without taking them;
        at least one, ``b""`` at EOF.

        A socket is peeked (``MSG_PEEK``): nothing is taken from it, so the bytes are still
        there for whoever reads the socket next (a TLS handshake too). Any other stream is
        read, and what was read is kept for :meth:`receive_some` (at most ``max_bytes``).
        A peek returns at once while peeked bytes wait: take them before peeking for more.

        Raises and timeouts: as :meth:`receive_some`.
        """
        if self._ahead:
            await trio.lowlevel.checkpoint()
            return self._ahead[:max_bytes]
        sock = self._socket
        if sock is None:
            self._ahead = bytes(await self.stream.receive_some(max_bytes))
            return self._ahead
        try:
            return await sock.recv(max_bytes, socket.MSG_PEEK)
        except OSError as exc:
            raise _stream_error(exc) from exc

    async def receive_some(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` bytes, at least one; ``b""`` at EOF.

        Raises:
            trio.BrokenResourceError: the connection failed (reset...).
            trio.ClosedResourceError: it was closed here.
        Timeouts: none; the caller bounds the wait.
        """
        if self._ahead:
            await trio.lowlevel.checkpoint_if_cancelled()
            taken, self._ahead = self._ahead[:max_bytes], self._ahead[max_bytes:]
            await trio.lowlevel.cancel_shielded_checkpoint()
            return taken
        sock = self._socket
        if sock is None:
            return bytes(await self.stream.receive_some(max_bytes))
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            data = _read(sock, max_bytes)
        except BaseException:
            await trio.lowlevel.cancel_shielded_checkpoint()  # failed at once: still a yield
            raise
        if data is not None:
            await trio.lowlevel.cancel_shielded_checkpoint()  # done at once: still a yield
            return data
        while data is None:  # woken without data (it happens): wait again
            await trio.lowlevel.wait_readable(sock)
            data = _read(sock, max_bytes)
        return data

    def send_now(self, data: bytes) -> bytes:
        """Write what the connection takes at once, without yielding; return the rest.

        A plain TCP socket takes what fits its buffer; a TLS stream that
        :mod:`trio_ftp.tlswrite` can write takes all of ``data`` (encrypted; records the
        socket did not take wait, :attr:`pending`), unless trio is sending on it; any other
        stream takes nothing (``data`` comes back whole, for :meth:`send_all`).

        Raises:
            trio.BusyResourceError: another task is in :meth:`send_all`.
            trio.BrokenResourceError, trio.ClosedResourceError: as :meth:`receive_some`.
        """
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this control connection")
        if not data:
            return data
        sock = self._socket
        if sock is not None:
            return data[_write(sock, data) :]
        tls = self._tls
        records = None if tls is None else tls.encrypt(data)
        if tls is None or records is None:
            return data
        try:
            written = _write(tls.socket, records)
        except BaseException:
            tls.broken()  # part of a record may be out: nothing can follow it
            raise
        tls.keep(records[written:])
        return b""

    @property
    def writes_at_once(self) -> bool:
        """:meth:`send_now` may take data: plain TCP, or TLS that ``tlswrite`` can write."""
        return self._socket is not None or self._tls is not None

    @property
    def pending(self) -> bool:
        """Encrypted replies wait to be sent (:meth:`send_all` sends them first)."""
        tls = self._tls
        return tls is not None and tls.pending

    async def send_all(self, data: bytes) -> None:
        """Send all of ``data`` (:meth:`send_now` first, then this for the rest, bounded by
        the caller: a client that stops reading blocks here).

        Raises:
            trio.BusyResourceError: another task is sending.
            trio.BrokenResourceError, trio.ClosedResourceError: as :meth:`receive_some`.
        Cancellation: part of ``data`` may have been sent.
        """
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this control connection")
        self._sending = True
        try:
            sock = self._socket
            if sock is None:
                tls = self._tls
                if tls is not None and tls.pending:  # what send_now left goes first
                    await tls.flush_pending()
                    if not data:
                        return
                await self.stream.send_all(data)
                return
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                written = _write(sock, data) if data else 0
            except BaseException:
                await trio.lowlevel.cancel_shielded_checkpoint()  # failed at once: still a yield
                raise
            if written == len(data):
                await trio.lowlevel.cancel_shielded_checkpoint()  # done at once: still a yield
                return
            with memoryview(data) as view:
                while written < len(view):  # each pass writes or waits for room
                    await trio.lowlevel.wait_writable(sock)
                    written += _write(sock, view[written:])
        finally:
            self._sending = False

    async def aclose(self) -> None:
        """Close the connection (a plain socket closes at once; TLS says goodbye first, so
        bound it)."""
        await self.stream.aclose()

    @property
    def plain(self) -> bool:
        """True while the stream is plain TCP: written at once by :meth:`send_now`, closed
        at once by :meth:`aclose`."""
        return self._socket is not None


# The two system calls. "Would block" is a return value, not an exception leaving these
# frames: an exception raised through a suspended coroutine would give it a frame object
# for good (208 bytes per idle session on CPython 3.11).
def _read(sock: trio.socket.SocketType, max_bytes: int) -> bytes | None:
    """One non-blocking read (trio made the socket non-blocking); None if it would block."""
    try:
        return os.read(sock.fileno(), max_bytes)
    except BlockingIOError:
        return None
    except OSError as exc:
        raise _stream_error(exc) from exc


def _write(sock: trio.socket.SocketType, data: bytes | memoryview) -> int:
    """One non-blocking write; the count written (0 if it would block)."""
    try:
        return os.write(sock.fileno(), data)
    except BlockingIOError:
        return 0
    except OSError as exc:
        raise _stream_error(exc) from exc


def _stream_error(exc: OSError) -> trio.BrokenResourceError | trio.ClosedResourceError:
    """Trio's stream error for an OS error, as ``trio.SocketStream`` translates it: a closed
    socket's descriptor is -1, which the OS calls ``EBADF``."""
    if exc.errno == errno.EBADF:
        return trio.ClosedResourceError("control connection already closed")
    return trio.BrokenResourceError(f"control connection: {exc}")
