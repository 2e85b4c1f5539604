"""trio_ftp.tlsread: records already received are decrypted straight, and anything but data
(a partial record, close_notify, a closed stream, a trio without the expected attributes)
leaves the stream to ``receive_some``."""

from __future__ import annotations

import ssl

import pytest
import trio
import trio.testing
import trustme

from trio_ftp.tlsread import ASK_TRIO, read_received, refill


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
        while more := read_received(server, 16384):
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
    assert not read_received(server, 10)  # no data after the end, whatever is asked
    await server.aclose()
    assert read_received(server, 10) is ASK_TRIO  # closed


async def test_not_tls_before_the_handshake_or_an_unknown_trio(contexts) -> None:
    a, _ = trio.testing.memory_stream_pair()
    assert read_received(a, 10) is ASK_TRIO  # not TLS
    assert not await refill(a)
    fresh = trio.SSLStream(a, contexts[0], server_side=True)
    assert read_received(fresh, 10) is ASK_TRIO  # no handshake yet
    assert not await refill(fresh)
    server, client = await _tls_pair(contexts)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.send_all, b"x" * 40000)
        await server.receive_some(10)
    server._incoming = object()  # type: ignore[attr-defined]  # a trio that changed
    assert read_received(server, 10) is ASK_TRIO
    assert not await refill(server)


async def test_refill_waits_for_the_network_and_close_notify_goes_to_trio(contexts) -> None:
    """The upload loop's pattern: read what is there, refill while records trickle in, and
    leave close_notify (or a bare end) to receive_some, which must see it."""
    server, client = await _tls_pair(contexts)
    got = bytearray()

    async def upload() -> None:
        for i in range(5):
            await client.send_all(bytes([i]) * 3000)
            await trio.testing.wait_all_tasks_blocked()
        await client.aclose()  # close_notify

    async with trio.open_nursery() as nursery:
        nursery.start_soon(upload)
        refills = 0
        while True:
            data = read_received(server, 65536)
            if data is None and await refill(server):
                refills += 1
                continue
            if not data:
                data = await server.receive_some()
                if not data:
                    break
            got += data
    assert bytes(got) == b"".join(bytes([i]) * 3000 for i in range(5))
    assert refills >= 4  # the records came one by one, through refill


async def test_a_bare_end_is_left_to_receive_some(contexts) -> None:
    """The transport ends without close_notify: refill says False, receive_some reports the
    ragged end as trio always did."""
    server, client = await _tls_pair(contexts)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.send_all, b"data")
        assert await server.receive_some() == b"data"
    await client.transport_stream.aclose()
    assert read_received(server, 10) is None
    assert not await refill(server)
    assert read_received(server, 10) is ASK_TRIO  # the end is in the buffer now
    with pytest.raises(trio.BrokenResourceError):
        await server.receive_some()


async def test_refill_leaves_the_transport_to_trio_while_trio_reads_it(contexts) -> None:
    """trio's inner receive lock held (trio is reading the transport itself): refill reads
    nothing and says so, so two reads never race on one socket."""
    server, client = await _tls_pair(contexts)
    await client.send_all(b"NOOP\r\n")
    server._inner_recv_lock.acquire_nowait()
    try:
        assert await refill(server) is False
    finally:
        server._inner_recv_lock.release()
    assert await server.receive_some(100) == b"NOOP\r\n"  # nothing was taken
