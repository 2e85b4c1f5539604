"""trio_ftp.tls.wrap_server_side without session tickets: the context's ticket count is lowered
only while the connection object is made, and a context that has no tickets to lower (a client
context) is used as it is."""

from __future__ import annotations

import ssl

import pytest
import trio
import trio.testing

from trio_ftp.tls import TLSHandshakeFailed, handshake, wrap_server_side


def test_ticket_count_is_restored_after_wrapping(tls_ca):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1").configure_cert(context)
    context.num_tickets = 3
    stream = wrap_server_side(trio.testing.memory_stream_pair()[0], context, session_tickets=False)
    assert stream.context is context
    assert context.num_tickets == 3


async def test_generic_context_is_wrapped_unchanged(tls_ca):
    """A generic PROTOCOL_TLS context (old code makes them) serves TLS but refuses a ticket
    count (ValueError: not a server context): it is used as it is, and still serves."""
    with pytest.warns(DeprecationWarning, match="PROTOCOL_TLS"):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS)
    tls_ca.issue_cert("127.0.0.1").configure_cert(context)
    before = context.num_tickets
    client_raw, server_raw = trio.testing.memory_stream_pair()
    stream = wrap_server_side(server_raw, context, session_tickets=False)
    assert stream.context is context
    assert context.num_tickets == before
    client_context = ssl.create_default_context()
    tls_ca.configure_trust(client_context)
    client = trio.SSLStream(client_raw, client_context, server_hostname="127.0.0.1")
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(handshake, stream)
            await client.do_handshake()


async def test_garbage_instead_of_tls_is_a_handshake_failure(tls_ca):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1").configure_cert(context)
    client, server = trio.testing.memory_stream_pair()
    stream = wrap_server_side(server, context)
    await client.send_all(b"USER anonymous\r\n")
    with trio.fail_after(5), pytest.raises(TLSHandshakeFailed, match="TLS handshake failed"):
        await handshake(stream)
