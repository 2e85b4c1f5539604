"""Writing a TLS control connection's replies without a trip through trio.

A reply on a TLS control connection went through the session's write lock, a
``socket_timeout`` scope and ``trio.SSLStream.send_all`` (its conflict detector, its
``_retry`` loop and inner send lock, the transport's ``send_all``): about 45 us of CPU per
reply against 11 us for encrypting into the ``ssl.SSLObject`` and writing the records with
one system call (docs/performance.md). An FTPS session sends about ten replies.

:meth:`TLSWriter.encrypt` does the latter's first half, synchronously, when nothing else is
sending on the stream: it encrypts and prepends the session tickets trio holds back after a
TLS 1.3 handshake; :class:`~trio_ftp.controlsocket.ControlSocket` writes the records (it owns
the socket's system calls). Records the socket does not take at once go back into the
stream's outgoing buffer (:meth:`TLSWriter.keep`), where trio's own sends find them first,
in order; :meth:`TLSWriter.flush_pending` (under the caller's timeout) has trio send them.

The trick reads private attributes of ``trio.SSLStream`` (``_ssl_object``, ``_outgoing``,
``_inner_send_lock``, ``_delayed_outgoing``, ``_handshook``, ``_state``, ``_retry``). Where
any is missing (a trio that changed), :func:`writer_for` answers None and every reply goes
through ``send_all`` as before; so it does whenever trio is sending on the stream itself
(its inner lock is held) or the stream is not open and past its handshake.
"""

from __future__ import annotations

import ssl

import trio

__all__ = ["TLSWriter", "writer_for"]

_PRIVATE = (
    "_ssl_object",
    "_outgoing",
    "_inner_send_lock",
    "_delayed_outgoing",
    "_handshook",
    "_state",
    "_retry",
)


def writer_for(stream: trio.abc.Stream) -> TLSWriter | None:
    """A writer for ``stream``: a ``trio.SSLStream`` over a ``trio.SocketStream``, built as
    this module expects; otherwise None."""
    if not isinstance(stream, trio.SSLStream):
        return None
    if not isinstance(stream.transport_stream, trio.SocketStream):
        return None
    if not all(hasattr(stream, name) for name in _PRIVATE):
        return None
    if not isinstance(stream._ssl_object, ssl.SSLObject) or not isinstance(
        stream._outgoing, ssl.MemoryBIO
    ):
        return None
    return TLSWriter(stream, stream.transport_stream.socket)


def _send_buffered() -> None:
    """A no-op for ``_retry``: only the records already in the outgoing buffer go out."""


class TLSWriter:
    """Writes replies on one TLS control connection (see the module's docstring)."""

    __slots__ = ("_stream", "socket")

    def __init__(self, stream: trio.SSLStream[trio.SocketStream], sock: trio.socket.SocketType):
        self._stream = stream
        #: The transport's socket, which the caller writes the records to.
        self.socket = sock

    @property
    def pending(self) -> bool:
        """Records wait in the stream's outgoing buffer (:meth:`keep`; trio empties it at
        each of its own steps, so between them only kept records can be there)."""
        return bool(self._stream._outgoing.pending)

    def ready(self) -> bool:
        """The stream is open, past its handshake, and nobody is sending on it."""
        stream = self._stream
        return (
            stream._handshook.done
            and stream._state.name == "OK"
            and not stream._inner_send_lock.locked()
            and not stream._outgoing.pending
        )

    def encrypt(self, data: bytes) -> bytes | None:
        """The records carrying ``data``, for the caller to write at once (then
        :meth:`keep` what the socket did not take); None (nothing done) when the stream is
        not :meth:`ready`.

        Raises:
            trio.BrokenResourceError: OpenSSL failed; the stream is broken.
        """
        if not data or not self.ready():
            return None
        stream = self._stream
        try:
            stream._ssl_object.write(data)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            # OpenSSL must hear from the peer first (a TLS 1.2 renegotiation): trio's
            # send_all repeats the write, as OpenSSL asks, and does the rest.
            return None
        except ssl.SSLError as exc:
            self.broken()
            raise trio.BrokenResourceError(f"control connection: {exc}") from exc
        records = stream._outgoing.read()
        delayed = stream._delayed_outgoing
        if delayed is not None:  # TLS 1.3 session tickets go before the first record
            records = delayed + records
            stream._delayed_outgoing = None
        return records

    def keep(self, rest: bytes) -> None:
        """Hold ``rest``, the end of what :meth:`encrypt` returned that the socket did not
        take, for :meth:`flush_pending`. The outgoing buffer is empty (:meth:`encrypt`
        emptied it and nothing ran since), so it goes back in order, and trio's next send
        of this stream, ours or its own, sends it first."""
        if rest:
            self._stream._outgoing.write(rest)

    async def flush_pending(self) -> None:
        """Send the records the socket did not take (:meth:`keep`) (trio waits for room, under
        the caller's timeout; a cancelled send breaks the stream, as trio's does)."""
        if self.pending:
            await self._stream._retry(_send_buffered)

    def broken(self) -> None:
        """Mark the stream broken, as trio does when a send fails midway."""
        state = self._stream._state
        self._stream._state = type(state).BROKEN
