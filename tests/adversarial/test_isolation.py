"""One client cannot hurt others: a hostile connection costs next to no CPU, is closed in
bounded time, and meanwhile another session's transfers go through byte-exactly.

Every test runs a real server on loopback; the hostile client speaks through a raw socket,
the well-behaved one is ftplib in a thread.
"""

from __future__ import annotations

import contextlib
import ftplib
import io
import os
import re
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
from conftest import LOGIN, PASSWORD, Running, in_thread_with_cpu, random_bytes
from wire import (
    Wire,
    back_to,
    baseline,
    cpu_seconds,
    data_connect,
    reset_socket,
    start_server,  # noqa: F401 (the fixture: wraps conftest's)
)

MiB = 1024 * 1024
#: CPU seconds the server may spend serving a well-behaved client's transfers beside the
#: hostile ones, over the whole of the measured window.
CPU_BUDGET = 0.25
#: idle_timeout and tls_handshake_timeout against the hostile clients: each is closed
#: after about this long, within the measured window.
HOSTILE_TIMEOUT = 0.5
#: Seconds over which the stalled downloads' cost is measured (a quarter of a core at most).
WINDOW = 1.0
_PROGRESS = re.compile(rb"(\d+) bytes so far")


# the hostile clients ----------------------------------------------------------------------------
def client_hello(context: ssl.SSLContext) -> bytes:
    """The bytes of a real TLS ClientHello from ``context``."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with contextlib.suppress(ssl.SSLWantReadError):  # it waits for the ServerHello
        tls.do_handshake()
    hello = outgoing.read()
    assert hello[:1] == b"\x16", hello[:8]  # a handshake record
    return hello


async def auth_tls(wire: Wire) -> None:
    reply = await wire.command("AUTH TLS")
    assert reply.startswith(b"234"), reply


async def garbage(wire: Wire, tls) -> None:
    await wire.send(random_bytes(64 * 1024, seed=31))


async def garbage_lines(wire: Wire, tls) -> None:
    noise = random_bytes(64 * 1024, seed=38).replace(b"\r\n", b"")
    await wire.send(b"".join(noise[i : i + 62] + b"\r\n" for i in range(0, len(noise), 62)))


async def half_handshake(wire: Wire, tls) -> None:
    await auth_tls(wire)
    hello = client_hello(tls.client_context)
    await wire.send(hello[: len(hello) // 2])


async def http_request(wire: Wire, tls) -> None:
    await wire.send(
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: curl/8.0\r\nAccept: */*\r\n\r\n"
        b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello"
    )


async def silent_after_auth(wire: Wire, tls) -> None:
    await auth_tls(wire)


# the well-behaved client --------------------------------------------------------------------------
def transfers(host: str, port: int, upload: bytes) -> bytes:
    """ftplib: download ``big.bin``, upload ``upload`` as ``up.bin``; returns the download."""
    client = ftplib.FTP(timeout=10)
    try:
        client.connect(host, port)
        client.login(LOGIN, PASSWORD)
        chunks: list[bytes] = []
        client.retrbinary("RETR big.bin", chunks.append)
        client.storbinary("STOR up.bin", io.BytesIO(upload))
        client.quit()
    finally:
        client.close()
    return b"".join(chunks)


@dataclass
class Window:
    """What :func:`well_behaved_beside` measured."""

    #: CPU seconds of the server: this process's, less the well-behaved client's thread's.
    server_cpu: float
    #: Seconds the window lasted.
    seconds: float
    #: What the well-behaved client downloaded.
    download: bytes
    #: Seconds its transfers took.
    took: float


async def well_behaved_beside(
    running: Running, upload: bytes, *, hostile: Wire | None = None, at_least: float = 0
) -> Window:
    """A well-behaved session's :func:`transfers` in a thread, with the server's CPU
    measured meanwhile: until they are done, the hostile connection (if any) is closed by
    the server, and at least ``at_least`` seconds have passed.

    The server runs in this process beside its clients, so its CPU time is the process's
    less what the client's thread spent (the raw hostile socket, read by this trio run,
    costs next to nothing and counts as the server's)."""
    started_cpu, begin = cpu_seconds(), trio.current_time()
    result: list[tuple[bytes, float]] = []
    took: list[float] = []

    async def well_behaved() -> None:
        result.append(await in_thread_with_cpu(transfers, running.host, running.port, upload))
        took.append(trio.current_time() - begin)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(well_behaved)
        if hostile is not None:
            assert await hostile.closed(5), "the hostile connection is still open"
        await trio.sleep_until(begin + at_least)
    ((download, client_cpu),) = result
    seconds = trio.current_time() - begin
    return Window(cpu_seconds() - started_cpu - client_cpu, seconds, download, took[0])


@pytest.mark.parametrize(
    "attack",
    [garbage, garbage_lines, half_handshake, http_request, silent_after_auth],
    ids=["garbage", "garbage-lines", "half-tls-handshake", "http-request", "silent-after-auth-tls"],
)
async def test_hostile_client_costs_no_cpu_and_hurts_no_one(start_server, root: Path, tls, attack):
    """A hostile peer is closed within its timeout and costs the server next to no CPU
    meanwhile (< CPU_BUDGET, another client's transfers included), and others transfer
    byte-exactly."""
    download = random_bytes(3 * MiB, seed=32)
    upload = random_bytes(3 * MiB, seed=33)
    (root / "big.bin").write_bytes(download)
    running = await start_server(
        tls_context=tls.server_context,
        tls_handshake_timeout=HOSTILE_TIMEOUT,
        idle_timeout=HOSTILE_TIMEOUT,
        block_size=64 * 1024,
    )
    base = await baseline()
    hostile = await Wire.connect(running.host, running.port)
    assert (await hostile.greeting()).startswith(b"220")
    await attack(hostile, tls)

    window = await well_behaved_beside(running, upload, hostile=hostile)
    assert window.server_cpu < CPU_BUDGET, (
        f"{window.server_cpu:.2f} s of server CPU in {window.seconds:.2f} s"
    )
    assert window.download == download
    assert (root / "up.bin").read_bytes() == upload
    await hostile.aclose()
    assert await back_to(base) == base


async def stat_progress(wire: Wire) -> int:
    """Bytes the session's running transfer has moved, as ``STAT`` tells."""
    status = await wire.command("STAT")
    assert b"transfer in progress: RETR" in status, status
    match = _PROGRESS.search(status)
    assert match is not None, status
    return int(match.group(1))


async def until_stuck(wires: list[Wire]) -> None:
    """Wait (bounded) until no session's transfer moved a byte between two rounds of
    ``STAT``: every socket buffer is full, the downloads are stuck."""
    previous: list[int] = []
    with trio.fail_after(10):
        while True:
            current = [await stat_progress(wire) for wire in wires]
            if current == previous:
                return
            previous = current
            await trio.sleep(0.05)


@pytest.mark.slow  # a second of steady state is the measurement
async def test_stalled_downloads_do_not_starve_others(start_server, root: Path):
    """70 never-read downloads cost the server next to no CPU (< CPU_BUDGET in WINDOW,
    another client's transfers included) and don't starve another session."""
    download = random_bytes(3 * MiB, seed=34)
    upload = random_bytes(3 * MiB, seed=35)
    (root / "big.bin").write_bytes(download)
    (root / "huge.bin").write_bytes(b"")
    os.truncate(root / "huge.bin", 64 * MiB)  # sparse: costs no disk
    running = await start_server()
    base = await baseline()
    stalled: list[tuple[Wire, trio.SocketStream]] = []
    try:
        for _ in range(70):
            wire = await Wire.connect(running.host, running.port)
            assert (await wire.greeting()).startswith(b"220")
            assert (await wire.login(LOGIN, PASSWORD)).startswith(b"230")
            assert (await wire.command("TYPE I")).startswith(b"200")
            data = await data_connect(await wire.pasv())
            stalled.append((wire, data))
            assert (await wire.command("RETR huge.bin")).startswith(b"150")
        await until_stuck([wire for wire, _ in stalled])

        window = await well_behaved_beside(running, upload, at_least=WINDOW)
        assert window.server_cpu < CPU_BUDGET, (
            f"{window.server_cpu:.2f} s of server CPU in {window.seconds:.2f} s"
        )
        assert window.download == download
        assert window.took < 5, f"the well-behaved transfers took {window.took:.1f} s"
        assert (root / "up.bin").read_bytes() == upload
    finally:
        for wire, data in stalled:
            reset_socket(data.socket)
            wire.reset()
    assert await back_to(base, within=10) == base


@pytest.mark.parametrize("atomic", [False, True], ids=["in-place", "atomic-uploads"])
@pytest.mark.parametrize("connect_first", [True, False], ids=["data-first", "command-first"])
async def test_concurrent_stou_never_share_a_name(start_server, root: Path, atomic, connect_first):
    """Overlapping STOU from two sessions get distinct names, each holding its own upload."""
    running = await start_server(atomic_uploads=atomic, wait_future_timeout=5)
    base = await baseline()
    payloads = [random_bytes(256 * 1024, seed=36), random_bytes(256 * 1024, seed=37)]
    sessions = []
    names = []
    for payload in payloads:
        wire = await Wire.connect(running.host, running.port)
        assert (await wire.greeting()).startswith(b"220")
        assert (await wire.login(LOGIN, PASSWORD)).startswith(b"230")
        assert (await wire.command("TYPE I")).startswith(b"200")
        address = await wire.pasv()
        data = await data_connect(address) if connect_first else None
        opening = await wire.command("STOU report")
        assert opening.startswith(b"150"), opening
        names.append(opening.split(b"FILE: ", 1)[1].strip().decode())
        if data is not None:
            await data.send_all(payload[: len(payload) // 2])
        sessions.append((wire, address, data))
    for (wire, address, data), payload in zip(sessions, payloads, strict=True):
        if data is None:
            data = await data_connect(address)
            await data.send_all(payload[: len(payload) // 2])
        await data.send_all(payload[len(payload) // 2 :])
        await data.aclose()
        reply = await wire.reply()
        assert reply.startswith(b"226"), reply
    assert names[0] != names[1], f"both uploads were told FILE: {names[0]}"
    for name, payload in zip(names, payloads, strict=True):
        assert (root / name).read_bytes() == payload, f"{name} lost its upload"
    for wire, _, _ in sessions:
        assert (await wire.command("QUIT")).startswith(b"221")
        await wire.aclose()
    assert await back_to(base) == base
