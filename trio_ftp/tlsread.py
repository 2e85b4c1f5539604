"""Decrypting the TLS records an upload has already received, without a trip through trio.

trio's :class:`trio.SSLStream` returns one TLS record (at most 16 KiB) per
``receive_some``, and every call costs a scheduler checkpoint and its bookkeeping. Its
transport read takes up to 64 KiB at a time, so most calls find their record already
received: for an FTPS upload of 1 GiB (65,536 records) the per-call cost was most of the
server's CPU, and FTPS STOR ran at half pyftpdlib's speed. :func:`read_received` decrypts
records that are already in the stream's buffer straight from its ``ssl.SSLObject``.

While records trickle in one at a time, :func:`refill` waits on the transport itself and
feeds the stream's buffer, round ``receive_some``'s per-call locks and retries.

The trick reads private attributes of ``trio.SSLStream`` (``_ssl_object``, ``_incoming``,
its state and handshake). Where any of them is missing or not as expected (a trio that
changed), :func:`read_received` answers :data:`ASK_TRIO` and :func:`refill` does nothing,
and the caller goes through ``receive_some`` as before. So it is whenever OpenSSL has
anything to say besides data (``close_notify``, an error): ``receive_some`` then sees the
same state and handles it as it always did. Only the upload's own receive loop calls them,
so no other task reads the stream meanwhile; while trio itself reads the transport (its
inner receive lock is held), :func:`refill` leaves it to trio.
"""

from __future__ import annotations

import ssl
from typing import Final, Literal

import trio

__all__ = ["ASK_TRIO", "read_received", "refill"]

#: :func:`read_received`'s answer when only ``receive_some`` may go on: not a TLS stream
#: this module can read, or OpenSSL had something besides data (``close_notify``, an
#: error), which ``receive_some`` must see.
ASK_TRIO: Final = False


def _buffers(stream: trio.abc.Stream) -> tuple[ssl.SSLObject, ssl.MemoryBIO] | None:
    """The TLS object and incoming buffer of ``stream``, when it is a ``trio.SSLStream``
    past its handshake, open, not at its end, and built as this module expects."""
    if not isinstance(stream, trio.SSLStream):
        return None
    ssl_object = getattr(stream, "_ssl_object", None)
    incoming = getattr(stream, "_incoming", None)
    if not isinstance(ssl_object, ssl.SSLObject) or not isinstance(incoming, ssl.MemoryBIO):
        return None
    if not getattr(getattr(stream, "_handshook", None), "done", False):
        return None
    if getattr(getattr(stream, "_state", None), "name", None) != "OK" or incoming.eof:
        return None  # broken, closed or ended: receive_some says so
    return ssl_object, incoming


def read_received(stream: trio.abc.Stream, max_bytes: int) -> bytes | Literal[False] | None:
    """Up to ``max_bytes`` decrypted bytes from records ``stream`` has already received;
    ``None`` when no whole record is there yet (:func:`refill` may bring one); or
    :data:`ASK_TRIO`."""
    buffers = _buffers(stream)
    if buffers is None:
        return ASK_TRIO
    ssl_object, incoming = buffers
    if not incoming.pending and not ssl_object.pending():
        return None
    try:
        data = ssl_object.read(max_bytes)
    except ssl.SSLWantReadError:  # half a record: more must come
        return None
    except ssl.SSLError:  # close_notify, a bad record: receive_some decides
        return ASK_TRIO
    return data or ASK_TRIO


async def refill(stream: trio.abc.Stream) -> bool:
    """Move what the network has for ``stream`` (what one unsized read of its transport
    returns; waiting for some) into its incoming buffer, by the transport's own
    ``receive_some``. False (nothing done) where ``stream`` is not a TLS
    stream this module can read, or at the end of the transport: then ``receive_some``
    goes on. Call it only after :func:`read_received` answered ``None``.

    Timeouts: none of its own; the caller's cancel scope bounds the wait."""
    buffers = _buffers(stream)
    if buffers is None:
        return False
    _, incoming = buffers
    assert isinstance(stream, trio.SSLStream)
    lock = getattr(stream, "_inner_recv_lock", None)
    if lock is None or lock.locked():  # trio is reading the transport itself
        return False
    data = await stream.transport_stream.receive_some()
    if not data:
        incoming.write_eof()
        return False
    incoming.write(data)
    return True
