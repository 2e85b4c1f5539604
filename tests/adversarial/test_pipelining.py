"""A session keeps listening while a transfer runs (RFC 959 §5.4): ABOR, STAT and NOOP are
answered at once even behind queued commands, the queued ones run in order after the
transfer, and a client that queues without limit is cut off, alone.

Every test runs a real server on loopback and talks to it through raw sockets (``Wire``).
A download whose data connection the client does not read cannot end (the file is far
bigger than the socket buffers), so "while the transfer runs" needs no sleep and no timing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio
from wire import (
    Wire,
    back_to,
    baseline,
    data_connect,
    logged_in,
    quit_and_close,
    receive_all,
    start_server,  # noqa: F401 (the fixture: wraps conftest's)
)

from trio_ftp.fastpath import CALL_BUDGET, POLL_INTERVAL, send_file
from trio_ftp.session import MAX_QUEUED_COMMANDS

MiB = 1024 * 1024
#: Far more than loopback socket buffers hold while nobody reads (a sparse file: no disk).
SIZE = 16 * MiB
_PROGRESS = re.compile(rb"(\d+) bytes so far")
_PASV = re.compile(rb"227 .*\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)")
#: TYPE I on a plain connection goes through the kernel (sendfile), TYPE A through Python.
PATHS = pytest.mark.parametrize("kind", ["I", "A"], ids=["kernel-path", "python-path"])


def big_file(root: Path) -> None:
    with open(root / "big.bin", "wb") as file:
        file.truncate(SIZE)


async def stalled_download(wire: Wire) -> trio.SocketStream:
    """PASV, ``RETR big.bin`` and its data connection, which the caller leaves unread for
    now: the transfer runs, blocked on us."""
    address = await wire.pasv()
    assert (await wire.command("RETR big.bin")).startswith(b"150")
    return await data_connect(address)


def passive_address(reply: bytes) -> tuple[str, int]:
    """The address a ``227`` reply announces."""
    match = _PASV.match(reply)
    assert match is not None, reply
    numbers = [int(group) for group in match.groups()]
    return ".".join(map(str, numbers[:4])), numbers[4] * 256 + numbers[5]


async def replies(wire: Wire, count: int) -> list[bytes]:
    """The codes of the next ``count`` replies."""
    return [(await wire.reply())[:3] for _ in range(count)]


@PATHS
async def test_noop_is_answered_before_a_queued_pwd(start_server, root, kind):
    """PWD then NOOP sent during a RETR: NOOP is answered at once, PWD after the 226."""
    big_file(root)
    running = await start_server()
    wire = await logged_in(running.host, running.port, kind=kind)
    data = await stalled_download(wire)
    await wire.send("PWD\r\nNOOP\r\n")
    assert (await wire.reply()).startswith(b"200")  # the transfer can't have ended yet
    assert len(await receive_all(data)) == SIZE
    assert await replies(wire, 2) == [b"226", b"257"]
    await data.aclose()
    await quit_and_close(wire)


@PATHS
async def test_abor_is_answered_before_queued_commands(start_server, root, kind):
    """PWD, SYST, then ABOR during a RETR: ABOR aborts at once (426, 226), then PWD and SYST
    are answered in order, and the session goes on."""
    big_file(root)
    running = await start_server()
    wire = await logged_in(running.host, running.port, kind=kind)
    data = await stalled_download(wire)
    await wire.send("PWD\r\nSYST\r\nABOR\r\n")
    assert await replies(wire, 4) == [b"426", b"226", b"257", b"215"]
    await data.aclose()
    assert (await wire.command("NOOP")).startswith(b"200")
    await quit_and_close(wire)


async def test_queued_transfer_waits_for_the_running_one(start_server, root):
    """PASV and RETR queued behind a RETR (as lftp pipelines): after the first transfer's
    226 come the 227 and the second transfer; PWD queued behind them waits for its end."""
    big_file(root)
    (root / "small.txt").write_bytes(b"second transfer")
    running = await start_server()
    wire = await logged_in(running.host, running.port, kind="I")
    first = await stalled_download(wire)
    await wire.send("PASV\r\nRETR small.txt\r\nPWD\r\n")
    assert (await wire.command("NOOP")).startswith(b"200")  # all three are queued
    assert len(await receive_all(first)) == SIZE
    await first.aclose()
    assert (await wire.reply()).startswith(b"226")
    second = await data_connect(passive_address(await wire.reply()))  # the queued PASV's

    assert await receive_all(second) == b"second transfer"
    await second.aclose()
    assert await replies(wire, 3) == [b"150", b"226", b"257"]
    await quit_and_close(wire)


async def test_queue_overflow_gets_421_and_only_that_session_ends(start_server, root):
    """One command more than MAX_QUEUED_COMMANDS behind a RETR: the transfer is aborted
    (426, 226), then 421 and the connection is closed; nothing queued ran; the server and
    its other sessions go on, and nothing is left behind."""
    big_file(root)
    running = await start_server()
    other = await logged_in(running.host, running.port)
    before = await baseline()
    wire = await logged_in(running.host, running.port, kind="I")
    data = await stalled_download(wire)
    await wire.send("MKD queued\r\n" * (MAX_QUEUED_COMMANDS + 1))
    assert await replies(wire, 3) == [b"426", b"226", b"421"]
    assert await wire.closed()
    await wire.aclose()
    await data.aclose()
    assert not (root / "queued").exists()
    assert (await other.command("NOOP")).startswith(b"200")
    assert await back_to(before) == before
    again = await logged_in(running.host, running.port)
    await quit_and_close(again)
    await quit_and_close(other)


async def test_stat_reports_kernel_path_bytes_mid_transfer(start_server, root, worker_thread_calls):
    """STAT during a sendfile RETR the client reads slowly reports the bytes moved so far
    (more than 0, at most the size), not only those of finished kernel calls."""
    big_file(root)
    running = await start_server()
    wire = await logged_in(running.host, running.port, kind="I")
    data = await stalled_download(wire)
    with trio.fail_after(10):
        assert await data.receive_some(65536)  # the server has sent bytes, and counted them
    # The worker thread counts right after its system call returns, but it may still be
    # waiting for the GIL while the loop answers: ask again for a while, well inside one
    # call's CALL_BUDGET, so a count made only when a call ends still fails this.
    moved = 0
    with trio.move_on_after(CALL_BUDGET / 2):
        while True:
            status = await wire.command("STAT")
            match = _PROGRESS.search(status)
            assert match is not None, status
            moved = int(match.group(1))
            if moved:
                break
            await trio.sleep(POLL_INTERVAL / 5)
    assert 0 < moved <= SIZE, status
    assert any(getattr(call, "func", None) is send_file for call in worker_thread_calls)
    assert (await wire.command("ABOR")).startswith(b"426")
    assert (await wire.reply()).startswith(b"226")
    await data.aclose()
    await quit_and_close(wire)


async def test_commands_queued_behind_auth_are_discarded(start_server, root, tls, caplog):
    """AUTH TLS and DELE sent in clear behind a RETR: after the transfer AUTH is answered,
    and the DELE, plaintext sent before the handshake, never runs (RFC 4217 §9), whether it
    sat in the decoder's buffer or in the queue."""
    big_file(root)
    (root / "victim.txt").write_bytes(b"keep me")
    running = await start_server(tls_context=tls.server_context)
    wire = await logged_in(running.host, running.port, kind="I")
    data = await stalled_download(wire)
    await wire.send("AUTH TLS\r\nDELE victim.txt\r\n")
    assert (await wire.command("NOOP")).startswith(b"200")  # both are queued
    assert len(await receive_all(data)) == SIZE
    await data.aclose()
    assert await replies(wire, 2) == [b"226", b"234"]
    stream = trio.SSLStream(wire.stream, tls.client_context, server_hostname="127.0.0.1")
    with trio.fail_after(10):
        await stream.do_handshake()
    wire.stream = stream  # type: ignore[assignment]
    assert (await wire.command("NOOP")).startswith(b"200")
    assert (root / "victim.txt").read_bytes() == b"keep me"
    assert any("discarded 1 commands" in record.getMessage() for record in caplog.records)
    await quit_and_close(wire)
