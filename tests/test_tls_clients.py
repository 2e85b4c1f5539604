"""FTPS integration tests: real TLS clients (ftplib FTP_TLS, curl, lftp) against a real server.

Explicit FTPS is ``Server(tls_context=ctx)`` (AUTH TLS, PBSZ, PROT); implicit FTPS is
``Server(ssl=ctx)`` (TLS from the first byte, data protected from the start). curl and lftp
are installed by CI (.ci/run), so these tests never skip when they are missing: they fail.
"""

from __future__ import annotations

import ftplib
import io
import os
import random
import socket
import ssl
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    FTP_ERRORS,
    LOGIN,
    PASSWORD,
    ImplicitFTP,
    MiB,
    Running,
    TLSCerts,
    in_thread,
    lftp_tls_argv,
    random_bytes,
    reply_of,
)


def payload(size: int, seed: int = 4242) -> bytes:
    """Reproducible random bytes for this module."""
    return random_bytes(size, seed)


# ftplib clients ------------------------------------------------------------------------------
class SessionReuseMixin:
    """Data connections resume the control connection's TLS session (what lftp does).

    ``reused`` records ``session_reused`` of every protected data connection.
    """

    reused: list[bool]

    def ntransfercmd(self, cmd: str, rest: Any = None) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)  # type: ignore[arg-type]
        if self._prot_p:  # type: ignore[attr-defined]
            try:
                conn = self.context.wrap_socket(  # type: ignore[attr-defined]
                    conn,
                    server_hostname=self.host,  # type: ignore[attr-defined]
                    session=self.sock.session,  # type: ignore[attr-defined]
                )
            except BaseException:
                conn.close()
                raise
            self.reused = [*getattr(self, "reused", []), conn.session_reused]
        return conn, size


class ReuseFTP_TLS(SessionReuseMixin, ftplib.FTP_TLS):
    pass


def explicit_client(running: Running, tls: TLSCerts, cls: type = ftplib.FTP_TLS) -> Any:
    """A connected FTP_TLS (control not yet protected)."""
    ftp = cls(context=tls.client_context, timeout=10)
    ftp.connect(running.host, running.port)
    return ftp


def implicit_client(running: Running, tls: TLSCerts) -> ImplicitFTP:
    ftp = ImplicitFTP(context=tls.client_context, timeout=10)
    ftp.connect(running.host, running.port)
    return ftp


def retr(ftp: ftplib.FTP, name: str) -> bytes:
    out = io.BytesIO()
    ftp.retrbinary(f"RETR {name}", out.write, blocksize=65536)
    return out.getvalue()


def list_lines(ftp: ftplib.FTP, command: str = "LIST") -> list[str]:
    lines: list[str] = []
    ftp.retrlines(command, lines.append)
    return lines


def drain_reply(ftp: ftplib.FTP, command: str) -> str:
    """Send a transfer command, read the data connection to its end whatever happens to it,
    and return the final reply (for transfers the server refuses after ``150``)."""
    try:
        conn = ftp.transfercmd(command)
    except FTP_ERRORS as exc:
        return str(exc)
    except OSError:  # the TLS handshake itself failed: the reply still comes
        return reply_of(ftp.getresp)
    with conn:
        try:
            while conn.recv(65536):
                pass
        except OSError:  # ssl.SSLError is an OSError: a dropped TLS connection
            pass
    return reply_of(ftp.voidresp)


# 1. ftplib FTP_TLS ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["explicit", "implicit"])
async def test_ftplib_tls_store_retrieve_list(start_server, tls, mode):
    """FTP_TLS with PROT P stores and retrieves 4 MiB byte for byte; LIST and MLSD show it."""
    data = payload(4 * MiB)
    if mode == "explicit":
        running = await start_server(tls_context=tls.server_context)
    else:
        running = await start_server(ssl=tls.server_context)

    def client() -> tuple[str, bool, bytes, list[str], dict[str, dict[str, str]]]:
        if mode == "explicit":
            ftp = explicit_client(running, tls)
            auth = ftp.auth()
        else:
            ftp = implicit_client(running, tls)
            auth = "(implicit)"
        with ftp:
            ftp.login(LOGIN, PASSWORD)
            ftp.prot_p()
            protected = isinstance(ftp.sock, ssl.SSLSocket)
            ftp.storbinary("STOR up.bin", io.BytesIO(data), blocksize=65536)
            back = retr(ftp, "up.bin")
            listing = list_lines(ftp)
            facts = dict(ftp.mlsd())
            ftp.quit()
        return auth, protected, back, listing, facts

    auth, protected, back, listing, facts = await in_thread(client)
    if mode == "explicit":
        assert auth[:3] == "234"
    assert protected
    assert (running.root / "up.bin").read_bytes() == data
    assert back == data
    assert len(listing) == 1
    assert listing[0].split(None, 8)[8] == "up.bin"
    assert listing[0].split()[4] == str(4 * MiB)
    assert facts["up.bin"]["type"] == "file"
    assert facts["up.bin"]["size"] == str(4 * MiB)


async def test_ftplib_implicit_data_protected_without_prot(start_server, tls, root):
    """Implicit FTPS protects data connections without PBSZ/PROT: a TLS RETR works at once."""
    data = payload(MiB, seed=3)
    (root / "f.bin").write_bytes(data)
    running = await start_server(ssl=tls.server_context)

    def client() -> bytes:
        with implicit_client(running, tls) as ftp:
            ftp.login(LOGIN, PASSWORD)
            # no PROT P sent: this only makes ftplib wrap its data sockets in TLS
            ftp._prot_p = True  # type: ignore[attr-defined]
            back = retr(ftp, "f.bin")
            ftp.quit()
        return back

    assert await in_thread(client) == data


# 2. curl ----------------------------------------------------------------------------------------
async def curl(tls: TLSCerts, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run curl (no ~/.curlrc, no proxy, errors on stderr) trusting the test CA, in a thread."""
    command = ["curl", "-q", "-sS", "--noproxy", "*", "--max-time", "25"]
    command += ["--cacert", str(tls.ca_file), *args]

    def run() -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(command, timeout=60, capture_output=True, check=False)

    return await in_thread(run)


async def curl_server(start_server: Any, tls: TLSCerts, mode: str) -> tuple[str, list[str]]:
    """Start a server for ``mode``; its base URL and the curl flags that go with it."""
    if mode == "explicit":
        running = await start_server(tls_context=tls.server_context)
        return f"ftp://{LOGIN}:{PASSWORD}@{running.host}:{running.port}/", ["--ssl-reqd"]
    running = await start_server(ssl=tls.server_context)
    return f"ftps://{LOGIN}:{PASSWORD}@{running.host}:{running.port}/", []


@pytest.mark.parametrize("mode", ["explicit", "implicit"])
async def test_curl_tls_download(start_server, tls, root, tmp_path, mode):
    """curl over FTPS downloads a 4 MiB random file byte for byte."""
    data = payload(4 * MiB, seed=11)
    (root / "big.bin").write_bytes(data)
    url, flags = await curl_server(start_server, tls, mode)
    out = tmp_path / "out.bin"
    result = await curl(tls, *flags, "-o", str(out), url + "big.bin")
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == data


async def test_curl_resumes_the_tls_session_on_data_connections(start_server, tls, root, tmp_path):
    """curl passes ``tls_require_session_reuse=True`` (docs/ftps.md says so): a download and
    an upload, each on a data connection that must resume the control TLS session."""
    data = payload(256 * 1024, seed=13)
    (root / "down.bin").write_bytes(data)
    running = await start_server(tls_context=tls.server_context, tls_require_session_reuse=True)
    url = f"ftp://{LOGIN}:{PASSWORD}@{running.host}:{running.port}/"
    out = tmp_path / "out.bin"
    result = await curl(tls, "--ssl-reqd", "-o", str(out), url + "down.bin")
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == data
    result = await curl(tls, "--ssl-reqd", "-T", str(out), url + "up.bin")
    assert result.returncode == 0, result.stderr
    assert (root / "up.bin").read_bytes() == data


@pytest.mark.parametrize("mode", ["explicit", "implicit"])
async def test_curl_tls_upload(start_server, tls, root, tmp_path, mode):
    """curl -T over FTPS uploads a 4 MiB random file byte for byte."""
    data = payload(4 * MiB, seed=12)
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    url, flags = await curl_server(start_server, tls, mode)
    result = await curl(tls, *flags, "-T", str(source), url + "up.bin")
    assert result.returncode == 0, result.stderr
    assert (root / "up.bin").read_bytes() == data


@pytest.mark.parametrize("mode", ["explicit", "implicit"])
async def test_curl_tls_listing(start_server, tls, root, mode):
    """curl over FTPS lists the root (LIST) and --list-only gives the bare names."""
    (root / "a.txt").write_bytes(b"hello\n")
    (root / "b.bin").write_bytes(bytes(range(256)))
    (root / "sub").mkdir()
    url, flags = await curl_server(start_server, tls, mode)
    listing = await curl(tls, *flags, url)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.decode().splitlines()
    assert [line.split(None, 8)[8] for line in lines] == ["a.txt", "b.bin", "sub"]
    assert lines[2].startswith("d")
    names = await curl(tls, *flags, "--list-only", url)
    assert names.returncode == 0, names.stderr
    assert names.stdout.replace(b"\r\n", b"\n") == b"a.txt\nb.bin\nsub\n"


async def test_curl_ssl_reqd_without_tls_fails(start_server, tls, root, tmp_path):
    """curl --ssl-reqd against a server without TLS fails (exit 64) and transfers nothing."""
    (root / "f.bin").write_bytes(b"not for clear text")
    running = await start_server()
    out = tmp_path / "out.bin"
    down = await curl(tls, "--ssl-reqd", "-o", str(out), running.url + "f.bin")
    assert down.returncode == 64, down.stderr
    assert down.stdout == b""
    assert not out.exists()
    source = tmp_path / "source.bin"
    source.write_bytes(b"secret upload")
    up = await curl(tls, "--ssl-reqd", "-T", str(source), running.url + "up.bin")
    assert up.returncode == 64, up.stderr
    assert sorted(p.name for p in root.iterdir()) == ["f.bin"]


# 3. lftp ----------------------------------------------------------------------------------------
async def lftp(
    running: Running, tls: TLSCerts, home: Path, cwd: Path, *commands: str
) -> subprocess.CompletedProcess[bytes]:
    """Run one lftp script (explicit FTPS forced for control and data) in a thread."""
    argv = lftp_tls_argv(tls.ca_file, running.host, running.port, *commands)
    # a private HOME: no ~/.lftprc, and lftp's history and bookmarks stay in tmp_path
    env = {**os.environ, "HOME": str(home)}
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "LFTP_HOME"):
        env.pop(name, None)

    def run() -> subprocess.CompletedProcess[bytes]:
        home.mkdir(exist_ok=True)
        return subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=60,
            capture_output=True,
            check=False,
        )

    return await in_thread(run)


@pytest.mark.parametrize("reuse", [False, True], ids=["default", "session-reuse-required"])
async def test_lftp_mput_40_files_tls13(start_server, tls, root, tmp_path, reuse):
    """lftp mput of 40 random files (100-500 KB) over TLS 1.3 (clear data refused): every file
    arrives byte for byte, also when data connections must resume the control TLS session."""
    tls.server_context.minimum_version = ssl.TLSVersion.TLSv1_3
    running = await start_server(
        tls_context=tls.server_context, tls_data_required=True, tls_require_session_reuse=reuse
    )
    source = tmp_path / "source"
    source.mkdir()
    rng = random.Random(40 + reuse)
    files = {f"f{i:02d}.bin": rng.randbytes(rng.randint(100_000, 500_000)) for i in range(40)}
    assert len(set(files.values())) == 40
    for name, data in files.items():
        (source / name).write_bytes(data)
    result = await lftp(running, tls, tmp_path / "home", source, "mput *.bin")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in root.iterdir()) == sorted(files)
    wrong = [name for name, data in files.items() if (root / name).read_bytes() != data]
    sizes = {name: (root / name).stat().st_size for name in wrong}
    assert wrong == [], (
        f"truncated or corrupted: {sizes} (expected {[len(files[n]) for n in wrong]})"
    )


async def test_lftp_get_and_listing(start_server, tls, root, tmp_path):
    """lftp over FTPS (clear data refused) downloads a 4 MiB random file byte for byte;
    cls -l and ls list it."""
    data = payload(4 * MiB, seed=13)
    (root / "big.bin").write_bytes(data)
    (root / "sub").mkdir()
    running = await start_server(tls_context=tls.server_context, tls_data_required=True)
    local = tmp_path / "local"
    local.mkdir()
    result = await lftp(
        running, tls, tmp_path / "home", local, "get big.bin -o got.bin", "cls -l", "ls"
    )
    assert result.returncode == 0, result.stderr
    assert (local / "got.bin").read_bytes() == data
    lines = result.stdout.decode().splitlines()
    # cls -l: "-rw... size date big.bin" and "drwx... sub/"; ls: the raw LIST lines
    cls_lines, ls_lines = lines[:2], lines[2:]
    assert cls_lines[0].startswith("-"), lines
    assert cls_lines[0].endswith(" big.bin"), lines
    assert str(4 * MiB) in cls_lines[0].split(), lines
    assert cls_lines[1].startswith("d"), lines
    assert cls_lines[1].endswith(" sub/"), lines
    assert [line.split(None, 8)[8] for line in ls_lines] == ["big.bin", "sub"], lines


# 4. policies --------------------------------------------------------------------------------------
async def test_tls_control_required_through_ftplib(start_server, tls):
    """tls_control_required: a clear login gets 530; after AUTH TLS the same login works."""
    running = await start_server(tls_context=tls.server_context, tls_control_required=True)

    def client() -> tuple[str, str, str]:
        plain = running.ftp(login=None)
        with plain:
            with pytest.raises(ftplib.error_perm) as info:
                plain.login(LOGIN, PASSWORD)
            plain.quit()
        with explicit_client(running, tls) as ftp:
            auth = ftp.auth()
            login = ftp.login(LOGIN, PASSWORD)
            ftp.quit()
        return str(info.value), auth, login

    refused, auth, login = await in_thread(client)
    assert refused[:3] == "530"
    assert auth[:3] == "234"
    assert login[:3] == "230"


async def test_tls_data_required_through_ftplib(start_server, tls, root):
    """tls_data_required: RETR without PROT P gets 521, PROT C gets 534, with PROT P it works."""
    (root / "f.bin").write_bytes(b"protected bytes")
    running = await start_server(tls_context=tls.server_context, tls_data_required=True)

    def client() -> tuple[str, bytes, str, bytes]:
        with explicit_client(running, tls) as ftp:
            ftp.auth()
            ftp.login(LOGIN, PASSWORD)
            with pytest.raises(ftplib.error_perm) as info:
                retr(ftp, "f.bin")
            ftp.prot_p()
            first = retr(ftp, "f.bin")
            clear = reply_of(ftp.prot_c)
            second = retr(ftp, "f.bin")  # the 534 left PROT P in force
            ftp.quit()
        return str(info.value), first, clear, second

    refused, first, clear, second = await in_thread(client)
    assert refused[:3] == "521"
    assert first == b"protected bytes"
    assert clear[:3] == "534"
    assert second == b"protected bytes"


@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"]
)
async def test_tls_require_session_reuse_through_ftplib(start_server, tls, root, version):
    """tls_require_session_reuse: plain FTP_TLS (new TLS session per data connection) gets
    425; a client resuming the control session on its data connections transfers."""
    (root / "f.bin").write_bytes(payload(MiB, seed=14))
    tls.server_context.minimum_version = tls.server_context.maximum_version = version
    # The refused data connection is answered 425 once wait_future_timeout is over.
    running = await start_server(
        tls_context=tls.server_context, tls_require_session_reuse=True, wait_future_timeout=0.3
    )

    def fresh() -> tuple[str, str]:
        with explicit_client(running, tls) as ftp:
            ftp.auth()
            ftp.login(LOGIN, PASSWORD)
            ftp.prot_p()
            ftp.voidcmd("TYPE I")
            reply = drain_reply(ftp, "RETR f.bin")
            after = ftp.sendcmd("NOOP")  # the session survives the refused data connection
            ftp.quit()
        return reply, after

    def resuming() -> tuple[bytes, list[bool]]:
        with explicit_client(running, tls, ReuseFTP_TLS) as ftp:
            ftp.auth()
            ftp.login(LOGIN, PASSWORD)
            ftp.voidcmd("NOOP")  # TLS 1.3: the session tickets are read with this reply
            ftp.prot_p()
            back = retr(ftp, "f.bin")
            ftp.storbinary("STOR copy.bin", io.BytesIO(back))
            ftp.quit()
        return back, ftp.reused

    reply, after = await in_thread(fresh)
    assert reply[:3] == "425"
    assert "reuse" in reply
    assert after[:3] == "200"
    back, reused = await in_thread(resuming)
    assert back == payload(MiB, seed=14)
    assert reused == [True, True]
    assert (root / "copy.bin").read_bytes() == back


# 5. tls_strict_eof ------------------------------------------------------------------------------
def upload_ending(running: Running, tls: TLSCerts, data: bytes, ending: str) -> str:
    """STOR ``data`` on a TLS data connection ended by ``ending``; the final reply.

    ``close_notify``: ``unwrap()`` (TLS goodbye, then FIN). ``fin``: the TCP socket is closed
    under the TLS layer (a bare FIN, a "ragged EOF"). ``reset``: ``SO_LINGER`` (1, 0) then
    close, so the kernel sends a RST (and drops whatever it had not sent yet).
    """
    with explicit_client(running, tls) as ftp:
        ftp.auth()
        ftp.login(LOGIN, PASSWORD)
        ftp.prot_p()
        ftp.voidcmd("TYPE I")
        conn = ftp.transfercmd("STOR up.bin")
        assert isinstance(conn, ssl.SSLSocket)
        try:
            conn.sendall(data)
        except BaseException:
            conn.close()
            raise
        if ending == "close_notify":
            conn.unwrap().close()
        elif ending == "fin":
            socket.socket(fileno=conn.detach()).close()
        else:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
        reply = reply_of(ftp.voidresp)
        ftp.quit()
    return reply


@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
@pytest.mark.parametrize("ending", ["close_notify", "fin", "reset"])
async def test_tls_upload_endings(start_server, tls, root, strict, ending):
    """An upload ended by close_notify is 226 and a bare FIN is 226 unless tls_strict_eof
    (then 426), both with every byte on disk; a reset is 426 in both modes."""
    # big enough that a reset right after sendall() usually lands before the server read it all
    data = payload(8 * MiB if ending == "reset" else 2 * MiB, seed=15)
    running = await start_server(tls_context=tls.server_context, tls_strict_eof=strict)
    reply = await in_thread(upload_ending, running, tls, data, ending)
    stored = (root / "up.bin").read_bytes() if (root / "up.bin").exists() else None
    if ending == "close_notify" or (ending == "fin" and not strict):
        assert reply[:3] == "226", reply
        assert stored == data
    elif ending == "fin":
        assert reply[:3] == "426", reply
        assert stored == data  # the bytes arrived; only the missing close_notify is refused
    else:
        # The server never sees an end of file, only the reset: 426, whether or not the RST
        # arrived before the server had read every byte (then the file is complete).
        assert reply[:3] == "426", reply
        assert stored is None or data.startswith(stored)
