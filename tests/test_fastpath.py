"""The kernel fast path (sendfile / splice in a worker thread): used exactly when allowed,
and indistinguishable from the Python path in what the client gets."""

from __future__ import annotations

import ftplib
import io
import logging
import os
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from conftest import LOGIN, PASSWORD, MiB, TLSCerts, in_thread, random_bytes

from trio_ftp import fastpath
from trio_ftp.handlers import transfer
from trio_ftp.handlers.dataio import KERNEL_MINIMUM, TLS_SLICE


@pytest.fixture
def kernel_calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts the fast-path calls the server makes."""
    calls: Counter[str] = Counter()

    def spy(name: str) -> Callable[..., Any]:
        real = getattr(fastpath, name)

        def counted(*args: Any) -> Any:
            calls[name] += 1
            return real(*args)

        return counted

    monkeypatch.setattr(transfer, "send_file", spy("send_file"))
    monkeypatch.setattr(transfer, "receive_into_file", spy("receive_into_file"))
    return calls


def until_stuck(client: ftplib.FTP) -> None:
    """Wait (bounded) until two ``STAT`` replies 20 ms apart show the running transfer at
    the same byte: the server is blocked on a full socket buffer."""
    previous = None
    for _ in range(250):
        match = re.search(r"(\d+) bytes so far", client.sendcmd("STAT"))
        assert match is not None, "no transfer in progress"
        if match.group(1) == previous:
            return
        previous = match.group(1)
        time.sleep(0.02)
    raise AssertionError("the transfer never stopped moving")


def sparse_file(path: Path, size: int) -> None:
    """A file of ``size`` zero bytes that costs no disk (for transfers nobody reads)."""
    path.write_bytes(b"")
    os.truncate(path, size)


def download(client: ftplib.FTP, name: str, rest: int | None = None) -> bytes:
    out = bytearray()
    client.retrbinary(f"RETR {name}", out.extend, blocksize=1 << 20, rest=rest)
    return bytes(out)


async def test_download_is_byte_exact_through_sendfile(start_server, root, kernel_calls):
    """A plain binary RETR goes through sendfile and arrives byte for byte."""
    payload = random_bytes(20 * MiB)
    (root / "big.bin").write_bytes(payload)
    running = await start_server()

    def client() -> bytes:
        with running.ftp() as ftp:
            return download(ftp, "big.bin")

    assert await in_thread(client) == payload
    assert kernel_calls["send_file"] >= 1


async def test_rest_and_rang_offsets_through_sendfile(start_server, root, kernel_calls):
    """REST starts sendfile at the offset; RANG stops it at the range's end."""
    payload = random_bytes(3 * MiB + 17)
    (root / "f.bin").write_bytes(payload)
    running = await start_server()

    def client() -> tuple[bytes, bytes, bytes]:
        with running.ftp() as ftp:
            tail = download(ftp, "f.bin", rest=MiB + 5)
            ftp.voidcmd("TYPE I")
            assert ftp.sendcmd(f"RANG 1000 {1000 + 2 * KERNEL_MINIMUM - 1}").startswith("350")
            ranged = bytearray()
            ftp.retrbinary("RETR f.bin", ranged.extend)
            past_end = download(ftp, "f.bin", rest=len(payload))
            return tail, bytes(ranged), past_end

    tail, ranged, past_end = await in_thread(client)
    assert tail == payload[MiB + 5 :]
    assert ranged == payload[1000 : 1000 + 2 * KERNEL_MINIMUM]
    assert past_end == b""
    assert kernel_calls["send_file"] >= 2


async def test_small_downloads_skip_the_kernel_path(start_server, root, kernel_calls):
    """Under KERNEL_MINIMUM a download is copied by Python (cheaper than a thread call),
    whole or from a REST offset; from that size on, sendfile."""
    payload = random_bytes(KERNEL_MINIMUM + 10)
    (root / "f.bin").write_bytes(payload)
    running = await start_server()

    def client() -> tuple[bytes, bytes]:
        with running.ftp() as ftp:
            return download(ftp, "f.bin", rest=11), download(ftp, "f.bin")

    tail, whole = await in_thread(client)
    assert tail == payload[11:]
    assert kernel_calls["send_file"] == 1
    assert whole == payload


async def test_abor_stops_a_sendfile_download_and_the_session_goes_on(
    start_server, root, kernel_calls
):
    """ABOR while sendfile waits for a client that stopped reading: 426 then 226, fast."""
    sparse_file(root / "big.bin", 64 * MiB)
    running = await start_server()

    def client() -> tuple[str, float, str]:
        with running.ftp() as ftp:
            ftp.voidcmd("TYPE I")
            data = ftp.transfercmd("RETR big.bin")
            data.recv(65536)
            until_stuck(ftp)
            started = time.monotonic()
            ftp.sock.sendall(b"ABOR\r\n")
            first = ftp.getline()
            second = ftp.getline() if first.startswith("426") else ""
            elapsed = time.monotonic() - started
            data.close()
            return first + "|" + second, elapsed, ftp.voidcmd("NOOP")

    replies, elapsed, noop = await in_thread(client)
    assert replies.startswith("426")
    assert "|226" in replies
    assert elapsed < 2
    assert noop.startswith("200")
    assert kernel_calls["send_file"] >= 1


async def test_throttled_downloads_and_uploads_never_use_the_fast_path(
    start_server, root, kernel_calls
):
    """A speed limit keeps the transfer in the throttled Python path (and it is exact)."""
    payload = random_bytes(256 * 1024)
    (root / "f.bin").write_bytes(payload)
    running = await start_server(
        write_speed_limit_per_connection=4 * MiB, read_speed_limit_per_connection=4 * MiB
    )

    def client() -> bytes:
        with running.ftp() as ftp:
            ftp.storbinary("STOR up.bin", io.BytesIO(payload))
            return download(ftp, "f.bin")

    assert await in_thread(client) == payload
    assert (root / "up.bin").read_bytes() == payload
    assert kernel_calls == Counter()


def protected(running: Any, certs: TLSCerts) -> ftplib.FTP_TLS:
    """An FTPS client, logged in over explicit TLS with PROT P."""
    ftp = ftplib.FTP_TLS(context=certs.client_context, timeout=10)
    ftp.connect(running.host, running.port)
    ftp.login(LOGIN, PASSWORD)
    ftp.prot_p()
    return ftp


async def test_tls_transfers_never_use_the_fast_path(start_server, root, tls, kernel_calls):
    """Under PROT P the bytes must be encrypted, so sendfile/splice are not used."""
    certs: TLSCerts = tls
    payload = random_bytes(2 * MiB)
    (root / "f.bin").write_bytes(payload)
    running = await start_server(tls_context=certs.server_context)

    def client() -> bytes:
        with protected(running, certs) as ftp:
            ftp.storbinary("STOR up.bin", io.BytesIO(payload))
            return download(ftp, "f.bin")

    assert await in_thread(client) == payload
    assert (root / "up.bin").read_bytes() == payload
    assert kernel_calls == Counter()


async def test_tls_downloads_reach_sslstream_in_slices(
    start_server, root, tls, monkeypatch: pytest.MonkeyPatch
):
    """A 1 MiB block goes to SSLStream.send_all in TLS_SLICE pieces (cheaper to encrypt)
    and the file arrives byte for byte."""
    certs: TLSCerts = tls
    payload = random_bytes(2 * MiB + 12345)
    (root / "f.bin").write_bytes(payload)
    sizes: list[int] = []
    send_all = trio.SSLStream.send_all

    async def recording(self: trio.SSLStream[Any], data: Any) -> None:
        sizes.append(len(data))
        await send_all(self, data)

    monkeypatch.setattr(trio.SSLStream, "send_all", recording)
    running = await start_server(tls_context=certs.server_context)

    def client() -> bytes:
        with protected(running, certs) as ftp:
            return download(ftp, "f.bin")

    assert await in_thread(client) == payload
    data_sends = [size for size in sizes if size > 1000]  # not the control replies
    assert sum(data_sends) == len(payload)
    assert max(data_sends) == TLS_SLICE


async def test_uploads_through_splice_are_byte_exact(start_server, root, kernel_calls):
    """STOR, REST + STOR and APPE through the kernel write exactly what was sent."""
    first, second = random_bytes(5 * MiB, seed=1), random_bytes(3 * MiB + 3, seed=2)
    running = await start_server()

    def client() -> None:
        with running.ftp() as ftp:
            ftp.storbinary("STOR a.bin", io.BytesIO(first), blocksize=1 << 20)
            ftp.storbinary("APPE a.bin", io.BytesIO(second), blocksize=1 << 20)
            ftp.storbinary("STOR b.bin", io.BytesIO(first), blocksize=1 << 20)
            ftp.storbinary("STOR b.bin", io.BytesIO(second), blocksize=1 << 20, rest=1000)

    await in_thread(client)
    assert (root / "a.bin").read_bytes() == first + second
    # REST + STOR overwrites from the offset and keeps what lies beyond (no truncation).
    assert (root / "b.bin").read_bytes() == first[:1000] + second + first[1000 + len(second) :]
    assert kernel_calls["receive_into_file"] >= 4


async def test_cut_upload_through_splice_is_426_and_keeps_a_prefix(
    start_server, root, kernel_calls
):
    """A reset upload is not 226, and what was written is a prefix of what was sent."""
    payload = random_bytes(8 * MiB)
    running = await start_server()

    def client() -> str:
        with running.ftp() as ftp:
            ftp.voidcmd("TYPE I")
            data = ftp.transfercmd("STOR cut.bin")
            data.sendall(payload[: 4 * MiB])
            data.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            data.close()
            try:
                return ftp.getresp()
            except ftplib.Error as exc:
                return str(exc)

    reply = await in_thread(client)
    assert not reply.startswith("226"), reply
    written = (root / "cut.bin").read_bytes()
    assert payload.startswith(written)
    assert kernel_calls["receive_into_file"] >= 1


async def test_stalled_sendfile_client_times_out_with_426(start_server, root, kernel_calls):
    """socket_timeout holds on the fast path: a client that stops reading gets 426."""
    sparse_file(root / "big.bin", 64 * MiB)
    running = await start_server(socket_timeout=0.3)

    def client() -> tuple[str, str]:
        with running.ftp() as ftp:
            ftp.voidcmd("TYPE I")
            data = ftp.transfercmd("RETR big.bin")
            try:
                try:
                    reply = ftp.getresp()
                except ftplib.Error as exc:
                    reply = str(exc)
                return reply, ftp.voidcmd("NOOP")
            finally:
                data.close()

    reply, noop = await in_thread(client)
    assert reply.startswith("426")
    assert noop.startswith("200")
    assert kernel_calls["send_file"] >= 1


async def test_speed_limit_switched_on_mid_download_takes_over(
    start_server, root, kernel_calls, monkeypatch, short_kernel_calls
):
    """A limit set while a sendfile download runs moves the rest of it to the throttled
    path (and the file still arrives exact)."""
    throttled_sends = 0
    real_send_data = transfer.send_data

    async def counted_send_data(*args: Any) -> None:
        nonlocal throttled_sends
        throttled_sends += 1
        await real_send_data(*args)

    monkeypatch.setattr(transfer, "send_data", counted_send_data)
    # The client stops reading after 1 MiB, so the kernel path moves only what the socket
    # buffers take (a few MiB) before the limit is set: most of the file is left for the
    # throttled path.
    payload = random_bytes(16 * MiB)
    (root / "big.bin").write_bytes(payload)
    running = await start_server()
    received = bytearray()
    limit_set = threading.Event()

    def client() -> None:
        with running.ftp() as ftp:
            ftp.voidcmd("TYPE I")
            with ftp.transfercmd("RETR big.bin") as data:
                while len(received) < MiB:
                    received.extend(data.recv(1 << 20))
                assert limit_set.wait(10)
                # Not reading: the server's kernel call gives its thread back after
                # CALL_BUDGET, and the next chunk goes through the throttled path.
                for _ in range(1000):
                    if throttled_sends:
                        break
                    time.sleep(0.01)
                while chunk := data.recv(1 << 20):
                    received.extend(chunk)
            ftp.voidresp()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(in_thread, client)
        with trio.fail_after(10):
            while len(received) < MiB:  # noqa: ASYNC110 (waiting on another thread)
                await trio.sleep(0.01)
        running.server.write_speed_limit = 256 * MiB
        limit_set.set()
    assert bytes(received) == payload
    assert kernel_calls["send_file"] >= 1
    assert throttled_sends >= 1


# kernel copies refused by the file system --------------------------------------------------
def refusing(real: Callable[..., int], errno_: int, after: int) -> Callable[..., int]:
    """``real``, until ``after`` calls have moved bytes; then OSError(``errno_``) for ever,
    as a file system without sendfile/splice support answers. Each call moves 64 KiB at
    most, so ``after`` calls never finish a file of a few MiB, however big the socket
    buffers are (the fallback must be seen mid-file)."""
    calls = 0

    def call(*args: Any, **kwargs: Any) -> int:
        nonlocal calls
        if calls >= after:
            raise OSError(errno_, "refused")
        calls += 1
        if len(args) >= 4:  # (out, in, offset, count): a short call, as the kernel may make
            args = (*args[:3], min(args[3], 64 * 1024), *args[4:])
        return real(*args, **kwargs)

    return call


@pytest.mark.parametrize("errno_", sorted(fastpath.UNSUPPORTED_ERRNOS))
@pytest.mark.parametrize("after", [0, 3], ids=["at-once", "after-some-bytes"])
async def test_sendfile_refused_falls_back_to_python(
    start_server, root, monkeypatch, caplog, errno_: int, after: int
):
    """sendfile refused (at the first call, or after some bytes moved): the download goes
    on through the Python path from the exact byte, 226, byte-exact; REST too; the log
    says so once per download."""
    payload = random_bytes(6 * MiB, seed=71)
    (root / "big.bin").write_bytes(payload)
    monkeypatch.setattr(fastpath.os, "sendfile", refusing(fastpath.os.sendfile, errno_, after))
    running = await start_server()

    def client() -> tuple[bytes, bytes]:
        with running.ftp() as ftp:
            return download(ftp, "big.bin"), download(ftp, "big.bin", rest=12345)

    with caplog.at_level(logging.INFO, logger="trio_ftp"):
        whole, tail = await in_thread(client)
    assert whole == payload
    assert tail == payload[12345:]
    told = [record for record in caplog.records if "sending through Python" in record.getMessage()]
    assert len(told) == 2, told


@pytest.mark.parametrize("errno_", [fastpath.errno.EINVAL, fastpath.errno.EOPNOTSUPP])
@pytest.mark.parametrize("side", ["file", "socket"])
@pytest.mark.parametrize("after", [0, 3], ids=["at-once", "after-some-bytes"])
async def test_splice_refused_falls_back_to_copying(
    start_server, root, monkeypatch, kernel_calls, caplog, errno_: int, side: str, after: int
):
    """splice refused on the file side (bytes already in the pipe are written, not lost)
    or on the socket side: the upload completes byte-exact through recv + pwrite, and the
    log says so once."""
    if fastpath._SPLICE is None:
        pytest.fail("this kernel has no splice: the test needs Linux")
    payload = random_bytes(6 * MiB + 5, seed=72)
    real = fastpath._SPLICE
    calls = 0

    def splice(source: int, target: int, count: int, **kwargs: Any) -> int:
        nonlocal calls
        to_file = "offset_dst" in kwargs
        if (side == "file") == to_file:
            if calls >= after:
                raise OSError(errno_, "refused")
            calls += 1
        return real(source, target, count, **kwargs)

    monkeypatch.setattr(fastpath, "_SPLICE", splice)
    running = await start_server()

    def client() -> None:
        with running.ftp() as ftp:
            ftp.storbinary("STOR up.bin", io.BytesIO(payload), blocksize=1 << 20)

    with caplog.at_level(logging.INFO, logger="trio_ftp"):
        await in_thread(client)
    assert (root / "up.bin").read_bytes() == payload
    assert kernel_calls["receive_into_file"] >= 1
    told = [record for record in caplog.records if "splice refused" in record.getMessage()]
    assert len(told) == 1, told
    assert fastpath.errno.errorcode[errno_] in told[0].getMessage()
