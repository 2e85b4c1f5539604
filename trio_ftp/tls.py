"""TLS for control and data connections (RFC 4217), through ``trio.SSLStream``.

The few things ``trio.SSLStream`` leaves to us live here, so the session and the data channel
code only call them: wrapping with or without TLS 1.3 session tickets, a bounded handshake,
and telling a ragged EOF (TCP FIN without ``close_notify``) from a reset.
"""

from __future__ import annotations

import logging
import ssl

import trio

from .errors import FTPError

__all__ = ["TLSHandshakeFailed", "handshake", "is_ragged_eof", "wrap_server_side"]

logger = logging.getLogger("trio_ftp.tls")


class TLSHandshakeFailed(FTPError):
    """A TLS handshake failed or timed out; the stream it was on is unusable."""


def wrap_server_side(
    transport: trio.abc.Stream, context: ssl.SSLContext, *, session_tickets: bool = True
) -> trio.SSLStream[trio.abc.Stream]:
    """Wrap ``transport`` as the server side of a TLS connection (handshake not started).

    ``session_tickets=False`` makes this connection send no TLS 1.3 session tickets: lftp
    never reads an upload's data connection, so unread tickets make its kernel answer the
    close with a reset that can truncate the upload. OpenSSL copies the context's ticket count
    into each connection when the connection object is made, so the count is lowered only
    for that synchronous moment; tickets issued on the control connection (which data
    connections resume) are unaffected.
    """
    if session_tickets:
        return trio.SSLStream(transport, context, server_side=True)
    saved = context.num_tickets
    try:
        context.num_tickets = 0
    except ValueError:  # not a server-side context: OpenSSL decides
        return trio.SSLStream(transport, context, server_side=True)
    try:
        return trio.SSLStream(transport, context, server_side=True)
    finally:
        context.num_tickets = saved


async def handshake(stream: trio.SSLStream[trio.abc.Stream]) -> None:
    """Complete the TLS handshake.

    Raises:
        TLSHandshakeFailed: garbage instead of TLS, a vanished peer, a bad certificate. The
            caller closes the stream.
    Timeouts: none here; callers bound it with ``tls_handshake_timeout``.
    Cancellation: the handshake is abandoned and the stream left unusable.
    """
    try:
        await stream.do_handshake()
    except trio.BrokenResourceError as exc:
        reason = exc.__cause__ or exc
        raise TLSHandshakeFailed(f"TLS handshake failed: {reason}") from exc


def is_ragged_eof(exc: BaseException) -> bool:
    """True if a ``BrokenResourceError`` from a TLS stream was a bare TCP FIN, not a reset."""
    return isinstance(exc, trio.BrokenResourceError) and isinstance(exc.__cause__, ssl.SSLEOFError)
