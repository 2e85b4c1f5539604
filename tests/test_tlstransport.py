"""The transport of TLS data connections: quick ACKs and big reads (trio_ftp.tlstransport)."""

from __future__ import annotations

import socket
import struct

import pytest
import trio
import trio.testing

from trio_ftp.tlstransport import READ_SIZE, TLSDataTransport, tls_data_transport

linux_only = pytest.mark.skipif(
    not hasattr(socket, "TCP_QUICKACK"), reason="TCP_QUICKACK is Linux's"
)


async def _pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with listener:
        client = await trio.open_tcp_stream("127.0.0.1", listener.socket.getsockname()[1])
        server = await listener.accept()
    return client, server


@linux_only
async def test_each_receive_asks_for_an_immediate_ack() -> None:
    client, server = await _pair()
    stream = tls_data_transport(server)
    assert isinstance(stream, TLSDataTransport)
    set_calls: list[tuple[int, int, int]] = []
    real_setsockopt = server.socket.setsockopt

    def recording(level: int, option: int, value: int) -> None:
        set_calls.append((level, option, value))
        real_setsockopt(level, option, value)

    stream.socket = type("S", (), {"setsockopt": staticmethod(recording)})()  # type: ignore[assignment]
    async with client, stream:
        for block in (b"x" * 5000, b"y" * 10):
            await client.send_all(block)
            received = b""
            while len(received) < len(block):
                received += await stream.receive_some()
            assert received == block
        assert len(set_calls) >= 2
        assert set(set_calls) == {(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)}
        assert server.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK) == 1
        await stream.send_all(b"back")
        await stream.wait_send_all_might_not_block()
        assert await client.receive_some() == b"back"
        await stream.send_eof()
        assert await client.receive_some() == b""
        await client.aclose()
        set_calls.clear()
        assert await stream.receive_some() == b""  # the end: nothing to acknowledge
        assert set_calls == []


async def test_a_receive_after_a_reset_reports_it_not_the_setsockopt() -> None:
    client, server = await _pair()
    stream = tls_data_transport(server)
    await client.send_all(b"data")
    client.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await client.aclose()  # a reset

    async def drain() -> None:
        while await stream.receive_some():
            pass

    with pytest.raises(trio.BrokenResourceError):
        await drain()
    await stream.aclose()


async def test_a_receive_with_no_size_reads_big() -> None:
    """trio.SSLStream refills with ``receive_some()``: up to READ_SIZE, not 64 KiB."""
    client, server = await _pair()
    stream = tls_data_transport(server)
    payload = b"z" * (READ_SIZE + 4096)

    async def send() -> None:
        await client.send_all(payload)
        await client.send_eof()

    sizes = []
    async with client, stream, trio.open_nursery() as nursery:
        nursery.start_soon(send)
        await trio.testing.wait_all_tasks_blocked()  # the sender waits: buffers are full
        while data := await stream.receive_some():
            sizes.append(len(data))
    assert sum(sizes) == len(payload)
    assert max(sizes) > 65536
    assert max(sizes) <= READ_SIZE
