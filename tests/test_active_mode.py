"""Active mode (PORT, EPRT) and the PASV address, over real loopback sockets with ftplib."""

from __future__ import annotations

import contextlib
import ftplib
import io
import random
import re
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import trio
from conftest import default_users, in_thread

from trio_ftp import Server
from trio_ftp.connection import Connection
from trio_ftp.errors import ProtocolError
from trio_ftp.handlers.datachannel import parse_eprt_argument, parse_port_argument

MiB = 1024 * 1024
FTP_ERRORS = (ftplib.error_reply, ftplib.error_temp, ftplib.error_perm, ftplib.error_proto)
PASV_227 = re.compile(r"227 Entering Passive Mode \((\d+,\d+,\d+,\d+),\d+,\d+\)\.")


def payload(size: int) -> bytes:
    return random.Random(size).randbytes(size)


def reply_of(call: Callable[[], object]) -> str:
    """The reply text of an ftplib call, whether ftplib returned it or raised it."""
    try:
        return str(call())
    except FTP_ERRORS as exc:
        return str(exc)


def port_argument(host: str, port: int) -> str:
    return f"{host.replace('.', ',')},{port >> 8},{port & 0xFF}"


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def active(ftp: ftplib.FTP) -> ftplib.FTP:
    ftp.set_pasv(False)
    return ftp


def retr(ftp: ftplib.FTP, name: str) -> bytes:
    out = io.BytesIO()
    ftp.retrbinary(f"RETR {name}", out.write, blocksize=65536)
    return out.getvalue()


def serve_one_retr(ftp: ftplib.FTP, listener: socket.socket, command: str) -> tuple[str, ...]:
    """Send ``command`` (PORT/EPRT to ``listener``), RETR a.txt, accept the server's data
    connection; return the replies, the data connection's source address and the data."""
    setup = ftp.sendcmd(command)
    preliminary = ftp.sendcmd("RETR a.txt")
    conn, source = listener.accept()
    with conn:
        conn.settimeout(10)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return setup, preliminary, ftp.voidresp(), str(source[0]), data.decode()


@contextlib.asynccontextmanager
async def serving(
    nursery: trio.Nursery, root: Path, host: str, **kwargs: object
) -> AsyncIterator[int]:
    """A ``Server`` listening on ``host`` (for addresses ``start_server`` does not use)."""
    server = Server(default_users(root), **kwargs)
    _, port = await nursery.start(server.serve, host, 0)
    try:
        yield port
    finally:
        with trio.fail_after(10):
            await server.close()


# parsing ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("127,0,0,1,4,1", ("127.0.0.1", 1025)),
        (" 10, 1, 2, 3, 255, 255 ", ("10.1.2.3", 65535)),
        ("192,0,2,1,0,80", ("192.0.2.1", 80)),
    ],
)
def test_parse_port(argument, expected):
    """PORT's six numbers become (host, port) = (h1.h2.h3.h4, p1 * 256 + p2)."""
    assert parse_port_argument(argument) == expected


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("|1|127.0.0.1|6000|", ("127.0.0.1", 6000)),
        ("!1!127.0.0.1!6000!", ("127.0.0.1", 6000)),
        ("|2|::1|6000|", ("::1", 6000)),
        ("#2#2001:DB8::1#65535#", ("2001:db8::1", 65535)),
    ],
)
def test_parse_eprt(argument, expected):
    """EPRT takes any delimiter from ! to ~; IPv6 addresses come back normalised."""
    assert parse_eprt_argument(argument) == expected


@pytest.mark.parametrize(
    ("argument", "code"),
    [
        ("|3|127.0.0.1|6000|", "522"),
        ("|1|::1|6000|", "501"),
        ("|2|127.0.0.1|6000|", "501"),
        ("|1|127.0.0.1|0|", "501"),
        ("|1|127.0.0.1|65536|", "501"),
        ("|1|127.0.0.1|6000", "501"),
        ("|x|127.0.0.1|6000|", "501"),
        (" 1 127.0.0.1 6000 ", "501"),
        ("1|127.0.0.1|6000|", "501"),
    ],
)
def test_parse_eprt_errors(argument, code):
    """A protocol other than 1 or 2 is 522; anything else malformed is 501."""
    with pytest.raises(ProtocolError) as info:
        parse_eprt_argument(argument)
    assert info.value.code == code


# transfers -------------------------------------------------------------------------------------
async def test_port_transfers_byte_exact(start_server, root):
    """ftplib in active mode (PORT) moves multi-MB RETR/STOR byte-exact, and LIST works."""
    down, up = payload(5 * MiB), payload(3 * MiB + 7)
    (root / "down.bin").write_bytes(down)
    # No data port at all: PASV would fail, so every transfer here must be active.
    running = await start_server(data_ports=[])

    def client() -> tuple[bytes, str, list[str], str]:
        with active(running.ftp()) as ftp:
            ftp.voidcmd("TYPE I")
            received = retr(ftp, "down.bin")
            stored = ftp.storbinary("STOR up.bin", io.BytesIO(up), blocksize=65536)
            lines: list[str] = []
            ftp.retrlines("LIST", lines.append)
            return received, stored, lines, reply_of(lambda: ftp.sendcmd("PASV"))

    received, stored, lines, pasv = await in_thread(client)
    assert received == down
    assert stored == "226 transfer complete"
    assert (root / "up.bin").read_bytes() == up
    assert sorted(line.split()[-1] for line in lines) == ["down.bin", "up.bin"]
    assert pasv == "425 no free data port, try again later"


async def test_eprt_ipv4_from_control_address(nursery, root):
    """EPRT |1| works with a test listener, and the data connection comes from the control
    connection's local address (127.0.0.2 here), not the kernel's default source."""
    (root / "a.txt").write_bytes(b"hello\n")
    async with serving(nursery, root, "0.0.0.0") as port:

        def client() -> tuple[str, ...]:
            with ftplib.FTP(timeout=10) as ftp, socket.create_server(("127.0.0.1", 0)) as lsn:
                ftp.connect("127.0.0.2", port)
                ftp.login("user", "secret")
                lsn.settimeout(10)
                data_port = lsn.getsockname()[1]
                return serve_one_retr(ftp, lsn, f"EPRT |1|127.0.0.1|{data_port}|")

        setup, preliminary, done, source, data = await in_thread(client)
    assert setup == "200 EPRT command successful"
    assert preliminary == "150 opening data connection for RETR /a.txt"
    assert done == "226 transfer complete"
    assert source == "127.0.0.2"
    assert data == "hello\r\n"  # TYPE A (the default) sends CRLF


async def test_eprt_ipv6(nursery, root):
    """Over IPv6 (::1), ftplib's active mode sends EPRT |2| and RETR/LIST work."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6 support")
    content = payload(MiB)
    (root / "big.bin").write_bytes(content)
    server = Server(default_users(root))
    try:
        _, port = await nursery.start(server.serve, "::1", 0)
    except OSError as exc:
        pytest.skip(f"can't bind ::1: {exc}")

    def client() -> tuple[str, bytes, list[str]]:
        with ftplib.FTP(timeout=10) as ftp:
            ftp.connect("::1", port)
            ftp.login("user", "secret")
            active(ftp)
            with socket.create_server(("::1", 0), family=socket.AF_INET6) as lsn:
                eprt = ftp.sendcmd(f"EPRT |2|::1|{lsn.getsockname()[1]}|")
            ftp.voidcmd("TYPE I")
            return eprt, retr(ftp, "big.bin"), ftp.nlst()

    try:
        eprt, received, names = await in_thread(client)
    finally:
        with trio.fail_after(10):
            await server.close()
    assert eprt == "200 EPRT command successful"
    assert received == content
    assert names == ["big.bin"]


async def test_port_over_tls(start_server, root, tls):
    """With PROT P, the server connects and is the TLS server side of the data connection."""
    content = payload(2 * MiB)
    (root / "secret.bin").write_bytes(content)
    running = await start_server(tls_context=tls.server_context)

    def client() -> tuple[bytes, str]:
        with ftplib.FTP_TLS(context=tls.client_context, timeout=10) as ftp:
            ftp.connect(running.host, running.port)
            ftp.login("user", "secret")
            ftp.prot_p()
            active(ftp)
            ftp.voidcmd("TYPE I")
            return retr(ftp, "secret.bin"), ftp.sendcmd("NOOP")

    received, noop = await in_thread(client)
    assert received == content
    assert noop == "200 ok"


# bounce protection and configuration -----------------------------------------------------------
async def test_foreign_address(start_server, root):
    """PORT/EPRT naming 127.0.0.2 (the peer is 127.0.0.1) is 501 unless permitted; when
    permitted the server really connects there."""
    (root / "a.txt").write_bytes(b"hello\n")
    strict = await start_server()
    lenient = await start_server(permit_foreign_addresses=True)

    def client() -> tuple[object, ...]:
        with strict.ftp() as ftp:
            port = reply_of(lambda: ftp.sendcmd("PORT 127,0,0,2,39,16"))
            eprt = reply_of(lambda: ftp.sendcmd("EPRT |1|127.0.0.2|10000|"))
        with lenient.ftp() as ftp, socket.create_server(("127.0.0.2", 0)) as lsn:
            lsn.settimeout(10)
            command = f"PORT {port_argument('127.0.0.2', lsn.getsockname()[1])}"
            return port, eprt, *serve_one_retr(ftp, lsn, command)

    port, eprt, setup, preliminary, done, source, data = await in_thread(client)
    assert port == "501 foreign address refused (FTP bounce protection)"
    assert eprt == "501 foreign address refused (FTP bounce protection)"
    assert setup == "200 PORT command successful"
    assert preliminary == "150 opening data connection for RETR /a.txt"
    assert done == "226 transfer complete"
    assert source == "127.0.0.1"
    assert data == "hello\r\n"  # TYPE A (the default) sends CRLF


async def test_privileged_port(start_server):
    """A port below 1024 is 501 unless permit_privileged_ports."""
    strict = await start_server()
    lenient = await start_server(permit_privileged_ports=True)

    def client() -> list[str]:
        with strict.ftp() as a, lenient.ftp() as b:
            return [
                reply_of(lambda: a.sendcmd("PORT 127,0,0,1,0,80")),
                reply_of(lambda: a.sendcmd("EPRT |1|127.0.0.1|1023|")),
                reply_of(lambda: b.sendcmd("PORT 127,0,0,1,0,80")),
            ]

    assert await in_thread(client) == [
        "501 privileged port 80 refused (use a port >= 1024)",
        "501 privileged port 1023 refused (use a port >= 1024)",
        "200 PORT command successful",
    ]


async def test_active_mode_disabled(start_server):
    """With active_mode=False, PORT and EPRT are refused with 504; PASV still works."""
    running = await start_server(active_mode=False)

    def client() -> list[str]:
        with running.ftp() as ftp:
            return [
                reply_of(lambda: ftp.sendcmd("PORT 127,0,0,1,39,16")),
                reply_of(lambda: ftp.sendcmd("EPRT |1|127.0.0.1|10000|")),
                ftp.sendcmd("PASV")[:3],
            ]

    assert await in_thread(client) == [
        "504 PORT refused: active mode disabled (use EPSV or PASV)",
        "504 EPRT refused: active mode disabled (use EPSV or PASV)",
        "227",
    ]


async def test_bad_arguments(start_server):
    """Malformed PORT/EPRT is 501, EPRT |3| is 522 (1,2), and both need a login (530)."""
    running = await start_server()
    commands = [
        "PORT 1,2,3",
        "PORT 256,0,0,1,1,1",
        "PORT a,b,c,d,e,f",
        "PORT",
        "EPRT |1|300.0.0.1|6000|",
        "EPRT |3|127.0.0.1|6000|",
    ]

    def client() -> tuple[list[str], str]:
        with running.ftp() as ftp, running.ftp(login=None) as anonymous:
            return (
                [reply_of(lambda c=c: ftp.sendcmd(c)) for c in commands],
                reply_of(lambda: anonymous.sendcmd("PORT 127,0,0,1,39,16")),
            )

    replies, not_logged = await in_thread(client)
    syntax = "501 PORT needs h1,h2,h3,h4,p1,p2: six numbers from 0 to 255"
    assert replies == [
        syntax,
        syntax,
        syntax,
        "501 syntax error: PORT needs an argument",
        "501 EPRT: not an IPv4 address",
        "522 network protocol not supported, use (1,2)",
    ]
    assert not_logged == "530 bad sequence of commands (not logged in)"


async def test_epsv_all_refuses_active(start_server):
    """After EPSV ALL, PORT and EPRT are 503 (RFC 2428 §4)."""
    running = await start_server()

    def client() -> list[str]:
        with running.ftp() as ftp:
            return [
                ftp.sendcmd("EPSV ALL"),
                reply_of(lambda: ftp.sendcmd("PORT 127,0,0,1,39,16")),
                reply_of(lambda: ftp.sendcmd("EPRT |1|127.0.0.1|10000|")),
            ]

    assert await in_thread(client) == [
        "200 EPSV ALL ok: only EPSV from now on",
        "503 PORT not allowed after EPSV ALL",
        "503 EPRT not allowed after EPSV ALL",
    ]


# channel life cycle ----------------------------------------------------------------------------
async def test_refused_target_is_425(start_server, root):
    """A PORT target that refuses connections gives 150 then 425; the session goes on."""
    (root / "a.txt").write_bytes(b"hello\n")
    running = await start_server(wait_future_timeout=2)

    def client() -> list[str]:
        with running.ftp() as ftp:
            replies = [
                ftp.sendcmd(f"PORT {port_argument('127.0.0.1', closed_port())}"),
                ftp.sendcmd("RETR a.txt"),
                reply_of(ftp.getresp),
                ftp.sendcmd("NOOP"),
            ]
            return [*replies, retr(ftp, "a.txt").decode()]

    assert await in_thread(client) == [
        "200 PORT command successful",
        "150 opening data connection for RETR /a.txt",
        "425 can't open data connection: Connection refused",
        "200 ok",
        "hello\n",  # after TYPE I: bytes as they are
    ]


async def test_channel_used_once_and_replaced(start_server, root):
    """An active channel serves one transfer; PASV replaces a PORT, PORT closes a PASV port."""
    (root / "a.txt").write_bytes(b"hello\n")
    running = await start_server()

    def client() -> list[object]:
        with running.ftp() as ftp, socket.create_server(("127.0.0.1", 0)) as lsn:
            lsn.settimeout(10)
            command = f"PORT {port_argument('127.0.0.1', lsn.getsockname()[1])}"
            *_, data = serve_one_retr(ftp, lsn, command)
            again = reply_of(lambda: ftp.sendcmd("RETR a.txt"))
            # PORT, then PASV: the transfer goes through the passive port.
            ftp.sendcmd(command)
            passive = retr(ftp, "a.txt").decode()  # ftplib sends PASV first
            lsn.setblocking(False)
            with pytest.raises(BlockingIOError):
                lsn.accept()
            # PASV, then PORT: the passive port is closed at once.
            host, pasv_port = ftplib.parse227(ftp.sendcmd("PASV"))
            ftp.sendcmd(command)
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((host, pasv_port), timeout=10).close()
            return [data, again, passive]

    assert await in_thread(client) == [
        "hello\r\n",  # TYPE A (the default) sends CRLF
        "425 no data connection: use PASV, EPSV, PORT or EPRT first",
        "hello\n",  # after TYPE I: bytes as they are
    ]


async def test_abort_active_transfer(start_server, root):
    """ABOR during a big active RETR gives 426 then 226; the session goes on."""
    size = 20 * MiB
    (root / "big").write_bytes(payload(size))
    running = await start_server(block_size=8192)

    def client() -> tuple[str, str, int, str]:
        with active(running.ftp()) as ftp:
            ftp.voidcmd("TYPE I")
            with ftp.transfercmd("RETR big") as data:
                received = len(data.recv(65536))
                first = ftp.abort()
                second = ftp.getmultiline()
                with contextlib.suppress(ConnectionResetError):
                    while chunk := data.recv(65536):
                        received += len(chunk)
            return first, second, received, ftp.sendcmd("NOOP")

    first, second, received, noop = await in_thread(client)
    assert first == "426 transfer aborted"
    assert second == "226 abort successful"
    assert 0 < received < size
    assert noop == "200 ok"


# the PASV address ------------------------------------------------------------------------------
async def test_passive_address(start_server):
    """passive_address (a string, or a callable given the connection) is what 227 announces."""
    seen: list[Connection] = []

    def choose(connection: Connection) -> str:
        seen.append(connection)
        return "10.9.8.7"

    fixed = await start_server(passive_address="10.1.2.3")
    chosen = await start_server(passive_address=choose)
    alias = await start_server(ipv4_pasv_forced_response_address="10.4.5.6")
    unspecified = await start_server(passive_address="0.0.0.0")

    def client() -> list[str]:
        hosts = []
        for running in (fixed, chosen, alias, unspecified):
            with running.ftp() as ftp:
                match = PASV_227.fullmatch(ftp.sendcmd("PASV"))
                assert match is not None
                hosts.append(match.group(1))
        return hosts

    assert await in_thread(client) == ["10,1,2,3", "10,9,8,7", "10,4,5,6", "127,0,0,1"]
    assert len(seen) == 1
    assert seen[0].client_host == "127.0.0.1"


async def test_wildcard_bind_never_announces_zeros(nursery, root):
    """A server bound to 0.0.0.0 announces the address the client reached (127.0.0.1)."""
    async with serving(nursery, root, "0.0.0.0") as port:

        def client() -> str:
            with ftplib.FTP(timeout=10) as ftp:
                ftp.connect("127.0.0.1", port)
                ftp.login("user", "secret")
                return ftp.sendcmd("PASV")

        reply = await in_thread(client)
    match = PASV_227.fullmatch(reply)
    assert match is not None
    assert match.group(1) == "127,0,0,1"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"passive_address": "10.0.0.1", "ipv4_pasv_forced_response_address": "10.0.0.2"},
            "not both",
        ),
        ({"passive_address": "example..com"}, "IPv4 address or a host name"),
        ({"passive_address": "::1"}, "IPv4 address or a host name"),
        ({"ipv4_pasv_forced_response_address": "10.0.0.256"}, "IPv4 address or a host name"),
        ({"passive_address": "dialled"}, "trio_ftp.DIALLED"),
        ({"passive_address": 42}, "a str, trio_ftp.DIALLED or a callable"),
    ],
)
def test_passive_address_validation(kwargs, message):
    """A bad passive_address, or both it and its alias, fail at construction (ValueError)."""
    with pytest.raises(ValueError, match=message):
        Server(**kwargs)
