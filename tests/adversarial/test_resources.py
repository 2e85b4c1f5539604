"""Bounded resources: whatever one client does, a session holds a bounded amount of memory,
ports, time and login attempts, the server a bounded number of sessions, and everything a
session held is given back when it ends.

Every test runs a real server on loopback and talks to it through raw sockets (``Wire``).
"""

from __future__ import annotations

import os
import re
import socket

import pytest
import trio
import trio.testing
from conftest import LOGIN, PASSWORD, random_bytes
from wire import (
    Wire,
    back_to,
    baseline,
    data_connect,
    logged_in,
    quit_and_close,
    receive_all,
    reset_socket,
    start_server,  # noqa: F401 (the fixture: wraps conftest's)
    track,
)

KiB = 1024
MiB = 1024 * KiB
#: Most bytes the command decoders may hold for one session: a few lines' worth, far below
#: the 100 KiB a hostile client sends.
BUFFER_BOUND = 16 * KiB
_EPSV_PORT = re.compile(rb"\(\|\|\|(\d+)\|\)")
_PASV_PORT = re.compile(rb"\(\d+,\d+,\d+,\d+,(\d+),(\d+)\)")


# helpers ---------------------------------------------------------------------------------------
async def session(host: str, port: int, *, source: str | None = None) -> Wire:
    """A control connection whose ``220`` greeting has been read."""
    wire = await Wire.connect(host, port, source=source)
    greeting = await wire.greeting()
    assert greeting.startswith(b"220"), greeting
    return wire


async def reply_within(wire: Wire, seconds: float) -> bytes | None:
    """The next reply, or None if none came within ``seconds``."""
    with trio.move_on_after(seconds):
        return await wire.reply()
    return None


async def reply_or_gone(wire: Wire) -> bytes:
    """The next reply; ``b""`` if the server closed (EOF or reset) instead."""
    try:
        return await wire.reply()
    except trio.BrokenResourceError:
        return b""


async def send_or_gone(wire: Wire, data: bytes) -> bool:
    """Send; False if the server has already closed the connection."""
    try:
        await wire.send(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return False
    return True


async def reply_or_gone_after(wire: Wire, line: str) -> bytes:
    """Send ``line``; its reply, or ``b""`` if the server closed instead."""
    if not await send_or_gone(wire, line.encode() + b"\r\n"):
        return b""
    return await reply_or_gone(wire)


def listening_ports() -> set[int]:
    """TCP ports this process listens on (its sockets with SO_ACCEPTCONN set).

    Asked of each descriptor (through a duplicate) rather than read from /proc/net/tcp, which
    lists every socket of the machine's network namespace and costs milliseconds a call.
    """
    ports = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:["):
                continue
            with socket.socket(fileno=os.dup(int(fd))) as sock:
                if (
                    sock.family in (socket.AF_INET, socket.AF_INET6)
                    and sock.type == socket.SOCK_STREAM
                    and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                ):
                    ports.add(sock.getsockname()[1])
        except OSError:  # closed meanwhile
            continue
    return ports


def passive_port(reply: bytes) -> int:
    """The port a ``227`` or ``229`` reply announces."""
    if match := _EPSV_PORT.search(reply):
        return int(match.group(1))
    match = _PASV_PORT.search(reply)
    assert match is not None, reply
    return int(match.group(1)) * 256 + int(match.group(2))


def decoder_bytes(server: object) -> int:
    """Bytes held by the command decoders of every live session of ``server``."""
    return sum(
        connection.control.decoder.buffered
        for connection in list(server.connections.values())  # type: ignore[attr-defined]
    )


async def connect_from(source: str, address: tuple[str, int]) -> trio.SocketStream:
    """A TCP connection to ``address`` from the local address ``source``."""
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    try:
        with trio.fail_after(5):
            await sock.bind((source, 0))
            await sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return track(trio.SocketStream(sock))


# line length ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "line",
    [
        pytest.param(b"NOOP " + b"a" * (100 * KiB), id="100KiB-no-terminator"),
        pytest.param(b"NOOP " + b"a" * (100 * KiB) + b"\r\n", id="100KiB-terminated"),
        pytest.param(b"USER " + b"b" * (BUFFER_BOUND + 100) + b"\r\n", id="16KiB-terminated"),
    ],
)
async def test_overlong_line_is_refused_with_bounded_buffer(start_server, line):
    """An overlong command line gets a 5xx reply or a close, never a growing buffer."""
    running = await start_server()
    base = await baseline()
    wire = await session(running.host, running.port)
    chunk = 4 * KiB
    for start in range(0, len(line), chunk):
        if not await send_or_gone(wire, line[start : start + chunk]):
            break
        await trio.testing.wait_all_tasks_blocked(0.01)
        held = decoder_bytes(running.server)
        assert held <= BUFFER_BOUND, f"decoders hold {held} bytes"
    reply = await reply_or_gone(wire)
    assert reply == b"" or reply[:1] == b"5", reply
    if reply and not await wire.closed(0.5):
        # A 5xx without a close: once the long line ends, the session goes on.
        if not line.endswith(b"\r\n"):
            await wire.send(b"\r\n")
        noop = await wire.command("NOOP")
        assert noop.startswith(b"200"), noop
    await wire.aclose()
    other = await logged_in(running.host, running.port)
    assert (await other.command("NOOP")).startswith(b"200")
    assert decoder_bytes(running.server) <= BUFFER_BOUND
    await quit_and_close(other)
    assert await back_to(base) == base


# passive listeners --------------------------------------------------------------------------------
@pytest.mark.parametrize("verb", ["PASV", "EPSV"])
async def test_one_passive_listener_per_session(start_server, root, verb):
    """300 PASV (or EPSV) in a row leave one listening data port, and it still works."""
    (root / "small.bin").write_bytes(random_bytes(10_000, seed=3))
    running = await start_server()
    base = await baseline()
    before = listening_ports()
    assert running.port in before
    wire = await logged_in(running.host, running.port)
    port = 0
    for _ in range(300):
        reply = await wire.command(verb)
        assert reply[:3] in (b"227", b"229"), reply
        port = passive_port(reply)
        extra = listening_ports() - before
        assert extra == {port}, f"listening after {verb}: {sorted(extra)}"
    data = await data_connect((running.host, port))
    assert (await wire.command("TYPE I")).startswith(b"200")
    assert (await wire.command("RETR small.bin")).startswith(b"150")
    assert await receive_all(data) == random_bytes(10_000, seed=3)
    await data.aclose()
    assert (await wire.reply()).startswith(b"226")
    assert listening_ports() == before
    await quit_and_close(wire)
    assert await back_to(base) == base


# idle timeout -------------------------------------------------------------------------------------
#: idle_timeout of the test below, and the pause between the bytes it trickles.
IDLE, TRICKLE = 0.5, 0.1


@pytest.mark.parametrize(
    "trickle",
    [
        pytest.param(b"NOOP" + b" " * 40, id="never-completes"),
        pytest.param(b"NOOP" + b" " * 11 + b"\r\n", id="completes-after-the-timeout"),
    ],
)
@pytest.mark.parametrize("secure", [False, True], ids=["plain", "tls"])
async def test_idle_timeout_counts_from_last_complete_command(start_server, tls, trickle, secure):
    """Bytes that complete no line do not keep a session alive: 421 idle_timeout after a command."""
    running = await start_server(idle_timeout=IDLE, tls_context=tls.server_context)
    base = await baseline()
    wire = await session(running.host, running.port)
    if secure:  # each trickled byte is then a whole TLS record
        assert (await wire.command("AUTH TLS")).startswith(b"234")
        stream = trio.SSLStream(wire.stream, tls.client_context, server_hostname="127.0.0.1")
        with trio.fail_after(5):
            await stream.do_handshake()
        wire.stream = stream  # type: ignore[assignment]
    assert (await wire.login(LOGIN, PASSWORD)).startswith(b"230")
    last_command = trio.current_time()

    async def dribble() -> None:
        for byte in trickle:
            await trio.sleep(TRICKLE)
            if not await send_or_gone(wire, bytes([byte])):
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(dribble)
        reply = await reply_within(wire, IDLE + 2)
        answered = trio.current_time() - last_command
        nursery.cancel_scope.cancel()
    assert reply is not None, "no reply in time: the trickle kept the idle session alive"
    assert reply.startswith(b"421"), reply
    assert IDLE - 0.2 <= answered <= IDLE + 1, f"421 came {answered:.2f} s after the last command"
    assert await wire.closed(2)
    await trio.aclose_forcefully(wire.stream)
    assert await back_to(base) == base


# stalled data connections ---------------------------------------------------------------------
#: Binary transfers of plain data connections go through the kernel (sendfile/splice in a
#: worker thread); ASCII ones through Python: each guarantee is checked on both paths.
TYPES = pytest.mark.parametrize("kind", ["I", "A"], ids=["binary-kernel-path", "ascii-python-path"])


@TYPES
async def test_download_to_a_peer_that_never_reads_times_out(
    start_server, root, kind, stall_timeout
):
    """A data connection that stops reading costs socket_timeout: 426, the session goes on."""
    (root / "huge.bin").write_bytes(b"")
    os.truncate(root / "huge.bin", 64 * MiB)  # sparse: costs no disk
    stall = stall_timeout
    running = await start_server(socket_timeout=stall)
    base = await baseline()
    wire = await logged_in(running.host, running.port)
    assert (await wire.command(f"TYPE {kind}")).startswith(b"200")
    data = await data_connect(await wire.pasv())
    assert (await wire.command("RETR huge.bin")).startswith(b"150")
    started = trio.current_time()
    reply = await reply_within(wire, stall + 5)
    assert reply is not None, f"no reply within {stall + 5} s to a download nobody reads"
    assert reply.startswith(b"426"), reply
    assert trio.current_time() - started < stall + 4
    assert (await wire.command("NOOP")).startswith(b"200")
    reset_socket(data.socket)
    await quit_and_close(wire)
    assert await back_to(base) == base


@TYPES
async def test_upload_that_sends_nothing_times_out(start_server, root, kind, stall_timeout):
    """A data connection that never sends costs socket_timeout: 426, the session goes on."""
    stall = stall_timeout
    running = await start_server(socket_timeout=stall)
    base = await baseline()
    wire = await logged_in(running.host, running.port)
    assert (await wire.command(f"TYPE {kind}")).startswith(b"200")
    data = await data_connect(await wire.pasv())
    assert (await wire.command("STOR silent.bin")).startswith(b"150")
    started = trio.current_time()
    reply = await reply_within(wire, stall + 4)
    assert reply is not None, f"no reply within {stall + 4} s to an upload that sends nothing"
    assert reply.startswith(b"426"), reply
    assert trio.current_time() - started < stall + 2
    assert (await wire.command("NOOP")).startswith(b"200")
    await data.aclose()
    await quit_and_close(wire)
    assert await back_to(base) == base


# failed logins --------------------------------------------------------------------------------
async def test_failed_logins_are_delayed_and_capped_per_session(start_server):
    """Every failed PASS waits login_failure_delay (that session only); the 3rd closes (421)."""
    running = await start_server(login_failure_delay=0.3, maximum_login_attempts=3)
    base = await baseline()
    bystander = await logged_in(running.host, running.port)
    wire = await session(running.host, running.port)
    attempts = [(LOGIN, "wrong"), ("nobody", "whatever"), (LOGIN, "wrong again")]
    for number, (login, password) in enumerate(attempts, 1):
        assert (await wire.command(f"USER {login}")).startswith(b"331")
        started = trio.current_time()
        await wire.send(f"PASS {password}\r\n")
        # Meanwhile another session is answered at once.
        noop_started = trio.current_time()
        assert (await bystander.command("NOOP")).startswith(b"200")
        assert trio.current_time() - noop_started < 0.2
        reply = await wire.reply()
        waited = trio.current_time() - started
        assert waited >= 0.3, f"failure {number} answered after {waited:.3f} s"
        if number < 3:
            assert reply.startswith(b"530"), reply
        else:
            assert reply.startswith(b"421"), reply
    assert await wire.closed(2)
    await wire.aclose()
    await quit_and_close(bystander)
    assert await back_to(base) == base


async def test_failed_logins_are_capped_per_address_across_sessions(start_server):
    """N failed PASS from an address lock it out (421) for the window; others log in."""
    running = await start_server(
        login_failure_delay=0,
        maximum_login_attempts=None,
        maximum_login_failures_per_ip=3,
        login_failure_window=0.5,
    )
    base = await baseline()
    host, port = running.host, running.port
    already_open = await session(host, port)
    for _ in range(3):  # one failure in each of three sessions
        wire = await session(host, port)
        assert (await wire.command(f"USER {LOGIN}")).startswith(b"331")
        reply = await reply_or_gone_after(wire, "PASS wrong")
        assert reply[:3] in (b"530", b"421"), reply
        await wire.aclose()

    refused = await Wire.connect(host, port)
    greeting = await reply_or_gone(refused)
    assert greeting.startswith(b"421"), greeting
    assert await refused.closed(2)
    await refused.aclose()

    # An already open session from the address may not log in either, right password or not.
    reply = await reply_or_gone_after(already_open, f"USER {LOGIN}")
    if reply.startswith(b"331"):
        reply = await reply_or_gone_after(already_open, f"PASS {PASSWORD}")
    assert reply.startswith(b"421"), reply
    assert await already_open.closed(2)
    await already_open.aclose()
    last_attempt = trio.current_time()

    other = await logged_in(host, port, source="127.0.0.2")
    await quit_and_close(other)

    await trio.sleep_until(last_attempt + 0.7)  # the window has passed
    again = await logged_in(host, port)
    await quit_and_close(again)
    assert await back_to(base) == base


# connection caps --------------------------------------------------------------------------------
async def test_connections_capped_globally(start_server):
    """maximum_connections=3: the 4th connection, from any address, gets 421 and a close."""
    running = await start_server(maximum_connections=3)
    base = await baseline()
    host, port = running.host, running.port
    held = [await session(host, port, source=source) for source in ("127.0.0.1",) * 2]
    held.append(await session(host, port, source="127.0.0.2"))
    for source in ("127.0.0.1", "127.0.0.2"):
        extra = await Wire.connect(host, port, source=source)
        assert (await reply_or_gone(extra)).startswith(b"421")
        assert await extra.closed(2)
        await extra.aclose()
    await quit_and_close(held.pop())
    with trio.fail_after(3):  # the slot comes back once that session has ended
        while True:
            late = await Wire.connect(host, port)
            greeting = await reply_or_gone(late)
            if greeting.startswith(b"220"):
                break
            await late.aclose()
            await trio.sleep(0.05)
    held.append(late)
    assert (await held[-1].login(LOGIN, PASSWORD)).startswith(b"230")
    for wire in held:
        await quit_and_close(wire)
    assert await back_to(base) == base


async def test_connections_capped_per_address(start_server):
    """maximum_connections_per_ip=2: a 3rd from 127.0.0.1 gets 421; 127.0.0.2 gets 220."""
    running = await start_server(maximum_connections_per_ip=2)
    base = await baseline()
    host, port = running.host, running.port
    first = await session(host, port)
    second = await session(host, port)
    third = await Wire.connect(host, port)
    assert (await reply_or_gone(third)).startswith(b"421")
    assert await third.closed(2)
    await third.aclose()
    elsewhere = await logged_in(host, port, source="127.0.0.2")
    for wire in (first, second, elsewhere):
        await quit_and_close(wire)
    assert await back_to(base) == base


# back to baseline -------------------------------------------------------------------------------
async def test_reset_in_the_middle_of_a_download_frees_everything(start_server, root):
    """Resetting data and control connections mid-RETR frees every descriptor and task."""
    (root / "big.bin").write_bytes(random_bytes(8 * MiB, seed=5))
    running = await start_server()
    base = await baseline()
    wire = await logged_in(running.host, running.port)
    assert (await wire.command("TYPE I")).startswith(b"200")
    data = await data_connect(await wire.pasv())
    assert (await wire.command("RETR big.bin")).startswith(b"150")
    with trio.fail_after(5):
        first = await data.receive_some(64 * KiB)
    assert first == random_bytes(8 * MiB, seed=5)[: len(first)]
    reset_socket(data.socket)
    wire.reset()
    assert await back_to(base) == base
    after = await logged_in(running.host, running.port)
    await quit_and_close(after)
    assert await back_to(base) == base


async def test_quit_in_the_middle_of_an_upload_frees_everything(start_server, root):
    """QUIT mid-STOR: the upload finishes (226), then 221, and every resource is freed."""
    running = await start_server()
    base = await baseline()
    wire = await logged_in(running.host, running.port)
    assert (await wire.command("TYPE I")).startswith(b"200")
    data = await data_connect(await wire.pasv())
    assert (await wire.command("STOR up.bin")).startswith(b"150")
    payload = random_bytes(MiB, seed=6)
    await data.send_all(payload[: MiB // 2])
    await wire.send("QUIT\r\n")
    await data.send_all(payload[MiB // 2 :])
    await data.aclose()
    assert (await wire.reply()).startswith(b"226")
    assert (await wire.reply()).startswith(b"221")
    assert await wire.closed(5)
    await wire.aclose()
    assert (root / "up.bin").read_bytes() == payload
    assert await back_to(base) == base


async def test_connect_close_storm_frees_everything(start_server):
    """500 connect/close cycles (half closed with a reset) leave nothing behind."""
    running = await start_server()
    base = await baseline()
    for number in range(500):
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
        try:
            with trio.fail_after(5):
                await sock.connect((running.host, running.port))
        except BaseException:
            sock.close()
            raise
        if number % 2:
            reset_socket(sock)
        else:
            sock.close()
    assert await back_to(base, within=10) == base
    wire = await logged_in(running.host, running.port)
    await quit_and_close(wire)
    assert await back_to(base) == base


# data-port theft --------------------------------------------------------------------------------
async def test_foreign_host_cannot_take_a_passive_data_connection(start_server, root):
    """A connection to the passive port from another host gets nothing; the client gets all."""
    payload = b"PRIVATE:" + random_bytes(200 * KiB, seed=7)
    (root / "private.bin").write_bytes(payload)
    running = await start_server(wait_future_timeout=5)
    base = await baseline()
    wire = await logged_in(running.host, running.port)
    assert (await wire.command("TYPE I")).startswith(b"200")
    address = await wire.pasv()
    assert (await wire.command("RETR private.bin")).startswith(b"150")
    thief = await connect_from("127.0.0.2", address)
    stolen = b""
    with trio.move_on_after(2):
        try:
            while chunk := await thief.receive_some(65536):
                stolen += chunk
        except trio.BrokenResourceError:
            pass
    assert stolen == b"", f"a foreign host got {len(stolen)} bytes"
    await thief.aclose()
    data = await data_connect(address)
    assert await receive_all(data) == payload
    await data.aclose()
    assert (await wire.reply()).startswith(b"226")
    await quit_and_close(wire)
    assert await back_to(base) == base
