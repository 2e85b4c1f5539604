"""Testing your own FTP client code against a real server with trio_ftp's pytest fixtures.

Copy this file into your test suite. Installing trio_ftp registers the fixtures; the trio
ones (``ftp_server``, ``ftps_server``, ``ftp_server_factory``) need pytest-trio and a trio
test (``trio_mode = true`` in your pytest configuration, or ``@pytest.mark.trio``); the
threaded ones (``ftp_server_thread``...) work in any test suite::

    pip install trio_ftp pytest pytest-trio
    python -m pytest test_with_fixtures.py

Each server listens on 127.0.0.1 on a free port and serves a fresh directory
(``server.root``) to ``server.login``/``server.password`` (read/write) and to anonymous
users (read-only).
"""

from __future__ import annotations

import ftplib
import io

import pytest
import trio


def download(ftp: ftplib.FTP, name: str) -> bytes:
    out = io.BytesIO()
    ftp.retrbinary(f"RETR {name}", out.write)
    return out.getvalue()


# trio tests: blocking ftplib calls go to a worker thread ------------------------------------


@pytest.mark.trio
async def test_upload_lands_in_root(ftp_server):
    """An upload through ftplib appears in the served directory, byte for byte."""
    payload = bytes(range(256)) * 100

    def upload() -> None:
        with ftplib.FTP(timeout=10) as ftp:
            ftp.connect(ftp_server.host, ftp_server.port)
            ftp.login(ftp_server.login, ftp_server.password)
            ftp.storbinary("STOR data.bin", io.BytesIO(payload))

    await trio.to_thread.run_sync(upload)
    assert (ftp_server.root / "data.bin").read_bytes() == payload


@pytest.mark.trio
async def test_anonymous_is_read_only(ftp_server):
    """Anonymous users can download but not upload."""
    (ftp_server.root / "readme.txt").write_bytes(b"hello\n")

    def anonymous() -> bytes:
        with ftplib.FTP(timeout=10) as ftp:
            ftp.connect(ftp_server.host, ftp_server.port)
            ftp.login()  # anonymous
            with pytest.raises(ftplib.error_perm, match=r"^553"):
                ftp.storbinary("STOR nope.txt", io.BytesIO(b"x"))
            return download(ftp, "readme.txt")

    assert await trio.to_thread.run_sync(anonymous) == b"hello\n"
    assert not (ftp_server.root / "nope.txt").exists()


# plain (synchronous) tests: the server runs in a background thread ------------------------


def test_download_with_threaded_server(ftp_server_thread):
    """A plain test downloads a file from the threaded server."""
    (ftp_server_thread.root / "report.csv").write_bytes(b"a,b\r\n1,2\r\n")
    with ftplib.FTP(timeout=10) as ftp:
        ftp.connect(ftp_server_thread.host, ftp_server_thread.port)
        ftp.login(ftp_server_thread.login, ftp_server_thread.password)
        assert ftp.nlst() == ["report.csv"]
        assert download(ftp, "report.csv") == b"a,b\r\n1,2\r\n"


def test_wrong_password_is_refused(ftp_server_thread):
    """A wrong password is answered 530."""
    with ftplib.FTP(timeout=10) as ftp:
        ftp.connect(ftp_server_thread.host, ftp_server_thread.port)
        with pytest.raises(ftplib.error_perm, match=r"^530"):
            ftp.login(ftp_server_thread.login, "not the password")
