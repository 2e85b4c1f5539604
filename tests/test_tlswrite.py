"""trio_ftp.tlswrite through ControlSocket, on real loopback sockets and real TLS: replies
encrypted and written at once, the TLS 1.3 session tickets trio holds back sent first,
records a full socket did not take sent later in order (also when another reply comes
meanwhile), the fallback to ``SSLStream.send_all`` while trio itself is sending, a
cancelled or failed write breaking the stream, and streams the trick does not apply to."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from conftest import TLSCerts, random_bytes
from test_controlsocket import loopback, receive_exactly

from trio_ftp.controlsocket import ControlSocket
from trio_ftp.tlswrite import writer_for

#: A reply far bigger than the small socket buffers of ``loopback(small_buffers=True)``.
BIG = 1 << 20


@asynccontextmanager
async def tls_pair(
    tls: TLSCerts, *, small_buffers: bool = False
) -> AsyncIterator[tuple[ControlSocket, trio.SSLStream[trio.SocketStream]]]:
    """A server-side ControlSocket on TLS (handshake done, as after ``AUTH TLS``) and the
    client's ``SSLStream``."""
    async with loopback(small_buffers=small_buffers) as (ours, peer):
        server = trio.SSLStream(ours, tls.server_context, server_side=True)
        client = trio.SSLStream(peer, tls.client_context, server_hostname="127.0.0.1")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.do_handshake)
            nursery.start_soon(client.do_handshake)
        control = ControlSocket(ours)
        control.use(server)
        yield control, client


async def test_a_reply_is_encrypted_and_written_at_once_tickets_first(tls: TLSCerts) -> None:
    """The TLS 1.3 session tickets trio held back after the handshake go out before the
    first reply (the client would fail on a record out of order), and nothing waits."""
    async with tls_pair(tls) as (control, client):
        server = control.stream
        assert isinstance(server, trio.SSLStream)
        assert server._delayed_outgoing  # the tickets OpenSSL made at the handshake
        assert control.send_now(b"230 logged in\r\n") == b""
        assert server._delayed_outgoing is None
        assert not control.pending
        assert control.send_now(b"200 ok\r\n") == b""
        assert await receive_exactly(client, 23) == b"230 logged in\r\n200 ok\r\n"
        assert client.version() == "TLSv1.3"


async def test_records_a_full_socket_did_not_take_go_later_in_order(tls: TLSCerts) -> None:
    """A reply bigger than the socket takes: send_now still returns at once, the rest
    waits (pending), a second reply meanwhile goes through trio after it, and send_all
    sends both, in order, once the client reads."""
    big = random_bytes(BIG, 7)
    async with tls_pair(tls, small_buffers=True) as (control, client):
        assert control.send_now(big) == b""
        assert control.pending
        assert control.send_now(b"226 done\r\n") == b"226 done\r\n"  # must wait its turn
        received: list[bytes] = []

        async def read_all() -> None:
            received.append(await receive_exactly(client, BIG + 10))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_all)
            await control.send_all(b"226 done\r\n")
        assert not control.pending
        assert received == [big + b"226 done\r\n"]
        assert control.send_now(b"221 bye\r\n") == b""  # at once again
        assert await receive_exactly(client, 9) == b"221 bye\r\n"


async def test_pending_records_alone_are_sent_by_send_all(tls: TLSCerts) -> None:
    """send_all(b"") with records pending sends just them."""
    big = random_bytes(BIG, 8)
    async with tls_pair(tls, small_buffers=True) as (control, client):
        assert control.send_now(big) == b""
        assert control.pending
        received: list[bytes] = []

        async def read_all() -> None:
            received.append(await receive_exactly(client, BIG))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_all)
            await control.send_all(b"")
        assert received == [big]
        assert not control.pending


async def test_while_trio_sends_the_reply_goes_through_send_all(tls: TLSCerts) -> None:
    """trio's inner send lock held (trio is writing records of its own): send_now writes
    nothing and hands the reply back, so it cannot overtake them."""
    async with tls_pair(tls) as (control, client):
        server = control.stream
        assert isinstance(server, trio.SSLStream)
        server._inner_send_lock.acquire_nowait()
        try:
            assert control.send_now(b"200 later\r\n") == b"200 later\r\n"
        finally:
            server._inner_send_lock.release()
        await control.send_all(b"200 later\r\n")
        assert await receive_exactly(client, 11) == b"200 later\r\n"


async def test_a_cancelled_send_of_pending_records_breaks_the_stream(tls: TLSCerts) -> None:
    """Part of a record may be on the wire: nothing can follow it, as when trio's own send
    is cancelled."""
    async with tls_pair(tls, small_buffers=True) as (control, _client):
        assert control.send_now(random_bytes(BIG, 9)) == b""
        with trio.move_on_after(0.05) as scope:  # the client never reads
            await control.send_all(b"")
        assert scope.cancelled_caught
        with pytest.raises(trio.BrokenResourceError):
            await control.send_all(b"421 late\r\n")
        assert control.send_now(b"421 late\r\n") == b"421 late\r\n"  # not ready: broken


async def test_a_failed_write_breaks_the_stream(tls: TLSCerts) -> None:
    """The socket closed under the stream: BrokenResourceError (or Closed), and the stream
    is broken for trio too."""
    async with tls_pair(tls) as (control, _client):
        server = control.stream
        assert isinstance(server, trio.SSLStream)
        server.transport_stream.socket.close()
        with pytest.raises((trio.BrokenResourceError, trio.ClosedResourceError)):
            control.send_now(b"200 gone\r\n")
        assert server._state.name == "BROKEN"
        with pytest.raises(trio.BrokenResourceError):
            await server.send_all(b"200 gone\r\n")


async def test_streams_the_trick_does_not_apply_to(tls: TLSCerts) -> None:
    """A plain socket, TLS over memory streams, and TLS before its handshake: no writer,
    or one that is not ready (send_now hands the reply back)."""
    async with loopback() as (ours, _peer):
        assert writer_for(ours) is None
        before = trio.SSLStream(ours, tls.server_context, server_side=True)
        writer = writer_for(before)
        assert writer is not None
        assert not writer.ready()
        control = ControlSocket(ours)
        control.use(before)
        assert control.send_now(b"200 x\r\n") == b"200 x\r\n"
    left, _right = trio.testing.memory_stream_pair()
    assert writer_for(trio.SSLStream(left, tls.server_context, server_side=True)) is None
    assert not ControlSocket(left).writes_at_once


async def test_openssl_refusing_the_write_breaks_the_stream(tls: TLSCerts) -> None:
    """OpenSSL refuses to encrypt (here: the TLS layer was shut down under the stream):
    BrokenResourceError, and the stream is broken for trio too."""
    async with tls_pair(tls) as (control, _client):
        server = control.stream
        assert isinstance(server, trio.SSLStream)
        with pytest.raises(ssl.SSLWantReadError):
            server._ssl_object.unwrap()  # close_notify made; the peer's is awaited
        server._outgoing.read()  # as if sent (anything unsent would leave it to trio)
        with pytest.raises(trio.BrokenResourceError, match="shutdown"):
            control.send_now(b"200 late\r\n")
        assert server._state.name == "BROKEN"


async def test_a_trio_built_otherwise_gets_no_writer(tls: TLSCerts) -> None:
    """A private attribute missing, or of another type (a trio that changed): no writer,
    and replies go through ``send_all``."""
    async with loopback() as (ours, _peer):
        missing = trio.SSLStream(ours, tls.server_context, server_side=True)
        del missing._delayed_outgoing
        assert writer_for(missing) is None
        other = trio.SSLStream(ours, tls.server_context, server_side=True)
        other._outgoing = bytearray()  # type: ignore[assignment]
        assert writer_for(other) is None


async def test_nothing_pending_nothing_sent(tls: TLSCerts) -> None:
    """flush_pending without pending records returns at once and sends nothing."""
    async with tls_pair(tls) as (control, client):
        writer = writer_for(control.stream)
        assert writer is not None
        await writer.flush_pending()
        assert control.send_now(b"200 first\r\n") == b""
        assert await receive_exactly(client, 11) == b"200 first\r\n"
