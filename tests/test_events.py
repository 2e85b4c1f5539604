"""The event stream and graceful shutdown, over loopback with real clients."""

from __future__ import annotations

import ftplib
import io
import logging
import os

import pytest
import trio
from conftest import LOGIN, PASSWORD, in_thread

from trio_ftp import Server, User
from trio_ftp.events import ServerEvent


async def collect(stream, until: str) -> list[ServerEvent]:
    """Events up to and including the first of kind ``until`` (bounded by a deadline)."""
    seen: list[ServerEvent] = []
    with trio.fail_after(10):
        async for event in stream:
            seen.append(event)
            if event.kind == until:
                break
    return seen


async def test_events_of_a_session(start_server):
    """connect, login_failed, login, mkdir, transfers (with path, direction, bytes), rename,
    delete, rmdir and logout arrive in order with the session's details."""
    running = await start_server(login_failure_delay=0)
    payload = os.urandom(100_000)

    def client() -> None:
        ftp = ftplib.FTP(timeout=10)
        ftp.connect(running.host, running.port)
        with pytest.raises(ftplib.error_perm):
            ftp.login(LOGIN, "wrong")
        ftp.login(LOGIN, PASSWORD)
        ftp.mkd("d")
        ftp.storbinary("STOR d/f.bin", io.BytesIO(payload))
        ftp.retrbinary("RETR d/f.bin", lambda data: None)
        ftp.rename("d/f.bin", "d/g.bin")
        ftp.delete("d/g.bin")
        ftp.rmd("d")
        ftp.quit()

    with running.server.events() as events:
        await in_thread(client)
        seen = await collect(events, "logout")
    kinds = [event.kind for event in seen]
    assert kinds == [
        "connect", "login_failed", "login", "mkdir",
        "transfer_started", "transfer_finished", "transfer_started", "transfer_finished",
        "rename", "delete", "rmdir", "logout",
    ]  # fmt: skip
    upload, download = seen[5], seen[7]
    assert (upload.path, upload.direction, upload.bytes) == ("/d/f.bin", "upload", len(payload))
    assert (download.direction, download.bytes) == ("download", len(payload))
    assert upload.seconds is not None
    assert seen[2].user == LOGIN
    assert (seen[8].path, seen[8].target) == ("/d/f.bin", "/d/g.bin")
    assert len({event.session for event in seen}) == 1


async def test_slow_consumer_drops_and_never_blocks(start_server):
    """A subscriber that never reads loses events past its buffer; transfers go on."""
    running = await start_server()

    def client() -> None:
        with running.ftp() as ftp:
            for index in range(20):
                ftp.mkd(f"d{index}")

    with running.server.events(buffer=3) as events:
        await in_thread(client)
        assert events.dropped > 0
        first = await collect(events, "login")
    assert [event.kind for event in first] == ["connect", "login"]
    assert len(list((running.root).iterdir())) == 20


async def test_event_iteration_ends_when_the_server_stops(nursery, root):
    """async for over server.events() ends once the server has closed."""
    server = Server([User(LOGIN, PASSWORD, base_path=root)])
    await nursery.start(server.serve, "127.0.0.1", 0)
    events = server.events()
    await server.close()
    with trio.fail_after(5):
        assert [event async for event in events] == []


async def test_graceful_close_lets_transfers_finish(start_server):
    """close(grace=...) stops accepting, lets a running download finish (226), then closes
    sessions with 421."""
    running = await start_server(write_speed_limit=1_000_000, block_size=65536)
    payload = os.urandom(600_000)  # 0.6 s at the limit
    (running.root / "f.bin").write_bytes(payload)
    token = trio.lowlevel.current_trio_token()
    started = trio.Event()

    def downloader() -> tuple[bytes, list[str]]:
        ftp = running.ftp()
        try:
            ftp.voidcmd("TYPE I")
            received = b""
            with ftp.transfercmd("RETR f.bin") as data:
                trio.from_thread.run_sync(started.set, trio_token=token)
                while chunk := data.recv(65536):
                    received += chunk
            return received, [ftp.getline()[:3], ftp.getline()[:3]]
        finally:
            ftp.close()

    def idle() -> str:
        ftp = running.ftp()
        try:
            trio.from_thread.run(started.wait, trio_token=token)
            return ftp.getline()[:3]  # waits for the shutdown notice
        finally:
            ftp.close()

    results: dict[str, object] = {}

    async def run(name, fn):
        results[name] = await in_thread(fn)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, "download", downloader)
        nursery.start_soon(run, "idle", idle)
        await started.wait()
        with trio.fail_after(10):
            async with trio.open_nursery() as closing:
                closing.start_soon(running.server.close, 10)
                await trio.sleep(0.2)  # the download is still running: we are in the grace
                assert "download" not in results
                with pytest.raises(OSError, match="attempts to connect"):  # no new connections
                    await trio.open_tcp_stream(running.host, running.port)
    received, codes = results["download"]
    assert received == payload
    assert codes == ["226", "421"]
    assert results["idle"] == "421"


async def test_grace_expiry_aborts_transfers(start_server, caplog):
    """A transfer still running when the grace period ends is aborted: 426 alone (the
    client sent no ABOR, so no 226), then 421; the audit log says it was shut down."""
    caplog.set_level(logging.INFO, "trio_ftp.audit")
    running = await start_server(write_speed_limit=200_000, block_size=65536)
    (running.root / "f.bin").write_bytes(os.urandom(2_000_000))  # ten seconds
    token = trio.lowlevel.current_trio_token()
    started = trio.Event()

    def downloader() -> list[str]:
        ftp = running.ftp()
        try:
            ftp.voidcmd("TYPE I")
            with ftp.transfercmd("RETR f.bin") as data:
                trio.from_thread.run_sync(started.set, trio_token=token)
                while data.recv(65536):
                    pass
            return [ftp.getline()[:3] for _ in range(2)]
        finally:
            ftp.close()

    results: list[list[str]] = []

    async def run() -> None:
        results.append(await in_thread(downloader))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await started.wait()
        start = trio.current_time()
        with trio.fail_after(10):
            await running.server.close(grace=0.5)
        assert trio.current_time() - start < 3
    assert results == [["426", "421"]]
    [record] = [r.getMessage() for r in caplog.records if "] transfer_aborted" in r.getMessage()]
    assert "transfer_aborted outcome=shutdown direction=download" in record
    assert int(record.split(" bytes=")[1].split()[0]) > 0
