"""The audit log tells the whole story: one record for every transfer however it ends,
every file operation, every refusal, every failed login; in text, JSON and xferlog form."""

from __future__ import annotations

import errno
import ftplib
import io
import json
import logging
import os
import socket
import struct
import time

import pytest
import trio
from conftest import LOGIN, Running, in_thread

from trio_ftp.audit import audit_line, quoted, xferlog_line
from trio_ftp.errors import DataConnectionError, PathIOError, TransferAborted
from trio_ftp.events import ServerEvent
from trio_ftp.handlers.transfer import transfer_outcome
from trio_ftp.logsetup import JsonFormatter


def audit_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "trio_ftp.audit"]


def transfer_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [line for line in audit_records(caplog) if "] transfer_" in line]


async def wait_for_lines(caplog: pytest.LogCaptureFixture, count: int) -> list[str]:
    """The transfer records once ``count`` of them are written (a transfer's record may
    follow the client's view of its end by a moment)."""
    with trio.fail_after(10):
        while len(transfer_lines(caplog)) < count:  # noqa: ASYNC110 (log records: no event)
            await trio.sleep(0.01)
    return transfer_lines(caplog)


# pure parts --------------------------------------------------------------------------------------
def test_client_strings_are_quoted_and_escaped() -> None:
    assert quoted('a "b"\nc') == '"a \\"b\\"\\x0ac"'
    event = ServerEvent(
        "rename", 3, "192.0.2.1:5", user="al ice", path="/a\r\nb", target='/x"] login_failed'
    )
    line = audit_line(event)
    assert "\n" not in line
    assert "\r" not in line
    assert line == ('rename user="al ice" path="/a\\x0d\\x0ab" target="/x\\"] login_failed"')


def test_a_transfer_record_has_every_field() -> None:
    event = ServerEvent(
        "transfer_aborted",
        1,
        "192.0.2.1:5",
        user="bob",
        path="/f",
        direction="upload",
        bytes=10,
        seconds=0.5,
        outcome="closed",
        offset=4,
    )
    assert audit_line(event) == (
        'transfer_aborted outcome=closed direction=upload user="bob" path="/f" offset=4 '
        "bytes=10 seconds=0.500"
    )


def test_xferlog_lines_have_the_standard_fields() -> None:
    event = ServerEvent(
        "transfer_finished",
        1,
        "192.0.2.1:5",
        user="alice",
        path="/a dir/f name.txt",
        direction="download",
        bytes=1234,
        seconds=0.2,
        outcome="complete",
        time=time.mktime((2026, 12, 5, 1, 2, 3, 0, 0, -1)),
    )
    assert xferlog_line(event, "192.0.2.1") == (
        "Sat Dec  5 01:02:03 2026 1 192.0.2.1 1234 /a_dir/f_name.txt b _ o r alice ftp 0 * c"
    )
    cut = ServerEvent("transfer_aborted", 1, "p", direction="upload", bytes=7, seconds=2.5)
    fields = xferlog_line(cut, "h").split()
    assert fields[5:] == ["3", "h", "7", "-", "b", "_", "i", "a", "anonymous", "ftp", "0", "*", "i"]


@pytest.mark.parametrize(
    ("exc", "aborted", "shutdown", "outcome"),
    [
        (trio.Cancelled._create(), True, False, "aborted"),  # type: ignore[attr-defined]
        (trio.Cancelled._create(), False, True, "shutdown"),  # type: ignore[attr-defined]
        (trio.Cancelled._create(), False, False, "closed"),  # type: ignore[attr-defined]
        (TransferAborted("x", timed_out=True), False, False, "timeout"),
        (TransferAborted(), False, False, "closed"),
        (trio.BrokenResourceError(), False, False, "closed"),
        (ConnectionResetError(errno.ECONNRESET, "reset"), False, False, "closed"),
        (DataConnectionError(), False, False, "refused"),
        (PathIOError(OSError(errno.EIO, "io")), False, False, "failed"),
    ],
)
def test_transfer_outcomes(exc: BaseException, aborted: bool, shutdown: bool, outcome: str) -> None:
    assert transfer_outcome(exc, aborted=aborted, shutdown=shutdown) == outcome


def test_json_lines_have_a_stable_field_set() -> None:
    formatter = JsonFormatter(worker=2)
    plain = logging.LogRecord("trio_ftp.server", logging.INFO, "f", 1, "listening %s", ("x",), None)
    line = json.loads(formatter.format(plain))
    assert line["event"] == "log"
    assert line["message"] == "listening x"
    assert {"time", "level", "logger", "event", "message", "worker"} <= set(line)
    record = logging.LogRecord("trio_ftp.audit", logging.WARNING, "f", 1, "m", (), None)
    record.ftp_event = ServerEvent("login_failed", 4, "192.0.2.1:5", user="eve", failures=2)
    line = json.loads(formatter.format(record))
    assert (line["event"], line["session"], line["client"]) == ("login_failed", 4, "192.0.2.1:5")
    assert (line["user"], line["failures"], line["level"]) == ("eve", 2, "WARNING")


# a real server -----------------------------------------------------------------------------------
async def test_every_way_a_transfer_ends_is_one_line(
    start_server, caplog: pytest.LogCaptureFixture
) -> None:
    """complete, aborted (ABOR), closed (the client closed its data connection early, or
    reset it), timeout, refused (no data connection came) and shutdown: one INFO line each,
    with user, client, direction, path, offset, bytes, seconds and outcome."""
    caplog.set_level(logging.INFO, "trio_ftp.audit")
    running: Running = await start_server(
        socket_timeout=0.5, wait_future_timeout=0.3, block_size=65536
    )
    big = os.urandom(8 * 1024 * 1024)
    (running.root / "big.bin").write_bytes(big)

    def run() -> None:
        with running.ftp() as ftp:
            ftp.voidcmd("TYPE I")
            ftp.retrbinary("RETR big.bin", lambda _: None, rest=1000)  # complete
            with ftp.transfercmd("RETR big.bin") as data:  # the client closes early
                data.recv(1000)
            assert ftp.getmultiline().startswith("426")  # or 226: it may have ended first
            data = ftp.transfercmd("STOR up.bin")  # a reset upload
            data.sendall(b"x" * 10000)
            data.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            data.close()
            assert ftp.getmultiline().startswith("426")
            with ftp.transfercmd("RETR big.bin") as data:  # ABOR
                data.recv(1000)
                ftp.putcmd("ABOR")
                assert ftp.getmultiline().startswith("426")
                assert ftp.getmultiline().startswith("226")
            with ftp.transfercmd("RETR big.bin") as data:  # the client stops reading
                assert ftp.getmultiline().startswith("426")  # after socket_timeout
            ftp.sendcmd("PASV")  # no data connection comes: refused
            ftp.putcmd("RETR big.bin")
            assert ftp.getmultiline().startswith("150")
            assert ftp.getmultiline().startswith("425")

    await in_thread(run)
    lines = await wait_for_lines(caplog, 6)
    outcomes = [line.split(" outcome=")[1].split()[0] for line in lines]
    assert outcomes == ["complete", "closed", "closed", "aborted", "timeout", "refused"]
    complete = lines[0]
    assert complete.startswith("[")
    assert "] transfer_finished outcome=complete direction=download" in complete
    assert f'user="{LOGIN}" path="/big.bin" offset=1000 bytes={len(big) - 1000} ' in complete
    assert "direction=upload" in lines[2]
    assert 'path="/up.bin"' in lines[2]
    for line in lines[1:]:
        assert "] transfer_aborted " in line
        assert " seconds=" in line


async def test_file_operations_and_refusals_are_recorded(
    start_server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "trio_ftp.audit")
    running = await start_server(login_failure_delay=0)

    def run() -> None:
        with running.ftp() as ftp:
            ftp.mkd("d")
            ftp.storbinary("STOR d/f", io.BytesIO(b"x"))
            ftp.sendcmd("SITE CHMOD 600 d/f")
            ftp.sendcmd("MFMT 20200102030405 d/f")
            ftp.rename("d/f", "d/g")
            ftp.delete("d/g")
            ftp.rmd("d")
        with running.ftp(login=None) as ftp:
            ftp.login()  # anonymous: read-only
            with pytest.raises(ftplib.error_perm):
                ftp.mkd("nope")
        with ftplib.FTP(timeout=10) as ftp:
            ftp.connect(running.host, running.port)
            with pytest.raises(ftplib.error_perm):
                ftp.login(LOGIN, "wrong")

    await in_thread(run)
    records = [line.split("] ", 1)[1] for line in audit_records(caplog)]
    kinds = [record.split()[0] for record in records]
    assert kinds == [
        "login", "mkdir", "transfer_finished", "chmod", "set_mtime", "rename", "delete",
        "rmdir", "logout", "login", "permission_denied", "logout", "login_failed",
    ]  # fmt: skip
    by_kind = dict(zip(kinds, records, strict=False))
    assert by_kind["chmod"] == f'chmod user="{LOGIN}" path="/d/f" mode=0600'
    assert by_kind["set_mtime"].endswith('path="/d/f" reason="Modify=20200102030405"')
    assert by_kind["rename"] == f'rename user="{LOGIN}" path="/d/f" target="/d/g"'
    assert by_kind["permission_denied"] == (
        'permission_denied user="anonymous" path="/nope" reason="MKD"'
    )
    assert by_kind["login_failed"] == f'login_failed user="{LOGIN}" failures=1'
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and r.name == "trio_ftp.audit"
    ]
    assert [r.getMessage().split("] ", 1)[1].split()[0] for r in warnings] == ["login_failed"]


async def test_a_limit_refusal_is_recorded(start_server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "trio_ftp.audit")
    running = await start_server(maximum_connections_per_ip=1)

    def run() -> None:
        with running.ftp():
            second = ftplib.FTP(timeout=10)
            with pytest.raises(ftplib.error_temp, match="421"):
                second.connect(running.host, running.port)
            second.close()

    await in_thread(run)
    records = [line.split("] ", 1)[1] for line in audit_records(caplog)]
    assert [r for r in records if r.startswith("connection_refused")] == [
        'connection_refused reason="too many connections from your address, try again later"'
    ]


async def test_an_exhausted_passive_port_pool_is_recorded(
    start_server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "trio_ftp.audit")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    running = await start_server(data_ports=range(port, port + 1))

    def run() -> None:
        with running.ftp() as first, running.ftp() as second:
            first.sendcmd("PASV")  # holds the only data port
            with pytest.raises(ftplib.error_temp, match="425"):
                second.sendcmd("PASV")

    await in_thread(run)
    records = [line.split("] ", 1)[1] for line in audit_records(caplog)]
    assert f'passive_ports_exhausted user="{LOGIN}"' in records


async def test_login_failed_events_carry_the_attempted_login(start_server) -> None:
    running = await start_server(login_failure_delay=0)

    def run() -> None:
        with ftplib.FTP(timeout=10) as ftp:
            ftp.connect(running.host, running.port)
            with pytest.raises(ftplib.error_perm):
                ftp.login("mallory", "guess")

    with running.server.events() as events:
        await in_thread(run)
        with trio.fail_after(5):
            async for event in events:
                if event.kind == "login_failed":
                    break
    assert event.user == "mallory"
    assert event.target is None
    assert event.failures == 1
