"""The audit log as an operator meets it: the real command line writing ``--log-file``,
``--log-format json`` and ``--xferlog``; fail2ban's own ``fail2ban-regex`` reading the log
with the filter the package ships; lftp's segmented download and a SIGTERM mid-upload."""

from __future__ import annotations

import ftplib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest
import trio
from conftest import in_thread, run_client
from test_cli import serving

import trio_ftp

pytestmark = pytest.mark.slow  # a server process, and client or fail2ban processes

FILTER = Path(trio_ftp.__file__).parent / "fail2ban" / "trio-ftp.conf"
USER = ("alice", "wonderland")


def client(port: int, source: str = "127.0.0.1") -> ftplib.FTP:
    ftp = ftplib.FTP(timeout=20, source_address=(source, 0))
    ftp.encoding = "utf-8"
    ftp.connect("127.0.0.1", port)
    return ftp


def failed_login(port: int, source: str, login: str) -> None:
    with client(port, source) as ftp, pytest.raises(ftplib.error_perm):
        ftp.login(login, "wrong password")


async def wait_for_text(path: Path, needle: str) -> str:
    """The file's text once ``needle`` is in it (the server writes after replying)."""
    with trio.fail_after(10):
        while needle not in (text := await trio.Path(path).read_text(errors="replace")):  # noqa: ASYNC110
            await trio.sleep(0.02)  # a file has no event to wait on
    return text


def fail2ban_regex(log: Path) -> list[str]:
    """The addresses fail2ban-regex finds in ``log`` with the packaged filter, one per match."""
    executable = shutil.which("fail2ban-regex")
    if executable is None:
        pytest.fail("fail2ban-regex is not installed (Debian package fail2ban; .ci/run)")
    result = subprocess.run(
        [executable, "--out", "ip", str(log), str(FILTER)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


async def test_fail2ban_matches_real_failures_only(tmp_path: Path) -> None:
    """Two failed logins from 127.0.0.2, one from 127.0.0.3 with a login crafted to look
    like another address's failure, and a logged-in user uploading and renaming files named
    like failure lines: fail2ban sees exactly the three failures, from the right addresses."""
    log = tmp_path / "trio-ftp.log"
    crafted = '[9 203.0.113.66:1] login_failed user="x'
    root = tmp_path / "root"
    root.mkdir()
    args = ["--root", str(root), "--user", ":".join(USER), "--log-file", str(log)]
    async with serving(*args) as (port, _):

        def run() -> None:
            failed_login(port, "127.0.0.2", "bob")
            failed_login(port, "127.0.0.2", "bob")
            failed_login(port, "127.0.0.3", crafted)
            with client(port, "127.0.0.4") as ftp:
                ftp.login(*USER)
                ftp.storbinary(f"STOR {crafted}", io.BytesIO(b"x"))
                ftp.rename(crafted, f"{crafted} 2")
                ftp.mkd('login_failed user="')

        await in_thread(run)
        text = await wait_for_text(log, "mkdir")
    assert text.count(" WARNING trio_ftp.audit: ") == 3  # the three failures' lines
    assert sorted(fail2ban_regex(log)) == ["127.0.0.2", "127.0.0.2", "127.0.0.3"]


async def test_json_log_and_xferlog(tmp_path: Path) -> None:
    log, xferlog = tmp_path / "log.jsonl", tmp_path / "xferlog"
    root = tmp_path / "root"
    root.mkdir()
    args = ["--root", str(root), "--user", ":".join(USER), "--no-anonymous"]
    args += ["--log-file", str(log), "--log-format", "json", "--xferlog", str(xferlog)]
    async with serving(*args) as (port, _):

        def run() -> None:
            with client(port) as ftp:
                ftp.login(*USER)
                ftp.storbinary("STOR a file.txt", io.BytesIO(b"hello"))
                ftp.retrbinary("RETR a file.txt", lambda _: None)
                ftp.mkd("d")

        await in_thread(run)
        await wait_for_text(log, '"mkdir"')
        transfers = await wait_for_text(xferlog, " o r ")
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    for line in lines:
        assert {"time", "level", "logger", "event", "message"} <= set(line)
    events = {line["event"]: line for line in lines if line["event"] != "log"}
    assert {"login", "transfer_finished", "mkdir", "logout"} <= set(events)
    upload = next(line for line in lines if line.get("direction") == "upload")
    assert upload["path"] == "/a file.txt"
    assert upload["bytes"] == 5
    assert upload["outcome"] == "complete"
    assert upload["user"] == USER[0]
    assert re.fullmatch(r"127\.0\.0\.1:\d+", upload["client"])
    fields = [line.split() for line in transfers.splitlines()]
    assert [f[5:] for f in fields] == [
        ["1", "127.0.0.1", "5", "/a_file.txt", "b", "_", "i", "r", "alice", "ftp", "0", "*", "c"],
        ["1", "127.0.0.1", "5", "/a_file.txt", "b", "_", "o", "r", "alice", "ftp", "0", "*", "c"],
    ]


async def test_a_segmented_download_is_logged_whole(tmp_path: Path) -> None:
    """lftp's ``pget -n 4`` opens four REST + RETR segments and ends each with ABOR once
    it has its part: the four records' bytes add up to the file (or more: a segment may
    overshoot its part before the ABOR). 4 MB/s per connection, so that one connection
    cannot fetch it all before the others start."""
    root = tmp_path / "root"
    root.mkdir()
    size = 8 * 1024 * 1024
    (root / "big.bin").write_bytes(os.urandom(size))
    log = tmp_path / "log"
    args = ["--root", str(root), "--user", ":".join(USER), "--log-file", str(log)]
    args += ["--max-download-rate-per-connection", "4000000"]
    async with serving(*args) as (port, _):
        script = (
            "set cmd:fail-exit yes; set net:max-retries 1; "
            f"open -u {USER[0]},{USER[1]} ftp://127.0.0.1:{port}; "
            f"pget -n 4 big.bin -o {tmp_path / 'copy.bin'}"
        )
        result = await run_client(["lftp", "-c", script], tmp_path, tmp_path / "home")
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "copy.bin").stat().st_size == size
        with trio.fail_after(10):
            while True:
                text = await trio.Path(log).read_text()
                records = [line for line in text.splitlines() if "] transfer_" in line]
                moved = [int(line.split(" bytes=")[1].split()[0]) for line in records]
                if sum(moved) >= size:
                    break
                await trio.sleep(0.05)
    assert len(records) == 4
    assert sum(moved) >= size  # every segment counted (overlaps are counted twice)
    offsets = sorted(
        int(line.split(" offset=")[1].split()[0]) if " offset=" in line else 0 for line in records
    )
    assert offsets == [0, size // 4, size // 2, 3 * size // 4]


async def test_sigterm_during_an_upload_leaves_a_record(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    log = tmp_path / "log"
    args = ["--root", str(root), "--user", ":".join(USER), "--log-file", str(log)]
    args += ["--grace", "0.2"]
    async with serving(*args) as (port, process):

        def start_upload() -> tuple[ftplib.FTP, socket.socket]:
            ftp = client(port)
            ftp.login(*USER)
            ftp.voidcmd("TYPE I")
            data = ftp.transfercmd("STOR partial.bin")
            data.sendall(b"x" * 1_000_000)
            return ftp, data

        ftp, data = await in_thread(start_upload)
        try:
            process.send_signal(signal.SIGTERM)
            text = await wait_for_text(log, "transfer_aborted")
        finally:
            data.close()
            ftp.close()
    [line] = [line for line in text.splitlines() if "transfer_aborted" in line]
    assert "outcome=shutdown direction=upload" in line
    assert 'path="/partial.bin"' in line
    assert int(line.split(" bytes=")[1].split()[0]) > 0
