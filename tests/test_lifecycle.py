"""Server lifecycle over loopback: serve/start/serve_forever/run/close, and nothing leaks."""

from __future__ import annotations

import ftplib
import io
import os
import signal
import socket
import subprocess
import sys
import threading

import pytest
import trio
import trio.testing
from conftest import LOGIN, PASSWORD, default_users, in_thread, open_fds

from trio_ftp import Server, User


async def test_nursery_start_reports_address(nursery, root):
    """await nursery.start(server.serve, host, 0) returns the bound (host, port)."""
    server = Server(default_users(root))
    host, port = await nursery.start(server.serve, "127.0.0.1", 0)
    assert (host, port) == server.address
    assert port != 0
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            assert (await stream.receive_some(100)).startswith(b"220 ")
        await server.close()


async def test_start_serve_forever_close(root):
    """start() binds (address known) before serving; close() ends serve_forever()."""
    fds = open_fds()
    server = Server(default_users(root))
    await server.start("127.0.0.1", 0)
    host, port = server.address
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve_forever)

        def client():
            with ftplib.FTP() as ftp:
                ftp.connect(host, port, timeout=5)
                ftp.login(LOGIN, PASSWORD)
                return ftp.pwd()

        assert await in_thread(client) == "/"
        with trio.fail_after(5):
            await server.close()
    assert open_fds() <= fds


async def test_close_without_serving_releases_the_port(root):
    """close() after start() alone closes the listeners."""
    server = Server(default_users(root))
    await server.start("127.0.0.1", 0)
    port = server.address[1]
    await server.close()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # free again


async def test_run_is_start_serve_close(root):
    """run() serves until cancelled and cleans up on the way out."""
    fds = open_fds()
    server = Server(default_users(root))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.run, "127.0.0.1", 0)
        await trio.testing.wait_all_tasks_blocked()
        assert server.address[1] != 0
        nursery.cancel_scope.cancel()
    assert open_fds() <= fds


async def test_cancelling_serve_ends_sessions_and_transfers(root):
    """Cancelling serve() mid-transfer ends every session, task and socket."""
    (root / "big.bin").write_bytes(os.urandom(32 * 1024 * 1024))
    fds = open_fds()
    server = Server(default_users(root), block_size=4096)
    started = trio.Event()
    results: list[str] = []

    def slow_download(host: str, port: int, token: trio.lowlevel.TrioToken) -> None:
        try:
            with ftplib.FTP() as ftp:
                ftp.connect(host, port, timeout=10)
                ftp.login(LOGIN, PASSWORD)
                ftp.voidcmd("TYPE I")
                with ftp.transfercmd("RETR big.bin") as data:
                    data.recv(4096)
                    trio.from_thread.run_sync(started.set, trio_token=token)
                    while data.recv(65536):
                        pass
                results.append("ended")
        except (OSError, EOFError, ftplib.Error) as exc:
            results.append(type(exc).__name__)

    with trio.fail_after(20):
        async with trio.open_nursery() as outer:
            async with trio.open_nursery() as serving:
                host, port = await serving.start(server.serve, "127.0.0.1", 0)
                token = trio.lowlevel.current_trio_token()
                outer.start_soon(lambda: trio.to_thread.run_sync(slow_download, host, port, token))
                await started.wait()
                assert len(server.connections) == 1
                serving.cancel_scope.cancel()
            assert server.connections == {}
    assert results  # the client noticed the end, one way or another
    assert open_fds() <= fds


async def test_close_while_transfers_run(start_server):
    """close() with two downloads in flight returns after both sessions ended."""
    running = await start_server(block_size=4096)
    (running.root / "big.bin").write_bytes(os.urandom(16 * 1024 * 1024))
    token = trio.lowlevel.current_trio_token()
    ready = trio.Semaphore(0)
    hold = threading.Event()  # the clients stop reading: the downloads cannot finish early

    def download():
        try:
            with running.ftp() as ftp:
                ftp.voidcmd("TYPE I")
                with ftp.transfercmd("RETR big.bin") as data:
                    data.recv(1024)
                    trio.from_thread.run_sync(ready.release, trio_token=token)
                    hold.wait(10)
                    while data.recv(65536):
                        pass
                    ftp.voidresp()
        except (OSError, EOFError, ftplib.Error):
            return "interrupted"
        return "complete"

    async with trio.open_nursery() as nursery:
        for _ in range(2):
            nursery.start_soon(in_thread, download)
        try:
            with trio.fail_after(10):
                await ready.acquire()
                await ready.acquire()
                assert len(running.server.connections) == 2
                await running.server.close()
        finally:
            hold.set()
    assert running.server.connections == {}


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
async def test_cli_serves_directory_read_only(tmp_path):
    """python -m trio_ftp serves a directory anonymously, read-only, until Ctrl-C."""
    (tmp_path / "hello.txt").write_bytes(b"hello\n")
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trio_ftp", str(tmp_path), "--port", "0"],
        stdout=subprocess.PIPE,
    )
    try:
        with trio.fail_after(15):
            line = b""
            while not line.endswith(b"\n"):
                line += await process.stdout.receive_some(1)
        text = line.decode()
        assert "ftp://127.0.0.1:" in text
        port = int(text.split("ftp://127.0.0.1:")[1].split("/")[0])

        def client():
            with ftplib.FTP() as ftp:
                ftp.connect("127.0.0.1", port, timeout=5)
                ftp.login()  # anonymous
                out = io.BytesIO()
                ftp.retrbinary("RETR hello.txt", out.write)
                with pytest.raises(ftplib.error_perm, match="553"):
                    ftp.storbinary("STOR new.txt", io.BytesIO(b"x"))
                return out.getvalue()

        assert await in_thread(client) == b"hello\n"
        assert not (tmp_path / "new.txt").exists()
        process.send_signal(signal.SIGINT)  # Ctrl-C: a clean shutdown, exit status 0
        with trio.fail_after(10):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await process.stdout.aclose()


async def test_close_answers_426_alone_for_a_running_transfer(start_server):
    """close() cancels a running transfer as a worker: the client reads 426 (no 226: it
    sent no ABOR), then 421 as the session is closed."""
    running = await start_server(block_size=4096)
    (running.root / "big.bin").write_bytes(os.urandom(16 * 1024 * 1024))
    token = trio.lowlevel.current_trio_token()
    transferring = trio.Event()
    closed = trio.Event()

    def client() -> list[str]:
        ftp = running.ftp()
        try:
            ftp.voidcmd("TYPE I")
            with ftp.transfercmd("RETR big.bin") as data:
                data.recv(1024)
                trio.from_thread.run_sync(transferring.set, trio_token=token)
                trio.from_thread.run(closed.wait, trio_token=token)
            return [ftp.getline()[:3] for _ in range(2)]
        finally:
            ftp.close()

    async with trio.open_nursery() as nursery:
        result: list[list[str]] = []

        async def run_client() -> None:
            result.append(await in_thread(client))

        nursery.start_soon(run_client)
        with trio.fail_after(10):
            await transferring.wait()
            await running.server.close()
        closed.set()
    assert result == [["426", "421"]]


async def test_a_connection_gone_before_its_session_begins_costs_nothing(caplog, monkeypatch):
    """The accept handler makes the session synchronously: a socket whose peer is already
    gone (getpeername fails) gets a task that does nothing, and nothing is raised into the
    accept loop; a session that cannot even be made (a bug) is logged the same way."""
    import logging

    import trio_ftp.base

    server = Server([User()])
    unconnected = trio.SocketStream(trio.socket.socket(socket.AF_INET))
    with caplog.at_level(logging.DEBUG, logger="trio_ftp.server"):
        task = server._handle_connection(unconnected)
        await task  # does nothing, raises nothing
    assert "dropped before its session began" in caplog.text
    await unconnected.aclose()

    class Broken:
        def __init__(self, *args: object) -> None:
            raise RuntimeError("bug")

    monkeypatch.setattr(trio_ftp.base, "Session", Broken)
    a, b = trio.socket.socketpair()
    with caplog.at_level(logging.ERROR, logger="trio_ftp.server"):
        await server._handle_connection(trio.SocketStream(a))
    assert "could not start a session" in caplog.text
    a.close()
    b.close()
