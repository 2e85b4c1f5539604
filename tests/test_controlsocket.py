"""trio_ftp.controlsocket: the control connection's raw socket I/O, on real loopback sockets
(partial writes to a slow reader, EOF, resets, concurrent senders, checkpoints), its fallback
to the stream's own methods (TLS, memory streams), and the session's partial-write path."""

from __future__ import annotations

import fcntl
import socket
import struct
import termios
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing
from adversarial.wire import Wire, reset_socket
from conftest import LOGIN, PASSWORD, TEST_DEADLINE, MiB, TLSCerts, random_bytes

from trio_ftp.controlsocket import ControlSocket

#: Buffer sizes that a few KiB fill (the kernel doubles them and has a floor).
SMALL_BUFFER = 4096


@asynccontextmanager
async def loopback(*, small_buffers: bool = False) -> AsyncIterator[tuple[trio.SocketStream, ...]]:
    """A connected TCP pair on 127.0.0.1: (ours, peer). ``small_buffers`` shrinks the peer's
    receive buffer and our send buffer, so that a peer that does not read stops our writes
    after a few KiB. Both are closed on exit; the block using them fails after
    ``TEST_DEADLINE`` seconds instead of hanging."""
    listener = trio.socket.socket()
    peer_socket = trio.socket.socket()
    try:
        await listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        if small_buffers:  # before connect: it sets the window the peer advertises
            peer_socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
        with trio.fail_after(10):
            await peer_socket.connect(listener.getsockname())
            our_socket, _ = await listener.accept()
    except BaseException:
        peer_socket.close()
        raise
    finally:
        listener.close()
    ours, peer = trio.SocketStream(our_socket), trio.SocketStream(peer_socket)
    if small_buffers:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
    try:
        with trio.fail_after(TEST_DEADLINE):
            yield ours, peer
    finally:
        ours.socket.close()
        peer.socket.close()


async def receive_exactly(stream: trio.abc.ReceiveStream, size: int) -> bytes:
    """``size`` bytes from ``stream`` (fewer only at EOF)."""
    received = bytearray()
    with trio.fail_after(10):
        while len(received) < size:
            chunk = await stream.receive_some(size - len(received))
            if not chunk:
                break
            received += chunk
    return bytes(received)


async def receive_until(stream: trio.abc.ReceiveStream, end: bytes) -> bytes:
    """What ``stream`` sends up to and including ``end`` (which must close a chunk)."""
    received = bytearray()
    with trio.fail_after(10):
        while not received.endswith(end):
            chunk = await stream.receive_some(65536)
            assert chunk, f"EOF after {len(received)} bytes"
            received += chunk
    return bytes(received)


def readable_bytes(sock: trio.socket.SocketType) -> int:
    """Bytes waiting in ``sock``'s receive queue."""
    raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    return int(struct.unpack("i", raw)[0])


# writes ------------------------------------------------------------------------------------
async def test_send_now_returns_what_a_slow_reader_leaves_and_send_all_delivers_it() -> None:
    """The partial write: send_now writes what fits and returns the rest without yielding;
    send_all waits for the reader and delivers the rest, byte-exact, once it drains."""
    payload = random_bytes(MiB)
    async with loopback(small_buffers=True) as (ours, peer):
        control = ControlSocket(ours)
        assert control.plain
        with trio.testing.assert_no_checkpoints():
            rest = control.send_now(payload)
        assert 0 < len(rest) < len(payload)  # some written, the rest handed back
        assert payload.endswith(rest)
        sent = trio.Event()

        async def send_rest() -> None:
            await control.send_all(rest)
            sent.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_rest)
            await trio.testing.wait_all_tasks_blocked()
            assert not sent.is_set()  # waits for the reader
            received = await receive_exactly(peer, len(payload))
        assert received == payload
        assert sent.is_set()


async def test_send_all_blocks_until_the_caller_times_out_when_the_reader_never_reads() -> None:
    """A client that never reads: send_all waits (the caller's timeout ends it, as the
    session's socket_timeout does), and the sender is free again afterwards."""
    async with loopback(small_buffers=True) as (ours, _peer):
        control = ControlSocket(ours)
        rest = control.send_now(random_bytes(MiB))
        assert rest
        with pytest.raises(trio.TooSlowError), trio.fail_after(0.2):
            await control.send_all(rest)
        assert control.send_now(b"x") == b"x"  # no conflict left behind; still no room


async def test_send_all_that_fits_is_a_checkpoint_and_cancellable() -> None:
    """A send that completes without blocking still yields; a cancelled one sends nothing."""
    async with loopback() as (ours, peer):
        control = ControlSocket(ours)
        with trio.testing.assert_checkpoints():
            await control.send_all(b"220 ready\r\n")
        assert await receive_exactly(peer, 11) == b"220 ready\r\n"
        with trio.CancelScope() as scope:
            scope.cancel()
            await control.send_all(b"lost\r\n")
        assert scope.cancelled_caught
        assert control.send_now(b"221 bye\r\n") == b""
        await ours.send_eof()
        assert await receive_exactly(peer, 100) == b"221 bye\r\n"


async def test_concurrent_senders_get_busy_resource_error() -> None:
    """While one task is in send_all, another send (async or not) raises BusyResourceError
    and writes nothing in between."""
    payload = random_bytes(MiB)
    async with loopback(small_buffers=True) as (ours, peer):
        control = ControlSocket(ours)
        rest = control.send_now(payload)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(control.send_all, rest)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await control.send_all(b"interleaved")
            with pytest.raises(trio.BusyResourceError):
                control.send_now(b"interleaved")
            received = await receive_exactly(peer, len(payload))
        assert received == payload
        assert control.send_now(b"next") == b""  # the first sender is done: free again
        assert await receive_exactly(peer, 4) == b"next"


# reads -------------------------------------------------------------------------------------
async def test_receive_waits_for_data_then_eof() -> None:
    """A receive that has to wait returns the bytes once they come, and b"" at EOF."""
    async with loopback() as (ours, peer):
        control = ControlSocket(ours)
        results: list[bytes] = []

        async def receive() -> None:
            results.append(await control.receive_some(100))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            await trio.testing.wait_all_tasks_blocked()
            assert results == []  # nothing to read yet: it waits
            await peer.send_all(b"NOOP\r\n")
        assert results == [b"NOOP\r\n"]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            await trio.testing.wait_all_tasks_blocked()
            await peer.send_eof()
        assert results[1] == b""


async def test_receive_that_would_not_block_is_a_checkpoint() -> None:
    """Data already there: the receive still yields, and in a cancelled scope it raises
    Cancelled without consuming the bytes (trio's try-then-checkpoint)."""
    async with loopback() as (ours, peer):
        control = ControlSocket(ours)
        await peer.send_all(b"USER a\r\n")
        await trio.lowlevel.wait_readable(ours.socket)  # now a read would not block
        with trio.CancelScope() as scope:
            scope.cancel()
            await control.receive_some(100)
        assert scope.cancelled_caught
        with trio.testing.assert_checkpoints():
            assert await control.receive_some(100) == b"USER a\r\n"  # nothing was lost


async def test_reset_is_broken_resource_error() -> None:
    """A reset connection raises trio.BrokenResourceError, from a read and from a write."""
    async with loopback() as (ours, peer):
        control = ControlSocket(ours)
        reset_socket(peer.socket)
        await trio.lowlevel.wait_readable(ours.socket)  # the reset has arrived
        with pytest.raises(trio.BrokenResourceError, match="reset"):
            await control.receive_some(100)
    async with loopback() as (ours, peer):
        control = ControlSocket(ours)
        reset_socket(peer.socket)
        await trio.lowlevel.wait_readable(ours.socket)
        with pytest.raises(trio.BrokenResourceError):
            control.send_now(b"421 bye\r\n")


async def test_closed_is_closed_resource_error() -> None:
    """After aclose, every operation raises trio.ClosedResourceError."""
    async with loopback() as (ours, _peer):
        control = ControlSocket(ours)
        await control.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await control.receive_some(100)
        with pytest.raises(trio.ClosedResourceError):
            control.send_now(b"x")
        with pytest.raises(trio.ClosedResourceError):
            await control.send_all(b"x")


# other streams -----------------------------------------------------------------------------
async def test_memory_stream_uses_the_streams_own_methods() -> None:
    """Any stream but a plain SocketStream: send_now takes nothing, send_all and
    receive_some are the stream's."""
    ours, peer = trio.testing.memory_stream_pair()
    control = ControlSocket(ours)
    assert not control.plain
    assert control.send_now(b"220 hi\r\n") == b"220 hi\r\n"
    with trio.fail_after(TEST_DEADLINE):
        await control.send_all(b"230 ok\r\n")
        assert await peer.receive_some(100) == b"230 ok\r\n"  # only what send_all sent
        await peer.send_all(b"NOOP\r\n")
        assert await control.receive_some(100) == b"NOOP\r\n"
        await peer.aclose()
        assert await control.receive_some(100) == b""


async def test_use_switches_to_tls_and_back(tls: TLSCerts) -> None:
    """AUTH TLS then CCC: after use(SSLStream) the bytes go through TLS (send_now encrypts
    and writes them at once, see test_tlswrite.py); after use() of the unwrapped socket they
    are written raw again."""
    async with loopback() as (ours, peer):
        control = ControlSocket(ours)
        server = trio.SSLStream(ours, tls.server_context, server_side=True)
        client = trio.SSLStream(peer, tls.client_context, server_hostname="127.0.0.1")
        control.use(server)
        assert control.stream is server
        assert not control.plain
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.do_handshake)
            nursery.start_soon(client.do_handshake)
        assert control.send_now(b"200 secret\r\n") == b""  # encrypted and written at once
        await control.send_all(b"201 secret\r\n")
        assert await receive_exactly(client, 24) == b"200 secret\r\n201 secret\r\n"
        await client.send_all(b"CCC\r\n")
        assert await control.receive_some(100) == b"CCC\r\n"
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.unwrap)
            nursery.start_soon(client.unwrap)
        control.use(ours)
        assert control.plain
        assert control.send_now(b"200 clear\r\n") == b""
        assert await receive_exactly(peer, 11) == b"200 clear\r\n"


# the session -------------------------------------------------------------------------------
def many_files(root: Path, count: int) -> list[bytes]:
    """``count`` files with long names, which ``STAT /`` lists in one big reply; the names."""
    names = [f"{number:05}-{'n' * 150}" for number in range(count)]
    for name in names:
        (root / name).touch()
    return [name.encode() for name in names]


async def slow_reader(host: str, port: int) -> Wire:
    """A logged-in control connection with a small receive buffer (the caller closes it)."""
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
    try:
        with trio.fail_after(10):
            await sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    wire = Wire(trio.SocketStream(sock))
    assert (await wire.greeting()).startswith(b"220")
    assert (await wire.login(LOGIN, PASSWORD)).startswith(b"230")
    return wire


async def test_session_sends_a_reply_bigger_than_the_buffers_whole(start_server, root) -> None:
    """A reply the socket cannot take at once (the partial-write path): the session waits
    for the slow reader and the reply arrives whole and in order."""
    expected = many_files(root, 300)
    running = await start_server()
    wire = await slow_reader(running.host, running.port)
    try:
        await wire.send(b"STAT /\r\n")
        with trio.fail_after(TEST_DEADLINE):
            await trio.lowlevel.wait_readable(wire.stream.socket)  # the reply is being written
            await trio.testing.wait_all_tasks_blocked()
        pending = readable_bytes(wire.stream.socket)
        reply = await receive_until(wire.stream, b"213 end of status\r\n")
        assert pending < len(reply)  # the server could not write it all at once
        lines = reply.split(b"\r\n")
        assert lines[0] == b"213-status of /:"
        assert lines[-2:] == [b"213 end of status", b""]
        names = [line.rsplit(b" ", 1)[-1] for line in lines[1:-2]]
        assert names == expected
        assert (await wire.command("NOOP")).startswith(b"200")
    finally:
        wire.stream.socket.close()


async def test_session_drops_a_client_that_never_reads_a_big_reply(start_server, root) -> None:
    """A client that never reads what the socket could not take costs socket_timeout, and
    only its own session."""
    many_files(root, 300)
    running = await start_server(socket_timeout=0.5)
    wire = await slow_reader(running.host, running.port)
    other = await slow_reader(running.host, running.port)
    try:
        with running.server.events() as events, trio.fail_after(5):  # not the 300 s default
            await wire.send(b"STAT /\r\n")
            async for event in events:
                if event.kind == "logout":  # the session ended
                    break
        assert (await other.command("NOOP")).startswith(b"200")
    finally:
        wire.stream.socket.close()
        other.stream.socket.close()
