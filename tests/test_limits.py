"""Speed limits through the transfer path: every level, fairness, run-time changes, and one
real-socket measurement."""

from __future__ import annotations

import ftplib
import os
import time

import pytest
import trio
import trio.testing
from conftest import LOGIN, PASSWORD, in_thread

from trio_ftp import Connection, Server, User
from trio_ftp.handlers.dataio import TransferProgress, receive_block, send_data

BLOCK = 64 * 1024
MB = 1_000_000


def connection_for(server: Server, user: User | None) -> Connection:
    """The throttles a logged-in session of ``user`` gets (as handlers/auth.py sets them)."""
    read, write = server.throttles.for_connection(user)
    return Connection(socket_timeout=None, read_throttle=read, write_throttle=write)


async def download(connection: Connection, total: int, counter: list[int]) -> None:
    """Push ``total`` bytes through send_data into a sink that reads as fast as it can."""
    sender, receiver = trio.testing.memory_stream_pair()

    async def drain() -> None:
        while await receiver.receive_some(1 << 20):
            pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        sent = 0
        while sent < total:
            await send_data(connection, sender, b"x" * BLOCK)
            sent += BLOCK
            counter[0] += BLOCK
        await sender.aclose()


async def timed_download(connection: Connection, total: int) -> float:
    start = trio.current_time()
    await download(connection, total, [0])
    return trio.current_time() - start


@pytest.mark.parametrize(
    ("server_kwargs", "user_kwargs", "rate"),
    [
        ({"write_speed_limit": MB}, {}, MB),
        ({"write_speed_limit_per_connection": MB}, {}, MB),
        ({}, {"write_speed_limit": MB}, MB),
        ({}, {"write_speed_limit_per_connection": MB}, MB),
        ({"write_speed_limit": 4 * MB}, {"write_speed_limit_per_connection": 2 * MB}, 2 * MB),
        ({"write_speed_limit_per_connection": MB / 2}, {"write_speed_limit": 3 * MB}, MB / 2),
    ],
)
async def test_each_level_limits_downloads(autojump_clock, server_kwargs, user_kwargs, rate):
    """Each of the four levels alone, and combinations (the tightest wins), hold to 1%."""
    server = Server(block_size=BLOCK, **server_kwargs)
    user = User("u", "p", **user_kwargs)
    total = 10 * MB
    elapsed = await timed_download(connection_for(server, user), total)
    assert elapsed == pytest.approx(total / rate, rel=0.01)


async def test_read_limit_applies_to_uploads(autojump_clock):
    """read_speed_limit paces receive_block (uploads) to 1%."""
    server = Server(block_size=BLOCK, read_speed_limit=2 * MB)
    connection = connection_for(server, User("u", "p"))
    client, server_end = trio.testing.memory_stream_pair()
    total = 10 * MB

    async def upload() -> None:
        for _ in range(total // BLOCK):
            await client.send_all(b"y" * BLOCK)
        await client.aclose()

    start = trio.current_time()
    received = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(upload)
        while data := await receive_block(connection, server_end, BLOCK):
            received += len(data)
    assert received == total // BLOCK * BLOCK
    assert trio.current_time() - start == pytest.approx(received / (2 * MB), rel=0.01)


async def test_receive_block_gathers_small_reads() -> None:
    """Small reads (TLS records, on FTPS) come back as whole blocks, only the last one short,
    and the transfer's progress counts every read as it arrives."""
    connection = connection_for(Server(block_size=BLOCK), User("u", "p"))
    client, server_end = trio.testing.memory_stream_pair()
    piece = BLOCK // 4 + 1
    progress = TransferProgress("STOR x")
    sizes: list[int] = []

    async def upload() -> None:
        for _ in range(10):
            await client.send_all(b"z" * piece)
            await trio.lowlevel.checkpoint()  # one read each
        await client.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(upload)
        while block := await receive_block(connection, server_end, BLOCK, progress):
            sizes.append(len(block))
    assert sizes == [BLOCK, BLOCK, 10 * piece - 2 * BLOCK]
    assert progress.bytes == 10 * piece


async def test_user_limit_is_shared_fairly(autojump_clock):
    """Two sessions of one user under a 1 MB/s user limit get half each, within 20%;
    another user is not slowed."""
    server = Server(block_size=BLOCK)
    alice = User("alice", "p", write_speed_limit=MB)
    bob = User("bob", "p")
    counters = [[0], [0], [0]]
    connections = [connection_for(server, alice), connection_for(server, alice)]
    with trio.move_on_after(10):
        async with trio.open_nursery() as nursery:
            for connection, counter in zip(connections, counters, strict=False):
                nursery.start_soon(download, connection, 100 * MB, counter)
            nursery.start_soon(download, connection_for(server, bob), 10 * MB, counters[2])
    first, second = counters[0][0], counters[1][0]
    assert first + second == pytest.approx(10 * MB, rel=0.02)
    assert first == pytest.approx(second, rel=0.2)
    assert counters[2][0] >= 10 * MB  # bob finished: no limit of alice's touched him


async def test_limit_changes_apply_to_running_transfers(autojump_clock):
    """Raising server.write_speed_limit mid-transfer speeds it up within a poll interval."""
    server = Server(block_size=BLOCK, write_speed_limit=100_000)
    connection = connection_for(server, None)
    counter = [0]

    async def raise_limit() -> None:
        await trio.sleep(5)
        server.write_speed_limit = 10 * MB

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(raise_limit)
        await download(connection, 10 * MB, counter)
    # 0.5 MB in the first 5 s, then 9.5 MB at 10 MB/s: about 5.95 s, not 100 s
    assert 5.7 < trio.current_time() - start < 6.4


@pytest.mark.slow
async def test_real_socket_download_rate(start_server):
    """Over loopback, a 1 MB/s server limit gives a measured rate within 15%."""
    running = await start_server(write_speed_limit=MB, block_size=BLOCK)
    payload = os.urandom(3 * MB)
    (running.root / "f.bin").write_bytes(payload)

    def client() -> tuple[bytes, float]:
        with ftplib.FTP(timeout=10) as ftp:
            ftp.connect(running.host, running.port)
            ftp.login(LOGIN, PASSWORD)
            chunks: list[bytes] = []
            start = time.monotonic()
            ftp.retrbinary("RETR f.bin", chunks.append)
            return b"".join(chunks), time.monotonic() - start

    data, seconds = await in_thread(client)
    assert data == payload
    rate = len(payload) / seconds
    assert rate == pytest.approx(MB, rel=0.15)
