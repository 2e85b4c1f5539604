"""Reading PROXY headers: ControlSocket.peek, receive_header taking exactly the header, and
the session's header timeout (autojump_clock over in-memory streams)."""

from __future__ import annotations

import pytest
import trio
import trio.lowlevel
import trio.testing
from memory_client import start_memory_session
from proxy_headers import v1, v2, v2_local

from trio_ftp import Server
from trio_ftp.controlsocket import ControlSocket
from trio_ftp.proxyprotocol import ProxyHeader, ProxyProtocolError
from trio_ftp.proxyreceive import header_prefix, receive_header


def socket_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    left, right = trio.socket.socketpair()
    return trio.SocketStream(left), trio.SocketStream(right)


async def test_peek_on_a_socket_takes_nothing():
    """On a socket, peek (MSG_PEEK) leaves the bytes for the next read."""
    sender, receiver = socket_pair()
    async with sender, receiver:
        await sender.send_all(b"abcdef")
        source = ControlSocket(receiver)
        assert await source.peek(4) == b"abcd"
        assert await receiver.receive_some(100) == b"abcdef"  # still in the socket itself


async def test_peek_on_another_stream_keeps_what_it_read():
    """On a stream that can't peek, peek reads and keeps the bytes: receive_some returns
    them first; handing the stream over (use) while bytes wait is refused."""
    sender, receiver = trio.testing.memory_stream_pair()
    await sender.send_all(b"abcdef")
    source = ControlSocket(receiver)
    assert await source.peek(3) == b"abc"
    assert await source.peek(2) == b"ab"  # the same bytes, not more
    with pytest.raises(trio.BrokenResourceError):
        source.use(receiver)
    assert await source.receive_some(2) == b"ab"
    assert await source.receive_some(10) == b"c"
    assert await source.receive_some(10) == b"def"


@pytest.mark.parametrize("pair", [socket_pair, trio.testing.memory_stream_pair])
@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            v1(("192.0.2.1", 1), ("192.0.2.2", 2)),
            ProxyHeader(1, ("192.0.2.1", 1), ("192.0.2.2", 2)),
        ),
        (
            v1(("2001:db8::1", 1), ("2001:db8::2", 2)),
            ProxyHeader(1, ("2001:db8::1", 1), ("2001:db8::2", 2)),
        ),
        (
            v2(("192.0.2.1", 1), ("192.0.2.2", 2), b"\x04\x00\x01x"),
            ProxyHeader(2, ("192.0.2.1", 1), ("192.0.2.2", 2)),
        ),
        (v2_local(), ProxyHeader(2, None, None, local=True)),
        (b"PROXY UNKNOWN\r\n", ProxyHeader(1, None, None)),
    ],
    ids=["v1", "v1-ipv6", "v2-tlv", "v2-local", "v1-unknown"],
)
async def test_receive_header_takes_exactly_the_header(pair, header, expected):
    """The bytes after the header stay in the stream, whether they came with it or not."""
    sender, receiver = pair()
    source = ControlSocket(receiver)
    await sender.send_all(header + b"\r\nUSER x\r\n")
    assert await receive_header(source) == expected
    assert await source.receive_some(100) == b"\r\nUSER x\r\n"
    await sender.aclose()
    await receiver.aclose()


async def test_receive_header_from_a_trickle():
    """A v1 header sent a byte at a time (CR and LF apart) is read to its end, no further."""
    sender, receiver = socket_pair()
    header = v1(("192.0.2.1", 1), ("192.0.2.2", 2))

    async def trickle() -> None:
        for index in range(len(header)):
            await sender.send_all(header[index : index + 1])
            await trio.lowlevel.checkpoint()
        await sender.send_all(b"NEXT")

    async with sender, receiver, trio.open_nursery() as nursery:
        nursery.start_soon(trickle)
        source = ControlSocket(receiver)
        assert (await receive_header(source)).source == ("192.0.2.1", 1)
        assert await source.receive_some(4) == b"NEXT"


@pytest.mark.parametrize(
    "data",
    [b"PROXY TCP4 1.2.3.4", b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c", b"PRO"],
    ids=["v1-cut", "v2-cut", "prefix-cut"],
)
async def test_end_inside_the_header_is_an_error(data):
    sender, receiver = trio.testing.memory_stream_pair()
    await sender.send_all(data)
    await sender.aclose()
    with pytest.raises(ProxyProtocolError, match="ended inside"):
        await receive_header(ControlSocket(receiver))


def test_header_prefix():
    """True once a signature is whole, None while it could still come, False otherwise."""
    assert header_prefix(b"PROXY ") is True
    assert header_prefix(v2_local()) is True
    assert header_prefix(b"PRO") is None
    assert header_prefix(b"\r\n\r\n") is None
    assert header_prefix(b"") is None
    assert header_prefix(b"PASS x") is False
    assert header_prefix(b"\x16\x03\x01") is False  # a TLS ClientHello


# the session's timeout, on trio's clock -----------------------------------------------------
def trusting(mode: str) -> Server:
    """A server that trusts the memory client's address (memory_client.PEER, 127.0.0.1)."""
    return Server(proxy_protocol=mode, proxy_protocol_from=["127.0.0.0/8"])


async def test_optional_mode_greets_a_silent_trusted_client_after_the_timeout(
    nursery, autojump_clock
):
    """Optional: a trusted connection that sends nothing for 3 s is a direct client."""
    client = await start_memory_session(nursery, trusting("optional"))
    assert (await client.reply())[0] == "220"
    assert trio.current_time() == pytest.approx(3.0)


async def test_required_mode_closes_a_silent_trusted_client_after_the_timeout(
    nursery, autojump_clock
):
    client = await start_memory_session(nursery, trusting("required"))
    with pytest.raises(EOFError):
        await client.reply()
    assert trio.current_time() == pytest.approx(3.0)


async def test_a_header_cut_short_by_the_timeout_closes_in_optional_mode(nursery, autojump_clock):
    """Optional mode: once a header has begun, it must end within the timeout; bytes of it
    taken can't be served as a direct client's."""
    client = await start_memory_session(nursery, trusting("optional"))
    await client.send(b"PROXY TCP4 ")
    with pytest.raises(EOFError):
        await client.reply()
    assert trio.current_time() == pytest.approx(3.0)


async def test_a_late_header_within_the_timeout_is_taken(nursery, autojump_clock):
    server = trusting("required")
    client = await start_memory_session(nursery, server)
    await trio.sleep(2.5)
    await client.send(v1(("203.0.113.1", 9), ("127.0.0.1", 21)) + b"NOOP\r\n")
    assert (await client.reply())[0] == "220"
    assert (await client.reply())[0] == "200"
    (connection,) = server.connections.values()
    assert (connection.client_host, connection.transport_host) == ("203.0.113.1", "127.0.0.1")


async def test_a_trusted_direct_client_speaking_first_keeps_its_bytes(nursery, autojump_clock):
    """Optional mode: a first byte that can't start a header means a direct client; the
    byte looked at (kept aside on a memory stream) is still its command's."""
    client = await start_memory_session(nursery, trusting("optional"))
    await client.send("NOOP")
    assert (await client.reply())[0] == "220"
    assert (await client.reply())[0] == "200"
    assert trio.current_time() < 1
