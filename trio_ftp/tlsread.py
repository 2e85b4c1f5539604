"""Decrypting the TLS records an upload has already received, without a trip through trio.

trio's :class:`trio.SSLStream` returns one TLS record (at most 16 KiB) per
``receive_some``, and every call costs a scheduler checkpoint and its bookkeeping. Its
transport read takes up to 64 KiB at a time, so most calls find their record already
received: for an FTPS upload of 1 GiB (65,536 records) the per-call cost was most of the
server's CPU, and FTPS STOR ran at half pyftpdlib's speed. :func:`read_received` decrypts
records that are already in the stream's buffer straight from its ``ssl.SSLObject``.

The trick reads two private attributes of ``trio.SSLStream`` (``_ssl_object`` and
``_incoming``) and its handshake state. Where any of them is missing or not as expected (a
trio that changed), it answers ``None`` and the caller goes through ``receive_some`` as
before. It answers ``None`` too whenever OpenSSL has anything to say besides data (a
record not yet whole, ``close_notify``, an error): ``receive_some`` then sees the same
state and handles it as it always did. Only the upload's own receive loop calls it, so no
other task reads the stream meanwhile.
"""

from __future__ import annotations

import ssl

import trio

__all__ = ["read_received"]


def read_received(stream: trio.abc.Stream, max_bytes: int) -> bytes | None:
    """Up to ``max_bytes`` decrypted bytes from records ``stream`` has already received,
    or ``None`` when there are none (or ``stream`` is not a TLS stream in a state this can
    read): then ``await stream.receive_some()`` is the way on."""
    if not isinstance(stream, trio.SSLStream):
        return None
    ssl_object = getattr(stream, "_ssl_object", None)
    incoming = getattr(stream, "_incoming", None)
    handshook = getattr(stream, "_handshook", None)
    if not isinstance(ssl_object, ssl.SSLObject) or not isinstance(incoming, ssl.MemoryBIO):
        return None
    if handshook is None or not getattr(handshook, "done", False):
        return None
    state = getattr(stream, "_state", None)
    if getattr(state, "name", None) != "OK":  # broken or closed: receive_some says so
        return None
    if not incoming.pending and not ssl_object.pending():
        return None
    try:
        data = ssl_object.read(max_bytes)
    except ssl.SSLError:  # want more, close_notify, a bad record: receive_some decides
        return None
    return data or None
