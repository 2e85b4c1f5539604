"""The transport under a TLS data connection: prompt ACKs, and big reads.

Prompt ACKs, so a client's last TLS record is not held back.

A client that leaves Nagle's algorithm on (lftp, Python's ``ssl`` sockets...) sends the end
of an upload, its TLS ``close_notify``, only once the server has acknowledged the data
before it. On an upload's data connection the server has nothing to send, so the kernel
delays that acknowledgement (up to 40 ms on Linux) and every small FTPS upload took 40 ms
more: 22 files/s. Setting ``TCP_QUICKACK`` after each receive makes the kernel acknowledge
at once (it is not sticky: the kernel may go back to delayed ACKs, so it is set again after
every receive, one ``setsockopt`` per TLS read).

Only TLS data connections need it: a plain upload ends with a FIN, which Nagle does not hold.

Big reads: ``trio.SSLStream`` refills from its transport with ``receive_some()`` and no
size, which a socket stream answers with at most 64 KiB (four TLS records). Reading up to
256 KiB per trip lets :mod:`trio_ftp.tlsread` decrypt up to sixteen records per trip
through trio's scheduler: receiving a loopback TLS upload took 2.7 s of CPU per GiB
through ``receive_some`` alone, 1.06 s with both (docs/performance.md).
"""

from __future__ import annotations

import contextlib
import socket

import trio

__all__ = ["READ_SIZE", "TLSDataTransport", "tls_data_transport"]

_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux only
#: Bytes asked of the socket per transport read when the TLS layer names no size.
READ_SIZE = 256 * 1024


class TLSDataTransport(trio.abc.HalfCloseableStream):
    """A socket stream that reads big and acknowledges what it receives at once
    (``TCP_QUICKACK``, where ``option`` is not None)."""

    def __init__(self, transport_stream: trio.SocketStream, option: int | None) -> None:
        self.transport_stream = transport_stream
        self.socket = transport_stream.socket
        self._option = option

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self.transport_stream.receive_some(max_bytes or READ_SIZE)
        if data and self._option is not None:
            # OSError: the peer reset meanwhile; the next receive reports it
            with contextlib.suppress(OSError):
                self.socket.setsockopt(socket.IPPROTO_TCP, self._option, 1)
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.transport_stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport_stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.transport_stream.send_eof()

    async def aclose(self) -> None:
        await self.transport_stream.aclose()


def tls_data_transport(stream: trio.SocketStream) -> TLSDataTransport:
    """``stream`` as the transport of a TLS data connection (quick ACKs where the system
    has ``TCP_QUICKACK``)."""
    return TLSDataTransport(stream, _QUICKACK)
