"""trio_ftp.tlsread: records already received are decrypted straight, and anything but data
(a partial record, close_notify, a closed stream, a trio without the expected attributes)
leaves the stream to ``receive_some``."""

from __future__ import annotations

import ssl

import pytest
import trio
import trio.testing
import trustme

from trio_ftp.tlsread import read_received


@pytest.fixture(scope="module")
def contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


async def _tls_pair(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> tuple[trio.SSLStream[trio.abc.Stream], trio.SSLStream[trio.abc.Stream]]:
    a, b = trio.testing.memory_stream_pair()
    server = trio.SSLStream(a, contexts[0], server_side=True)
    client = trio.SSLStream(b, contexts[1], server_hostname="127.0.0.1")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.do_handshake)
        nursery.start_soon(client.do_handshake)
    return server, client


async def test_records_already_received_are_read_straight(contexts) -> None:
    server, client = await _tls_pair(contexts)
    records = [bytes([i]) * 16384 for i in range(4)]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.send_all, b"".join(records))
        received = await server.receive_some(16384)  # trio reads the transport once
        assert received == records[0]
        straight = []
        while (more := read_received(server, 16384)) is not None:
            straight.append(more)
        assert straight, "the other records came in the same transport read"
        rest = bytearray()
        while len(received) + sum(map(len, straight)) + len(rest) < 4 * 16384:
            rest += await server.receive_some()
    assert b"".join([received, *straight, bytes(rest)]) == b"".join(records)


async def test_nothing_received_or_a_partial_record_is_none(contexts) -> None:
    server, client = await _tls_pair(contexts)
    assert read_received(server, 1024) is None  # nothing received yet
    # half a record in the incoming buffer: OpenSSL wants more, and says so to receive_some
    record = b"q" * 1000
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.send_all, record)
        got = await server.receive_some()
    assert got == record
    assert read_received(server, 1024) is None


async def test_close_notify_is_left_to_receive_some(contexts) -> None:
    server, client = await _tls_pair(contexts)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.send_all, b"last")
        assert await server.receive_some() == b"last"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.aclose)
        assert await server.receive_some() == b""  # close_notify: the end
    assert read_received(server, 10) is None
    await server.aclose()
    assert read_received(server, 10) is None  # closed


async def test_not_tls_before_the_handshake_or_an_unknown_trio(contexts) -> None:
    a, _ = trio.testing.memory_stream_pair()
    assert read_received(a, 10) is None  # not TLS
    fresh = trio.SSLStream(a, contexts[0], server_side=True)
    assert read_received(fresh, 10) is None  # no handshake yet
    server, client = await _tls_pair(contexts)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.send_all, b"x" * 40000)
        await server.receive_some(10)
    server._incoming = object()  # type: ignore[attr-defined]  # a trio that changed
    assert read_received(server, 10) is None
