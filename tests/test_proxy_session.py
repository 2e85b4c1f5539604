"""PROXY protocol on a real server: the header before the greeting (and before implicit TLS),
the trust rule, the proxied client address everywhere (logs, events, connections, per-IP
limits, bans, PORT checks), the data-peer check and PROXY headers on data connections.

The "load balancer" is the test itself: it connects from 127.0.0.1 (the trusted network) and
sends the header a balancer would; "direct" clients connect from 127.0.0.2 / 127.0.0.3.
"""

# start_server is adversarial.wire's fixture: imported (F401), then requested (F811).
# ruff: noqa: F401, F811

from __future__ import annotations

import logging

import pytest
import trio
from adversarial.wire import Wire, logged_in, receive_all, start_server
from conftest import LOGIN, PASSWORD
from proxy_headers import v1, v2, v2_local

from trio_ftp import DIALLED

BALANCER = "127.0.0.1"
TRUSTED = ["127.0.0.1/32"]


def proxied(mode: str = "required", **kwargs: object) -> dict[str, object]:
    """Server keywords: PROXY headers from 127.0.0.1 only."""
    return {"proxy_protocol": mode, "proxy_protocol_from": TRUSTED, **kwargs}


async def through_balancer(running, header: bytes) -> Wire:
    """A control connection from the balancer that starts with ``header``."""
    wire = await Wire.connect(running.host, running.port)
    await wire.send(header)
    return wire


def session_of(running, wire: Wire):
    """The server's Connection for ``wire`` (found by the balancer side's port)."""
    port = wire.stream.socket.getsockname()[1]
    (connection,) = [c for c in running.server.connections.values() if c.transport_port == port]
    return connection


def warnings_in(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


@pytest.mark.parametrize("make_header", [v1, v2], ids=["v1", "v2"])
async def test_header_from_the_balancer_names_the_client(start_server, caplog, make_header):
    """v1 and v2 from a trusted sender: the header's source is the session's client in
    server.connections, in the log prefix and in events; the balancer's address is kept
    as transport_host, the header's destination as dialled_host."""
    caplog.set_level(logging.INFO, logger="trio_ftp")
    running = await start_server(**proxied())
    with running.server.events() as events:
        wire = await through_balancer(
            running, make_header(("203.0.113.7", 4711), ("192.0.2.10", 21))
        )
        assert (await wire.greeting()).startswith(b"220")
        connection = session_of(running, wire)
        assert (connection.client_host, connection.client_port) == ("203.0.113.7", 4711)
        assert connection.transport_host == BALANCER
        assert (connection.dialled_host, connection.dialled_port) == ("192.0.2.10", 21)
        assert (await wire.login(LOGIN, PASSWORD)).startswith(b"230")
        with trio.fail_after(5):
            kinds = [(await events.__anext__()) for _ in range(2)]
    assert [(e.kind, e.peer) for e in kinds] == [
        ("connect", "203.0.113.7:4711"),
        ("login", "203.0.113.7:4711"),
    ]
    logged = [r.getMessage() for r in caplog.records if "] login user=" in r.getMessage()]
    assert logged
    assert all(m.startswith(f"[{connection.session_id} 203.0.113.7:4711]") for m in logged)


@pytest.mark.parametrize("mode", ["optional", "required"])
async def test_header_from_an_untrusted_sender_closes(start_server, caplog, mode):
    """A header from outside proxy_protocol_from closes the connection, logged at WARNING:
    required mode closes it before any greeting; optional mode greets it (a direct client)
    and closes it when its first bytes are a header."""
    running = await start_server(**proxied(mode))
    wire = await Wire.connect(running.host, running.port, source="127.0.0.2")
    if mode == "optional":
        assert (await wire.greeting()).startswith(b"220")
    await wire.send(v1(("198.51.100.1", 1000), ("127.0.0.1", 21)))
    assert await wire.closed(5)
    if mode == "required":
        assert wire._buffer == b""  # nothing, not even a greeting
    assert "127.0.0.2" in warnings_in(caplog)
    assert "proxy_protocol_from" in warnings_in(caplog)


async def test_untrusted_v2_signature_split_across_reads_closes(start_server, caplog):
    """Optional mode: the v2 signature from an untrusted client, sent a byte at a time, is
    still seen (the watch spans reads) and the session is closed."""
    running = await start_server(**proxied("optional"))
    wire = await Wire.connect(running.host, running.port, source="127.0.0.3")
    assert (await wire.greeting()).startswith(b"220")
    header = v2(("198.51.100.1", 1000), ("127.0.0.1", 21))
    for index in range(12):
        await wire.send(header[index : index + 1])
        await trio.sleep(0.01)  # separate reads on the server's side, most of the time
    assert await wire.closed(5)
    assert "127.0.0.3" in warnings_in(caplog)


async def test_optional_mode_serves_an_untrusted_direct_client(start_server):
    """Optional mode: a direct client outside proxy_protocol_from is served as usual."""
    running = await start_server(**proxied("optional"))
    wire = await logged_in(running.host, running.port, source="127.0.0.2")
    assert session_of(running, wire).client_host == "127.0.0.2"


async def test_required_mode_closes_a_trusted_sender_without_a_header(start_server, caplog):
    """Required mode: a trusted sender that sends no header within proxy_protocol_timeout
    is closed without a greeting."""
    running = await start_server(**proxied(proxy_protocol_timeout=0.2))
    wire = await Wire.connect(running.host, running.port)
    assert await wire.closed(5)
    assert wire._buffer == b""
    assert "no whole PROXY header within 0.2 s" in warnings_in(caplog)


@pytest.mark.parametrize(
    "garbage",
    [
        b"USER anonymous\r\n",
        b"PROXY TCP4 1.2.3.4 \x1b[31mred 1 2\r\n",
        b"PROXY " + b"A" * 120,
        b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff",  # announces 65535 bytes
    ],
    ids=["ftp-command", "control-chars", "v1-too-long", "v2-too-long"],
)
async def test_malformed_header_closes(start_server, caplog, garbage):
    """A malformed header from a trusted sender closes the connection, logged with the
    client's bytes escaped (no raw control character reaches the log)."""
    running = await start_server(**proxied())
    wire = await through_balancer(running, garbage)
    assert await wire.closed(5)
    assert wire._buffer == b""
    text = warnings_in(caplog)
    assert "bad PROXY header" in text
    assert "\x1b" not in text


@pytest.mark.parametrize(
    "header", [v2_local(), b"PROXY UNKNOWN\r\n"], ids=["v2-LOCAL", "v1-UNKNOWN"]
)
async def test_local_and_unknown_headers_keep_the_transport_address(start_server, header):
    """v2 LOCAL (a health check) and v1 UNKNOWN are accepted: the connection's own address
    stays the client's."""
    running = await start_server(**proxied())
    wire = await through_balancer(running, header)
    assert (await wire.greeting()).startswith(b"220")
    connection = session_of(running, wire)
    assert connection.client_host == connection.transport_host == BALANCER


async def test_commands_sent_with_the_header_are_kept(start_server):
    """The header is read to its last byte and no further: commands the balancer relays in
    the same segment are served."""
    running = await start_server(**proxied())
    wire = await through_balancer(
        running, v2(("203.0.113.9", 5000), ("127.0.0.1", 21)) + b"NOOP\r\n"
    )
    assert (await wire.greeting()).startswith(b"220")
    assert (await wire.reply()).startswith(b"200")


async def test_implicit_ftps_reads_the_header_before_the_handshake(start_server, tls):
    """Implicit FTPS: the header comes in clear, then the TLS handshake, then the greeting."""
    running = await start_server(**proxied(), ssl=tls.server_context)
    wire = await through_balancer(running, v1(("203.0.113.5", 6000), ("127.0.0.1", 990)))
    secure = trio.SSLStream(wire.stream, tls.client_context, server_hostname="127.0.0.1")
    tls_wire = Wire(secure)  # type: ignore[arg-type]
    assert (await tls_wire.greeting()).startswith(b"220")
    assert session_of(running, wire).client_host == "203.0.113.5"
    assert (await tls_wire.login(LOGIN, PASSWORD)).startswith(b"230")


async def test_per_ip_limit_counts_the_proxied_address(start_server):
    """maximum_connections_per_ip counts proxied sources: two clients behind the same
    balancer with different sources each get in; a second one from the same source is
    refused."""
    running = await start_server(**proxied(maximum_connections_per_ip=1))
    first = await through_balancer(running, v1(("198.51.100.1", 1001), ("127.0.0.1", 21)))
    other = await through_balancer(running, v1(("198.51.100.2", 1002), ("127.0.0.1", 21)))
    again = await through_balancer(running, v1(("198.51.100.1", 1003), ("127.0.0.1", 21)))
    assert (await first.greeting()).startswith(b"220")
    assert (await other.greeting()).startswith(b"220")
    assert (await again.greeting()).startswith(b"421")


async def test_login_failure_ban_hits_the_proxied_address(start_server):
    """The per-address login-failure ban applies to the proxied source, not the balancer."""
    running = await start_server(**proxied(maximum_login_failures_per_ip=1))
    banned = ("198.51.100.7", 1)
    wire = await through_balancer(running, v2(banned, ("127.0.0.1", 21)))
    assert (await wire.greeting()).startswith(b"220")
    assert (await wire.login(LOGIN, "wrong")).startswith(b"530")
    again = await through_balancer(running, v2(banned, ("127.0.0.1", 21)))
    assert (await again.greeting()).startswith(b"421")
    other = await through_balancer(running, v2(("198.51.100.8", 1), ("127.0.0.1", 21)))
    assert (await other.greeting()).startswith(b"220")


async def test_port_checks_the_proxied_address(start_server):
    """PORT/EPRT's foreign-address check compares with the proxied client: its address is
    accepted, the balancer's refused."""
    running = await start_server(**proxied())
    wire = await through_balancer(running, v1(("127.0.0.2", 3000), ("127.0.0.1", 21)))
    await wire.greeting()
    assert (await wire.login(LOGIN, PASSWORD)).startswith(b"230")
    assert (await wire.command("PORT 127,0,0,2,200,10")).startswith(b"200")
    assert (await wire.command("EPRT |1|127.0.0.2|51210|")).startswith(b"200")
    assert (await wire.command("PORT 127,0,0,1,200,10")).startswith(b"501")


# data connections ------------------------------------------------------------------------
async def list_from(wire: Wire, source: str, header: bytes = b"") -> tuple[bytes, bytes]:
    """PASV, a data connection from ``source`` (starting with ``header``), LIST: the
    final reply and what came on the data connection."""
    host, port = await wire.pasv()
    data = await Wire.connect(host, port, source=source)
    if header:
        await data.send(header)
    assert (await wire.command("LIST")).startswith(b"150")
    received = await receive_all(data.stream)
    return await wire.reply(), received


async def control_for(running, client: str = "127.0.0.2") -> Wire:
    """A logged-in control connection through the balancer for ``client``."""
    wire = await through_balancer(running, v2((client, 4000), ("127.0.0.1", 21)))
    assert (await wire.greeting()).startswith(b"220")
    assert (await wire.login(LOGIN, PASSWORD)).startswith(b"230")
    return wire


@pytest.mark.parametrize(
    ("check", "allowed", "refused"),
    [
        ("strict", "127.0.0.2", BALANCER),
        ("transport", BALANCER, "127.0.0.2"),
        ("off", "127.0.0.3", None),
    ],
)
async def test_data_peer_check(start_server, caplog, check, allowed, refused):
    """strict: only the proxied client may open the data connection; transport: only the
    control connection's transport peer (the balancer); off: anyone."""
    running = await start_server(**proxied(data_peer_check=check, wait_future_timeout=0.5))
    (running.root / "file").write_bytes(b"x")
    wire = await control_for(running)
    final, listing = await list_from(wire, allowed)
    assert final.startswith(b"226")
    assert b"file" in listing
    if refused is not None:
        final, listing = await list_from(wire, refused)
        assert final.startswith(b"425")
        assert listing == b""
        assert f"dropped data connection from {refused}" in warnings_in(caplog)


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        (v1(("127.0.0.2", 7000), ("127.0.0.1", 20)), True),
        (v2(("127.0.0.2", 7000), ("127.0.0.1", 20)), True),
        (v2(("127.0.0.3", 7000), ("127.0.0.1", 20)), False),  # another client's data
        (b"", False),  # none within proxy_protocol_timeout
        (b"PROXY nonsense\r\n", False),
    ],
    ids=["v1", "v2", "other-source", "no-header", "malformed"],
)
async def test_proxy_headers_on_data_connections(start_server, caplog, header, accepted):
    """proxy_protocol_data: a data connection from the balancer starts with a header; its
    source is checked (strict) against the session's client; no header or a bad one drops
    the connection (425)."""
    running = await start_server(
        **proxied(proxy_protocol_data=True, proxy_protocol_timeout=0.3, wait_future_timeout=1)
    )
    (running.root / "file").write_bytes(b"x")
    wire = await control_for(running)
    final, listing = await list_from(wire, BALANCER, header)
    assert final.startswith(b"226" if accepted else b"425"), final
    assert (b"file" in listing) is accepted
    if not accepted:
        assert "dropped data connection from" in warnings_in(caplog)


@pytest.mark.parametrize(("mode", "accepted"), [("optional", True), ("required", False)])
async def test_untrusted_data_connection_with_proxy_data(start_server, mode, accepted):
    """proxy_protocol_data and a data connection from outside proxy_protocol_from (the
    client itself, not the balancer): taken without a header in optional mode, dropped in
    required mode."""
    running = await start_server(**proxied(mode, proxy_protocol_data=True, wait_future_timeout=0.5))
    (running.root / "file").write_bytes(b"x")
    wire = await control_for(running)
    final, _ = await list_from(wire, "127.0.0.2")
    assert final.startswith(b"226" if accepted else b"425"), final


# the address in 227 ------------------------------------------------------------------------
async def test_passive_address_dialled(start_server):
    """DIALLED announces the PROXY header's destination; a direct client (no header) gets
    the local address."""
    running = await start_server(**proxied("optional"), passive_address=DIALLED)
    wire = await through_balancer(running, v1(("127.0.0.2", 5000), ("192.0.2.10", 21)))
    await wire.greeting()
    assert (await wire.login(LOGIN, PASSWORD)).startswith(b"230")
    assert (await wire.pasv())[0] == "192.0.2.10"
    direct = await logged_in(running.host, running.port, source="127.0.0.2")
    assert (await direct.pasv())[0] == "127.0.0.1"


async def test_passive_address_host_name(start_server):
    """A host name is resolved at PASV; one that does not resolve gets 451."""
    running = await start_server(passive_address="localhost")
    wire = await logged_in(running.host, running.port)
    assert (await wire.pasv())[0] == "127.0.0.1"
    failing = await start_server(passive_address="no-such-host.invalid", callback_timeout=2)
    wire = await logged_in(failing.host, failing.port)
    assert (await wire.command("PASV")).startswith(b"451")


async def test_passive_address_map(start_server):
    """passive_address_map: the longest prefix matching the (proxied) client wins; a client
    in no network gets passive_address."""
    running = await start_server(
        **proxied(),
        passive_address="192.0.2.99",
        passive_address_map={"127.0.0.0/8": "192.0.2.1", "127.0.0.2/32": "192.0.2.2"},
    )
    expected = {"127.0.0.2": "192.0.2.2", "127.0.0.5": "192.0.2.1", "198.51.100.1": "192.0.2.99"}
    for client, announced in expected.items():
        wire = await control_for(running, client)
        assert (await wire.pasv())[0] == announced, client


async def test_data_header_comes_before_the_prot_p_handshake(start_server, tls):
    """Explicit FTPS with PROT P and proxy_protocol_data: the data connection's header is
    read in clear, then its TLS handshake; the listing arrives protected."""
    running = await start_server(
        **proxied(proxy_protocol_data=True), tls_context=tls.server_context
    )
    (running.root / "file").write_bytes(b"x")
    clear = await through_balancer(running, v2(("127.0.0.2", 4000), ("127.0.0.1", 21)))
    assert (await clear.greeting()).startswith(b"220")
    assert (await clear.command("AUTH TLS")).startswith(b"234")
    control = trio.SSLStream(clear.stream, tls.client_context, server_hostname="127.0.0.1")
    wire = Wire(control)  # type: ignore[arg-type]
    assert (await wire.login(LOGIN, PASSWORD)).startswith(b"230")
    assert (await wire.command("PBSZ 0")).startswith(b"200")
    assert (await wire.command("PROT P")).startswith(b"200")
    host, port = await wire.pasv()
    data = await Wire.connect(host, port)
    await data.send(v1(("127.0.0.2", 7000), ("127.0.0.1", 20)))
    protected = trio.SSLStream(data.stream, tls.client_context, server_hostname="127.0.0.1")
    with trio.fail_after(10):
        await protected.do_handshake()
    assert (await wire.command("LIST")).startswith(b"150")
    chunks = []
    with trio.fail_after(10):
        try:
            while chunk := await protected.receive_some(65536):
                chunks.append(chunk)
        except trio.BrokenResourceError:
            pass  # the server may close without close_notify's reply
    assert b"file" in b"".join(chunks)
    assert (await wire.reply()).startswith(b"226")
