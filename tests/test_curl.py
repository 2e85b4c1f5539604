"""Integration tests driving a real server with the curl command-line client."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import LOGIN, PASSWORD, in_thread

# CI installs curl (.ci/run); elsewhere a machine without it skips these, never CI.
pytestmark = pytest.mark.skipif(
    shutil.which("curl") is None and not os.environ.get("CI"), reason="curl not installed"
)

MiB = 1024 * 1024


def payload(size: int, seed: int = 99) -> bytes:
    return random.Random(seed).randbytes(size)


async def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    """Run curl (no ~/.curlrc, no proxy, errors on stderr) in a thread."""
    command = ["curl", "-q", "-sS", "--noproxy", "*", "--max-time", "25", *args]

    def run() -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(command, timeout=30, capture_output=True, check=False)

    return await in_thread(run)


def populate(root: Path) -> None:
    (root / "a.txt").write_bytes(b"hello\n")
    (root / "b.bin").write_bytes(bytes(range(256)) * 4)
    (root / "sub").mkdir()


async def test_list_root(start_server, root):
    """curl on the root URL prints a LIST whose lines end with every name."""
    populate(root)
    running = await start_server()
    result = await curl(running.url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert [line.split(None, 8)[8] for line in lines] == ["a.txt", "b.bin", "sub"]
    assert lines[0].startswith("-")
    assert lines[2].startswith("d")
    assert lines[1].split()[4] == "1024"


async def test_list_only(start_server, root):
    """--list-only (NLST) prints the bare names, sorted, one line each."""
    populate(root)
    running = await start_server()
    result = await curl("--list-only", running.url)
    assert result.returncode == 0, result.stderr
    # the server sends CRLF; curl turns CRLF into LF for ASCII transfers on Unix
    assert result.stdout.replace(b"\r\n", b"\n") == b"a.txt\nb.bin\nsub\n"


async def test_download_byte_exact(start_server, root, tmp_path):
    """A 3 MiB random file downloads byte for byte with -o."""
    data = payload(3 * MiB)
    (root / "big.bin").write_bytes(data)
    running = await start_server()
    out = tmp_path / "out.bin"
    result = await curl("-o", str(out), running.url + "big.bin")
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == data


async def test_upload_byte_exact(start_server, root, tmp_path):
    """-T uploads a 3 MiB random file byte for byte."""
    data = payload(3 * MiB, seed=5)
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    running = await start_server()
    result = await curl("-T", str(source), running.url + "up.bin")
    assert result.returncode == 0, result.stderr
    assert (root / "up.bin").read_bytes() == data


async def test_resume_upload(start_server, root, tmp_path):
    """-C - -T resumes an upload from the server's SIZE: the result is the whole file."""
    data = payload(3 * MiB, seed=6)
    half = len(data) // 2 + 3
    (root / "resumed.bin").write_bytes(data[:half])
    source = tmp_path / "full.bin"
    source.write_bytes(data)
    running = await start_server()
    result = await curl("-C", "-", "-T", str(source), running.url + "resumed.bin")
    assert result.returncode == 0, result.stderr
    assert (root / "resumed.bin").read_bytes() == data


async def test_range_download(start_server, root):
    """-r 100-199 gives exactly those 100 bytes."""
    data = payload(3 * MiB, seed=7)
    (root / "big.bin").write_bytes(data)
    running = await start_server()
    result = await curl("-r", "100-199", running.url + "big.bin")
    assert result.returncode == 0, result.stderr
    assert result.stdout == data[100:200]


async def test_resume_download(start_server, root, tmp_path):
    """-C - continues a partial download (REST + RETR): the result is the whole file."""
    data = payload(3 * MiB, seed=8)
    (root / "big.bin").write_bytes(data)
    out = tmp_path / "partial.bin"
    out.write_bytes(data[: MiB + 11])
    running = await start_server()
    result = await curl("-C", "-", "-o", str(out), running.url + "big.bin")
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == data


@pytest.mark.parametrize("mode", ["--ftp-pasv", "--disable-epsv"])
async def test_passive_modes(start_server, root, tmp_path, mode):
    """Both EPSV (curl's default with --ftp-pasv) and plain PASV (--disable-epsv) transfer."""
    data = payload(MiB, seed=9)
    (root / "f.bin").write_bytes(data)
    running = await start_server()
    out = tmp_path / "out.bin"
    down = await curl(mode, "-o", str(out), running.url + "f.bin")
    assert down.returncode == 0, down.stderr
    assert out.read_bytes() == data
    up = await curl(mode, "-T", str(out), running.url + "copy.bin")
    assert up.returncode == 0, up.stderr
    assert (root / "copy.bin").read_bytes() == data
    listing = await curl(mode, "--list-only", running.url)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.replace(b"\r\n", b"\n") == b"copy.bin\nf.bin\n"


async def test_quote_dele(start_server, root):
    """-Q "DELE name" runs the quote command before the listing: the file is gone."""
    populate(root)
    running = await start_server()
    result = await curl("-Q", "DELE a.txt", "--list-only", running.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.replace(b"\r\n", b"\n") == b"b.bin\nsub\n"
    assert not (root / "a.txt").exists()


async def test_quote_failure_exit_code(start_server, root):
    """A quote command the server refuses (550) makes curl fail with exit code 21."""
    running = await start_server()
    result = await curl("-Q", "DELE missing.txt", running.url)
    assert result.returncode == 21, result.stderr


async def test_create_dirs(start_server, root, tmp_path):
    """--ftp-create-dirs makes the missing nested directories of an upload."""
    data = payload(100_000, seed=10)
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    running = await start_server()
    result = await curl("--ftp-create-dirs", "-T", str(source), running.url + "x/y/z/f.bin")
    assert result.returncode == 0, result.stderr
    assert (root / "x" / "y" / "z" / "f.bin").read_bytes() == data


async def test_cwd_into_subdirectory(start_server, root):
    """A download from a subdirectory URL (curl CWDs into it) works."""
    (root / "d1").mkdir()
    (root / "d1" / "d2").mkdir()
    (root / "d1" / "d2" / "f.txt").write_bytes(b"deep")
    running = await start_server()
    result = await curl(running.url + "d1/d2/f.txt")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"deep"


async def test_wrong_password(start_server):
    """A wrong password makes curl fail with exit code 67 (login denied)."""
    running = await start_server()
    url = f"ftp://{LOGIN}:not-{PASSWORD}@{running.host}:{running.port}/"
    result = await curl(url)
    assert result.returncode == 67, result.stderr


async def test_missing_file(start_server):
    """Downloading a missing file makes curl fail with exit code 78 (remote file not found)."""
    running = await start_server()
    result = await curl(running.url + "missing.bin")
    assert result.returncode == 78, result.stderr
