"""Protocol behaviour over loopback: STOU, pipelining, commands answered mid-transfer."""

from __future__ import annotations

import ftplib
import hashlib
import io
import os
import socket

import pytest
from conftest import LOGIN, PASSWORD, in_thread

from trio_ftp import Server, User


def read_reply(file) -> str:
    """One whole reply (multi-line aware) from a socket file."""
    line = file.readline()
    text = line
    if line[3:4] == "-":
        while True:
            more = file.readline()
            text += more
            if more[:3] == line[:3] and more[3:4] == " ":
                break
    return text


async def test_stou_makes_unique_names(start_server):
    """STOU answers 150 FILE: <name>; two uploads with the same base get two names."""
    running = await start_server()
    (running.root / "report").write_bytes(b"old")

    def client() -> None:
        with running.ftp() as ftp:
            for payload in (b"first", b"second"):
                ftp.voidcmd("TYPE I")
                conn, _ = ftp.ntransfercmd("STOU report")
                conn.sendall(payload)
                conn.close()
                ftp.voidresp()

    await in_thread(client)
    assert (running.root / "report").read_bytes() == b"old"
    assert (running.root / "report.1").read_bytes() == b"first"
    assert (running.root / "report.2").read_bytes() == b"second"


async def test_stou_150_text(start_server):
    """The 150 reply of STOU names the file as RFC 1123 asks (FILE: name)."""
    running = await start_server()

    def client() -> str:
        with running.ftp() as ftp:
            ftp.voidcmd("TYPE I")
            host, port = ftplib.parse227(ftp.sendcmd("PASV"))
            with socket.create_connection((host, port), timeout=10):
                opening = ftp.sendcmd("STOU")
            ftp.voidresp()
            return opening

    assert await in_thread(client) == "150 FILE: stou"
    assert (running.root / "stou").read_bytes() == b""


async def test_pipelined_commands_answered_in_order(start_server):
    """Commands sent in one write get their replies in command order."""
    running = await start_server()

    def client() -> list[str]:
        with socket.create_connection((running.host, running.port), timeout=10) as sock:
            file = sock.makefile("r", encoding="utf-8", newline="\r\n")
            read_reply(file)
            sock.sendall(
                f"USER {LOGIN}\r\nPASS {PASSWORD}\r\nMKD p\r\nCWD p\r\nPWD\r\n"
                "SYST\r\nNOOP\r\nFEAT\r\nCDUP\r\nRMD p\r\nQUIT\r\n".encode()
            )
            return [read_reply(file)[:3] for _ in range(11)]

    codes = await in_thread(client)
    assert codes == ["331", "230", "257", "250", "257", "215", "200", "211", "250", "250", "221"]


async def test_stat_and_noop_answered_during_transfer(start_server):
    """While a download runs, NOOP and STAT are answered at once; PWD waits for the 226."""
    running = await start_server(block_size=4096)
    (running.root / "big.bin").write_bytes(os.urandom(8 * 1024 * 1024))

    def client() -> list[str]:
        with running.ftp() as ftp:
            ftp.voidcmd("TYPE I")
            conn = ftp.transfercmd("RETR big.bin")
            conn.recv(65536)  # the transfer is running and blocked on us
            ftp.putcmd("NOOP")
            replies = [ftp.getresp()[:3]]
            ftp.putcmd("STAT")
            status = ftp.getmultiline()
            replies.append(status[:3])
            replies.append("in progress" if "transfer in progress: RETR" in status else status)
            ftp.putcmd("PWD")
            while conn.recv(1 << 20):
                pass
            conn.close()
            replies.append(ftp.getresp()[:3])  # 226 for the RETR comes first
            replies.append(ftp.getresp()[:3])  # then the PWD's 257
            return replies

    assert await in_thread(client) == ["200", "211", "in progress", "226", "257"]


async def test_list_flags_are_not_paths(start_server):
    """LIST -la / -a / -R lists the directory instead of looking for a file named '-la'."""
    running = await start_server()
    (running.root / "x.txt").write_bytes(b"x")

    def client() -> list[list[str]]:
        with running.ftp() as ftp:
            listings = []
            for command in ("LIST -la", "LIST -a", "LIST -al .", "NLST -a"):
                lines: list[str] = []
                ftp.retrlines(command, lines.append)
                listings.append([line.split()[-1] for line in lines])
            return listings

    assert await in_thread(client) == [["x.txt"]] * 4


async def test_ftplib_size_needs_binary(start_server):
    """SIZE in ASCII mode is 550 (the size would depend on conversion); in TYPE I it is exact."""
    running = await start_server()
    (running.root / "f").write_bytes(b"a\nb\n")

    def client() -> tuple[str, int | None]:
        with running.ftp() as ftp:
            ftp.voidcmd("TYPE A")
            try:
                ftp.size("f")
            except ftplib.error_perm as exc:
                ascii_reply = str(exc)[:3]
            ftp.voidcmd("TYPE I")
            return ascii_reply, ftp.size("f")

    assert await in_thread(client) == ("550", 4)


async def test_non_utf8_names_round_trip(start_server):
    """A name that is not valid UTF-8 is listed as its bytes and can be fetched, renamed and
    deleted with those bytes; an invalid name that does not exist (MKD, or an RNTO target)
    is still 501: such names are never created."""
    running = await start_server()
    raw_name = b"caf\xe9.txt"
    (running.root / os.fsdecode(raw_name)).write_bytes(b"latin-1 named")

    def client() -> tuple[list[str], bytes, list[str], str]:
        with running.ftp() as ftp:
            ftp.encoding = "latin-1"  # hands us the raw bytes as code points 0-255
            names = ftp.nlst()
            out: list[bytes] = []
            ftp.retrbinary("RETR caf\xe9.txt", out.append)
            ftp.rename("caf\xe9.txt", "cafe.txt")
            after = ftp.nlst()
            ftp.delete("cafe.txt")
            try:
                ftp.sendcmd("MKD new\xe9")
            except ftplib.error_perm as exc:
                refused = str(exc)[:3]
            return names, b"".join(out), after, refused

    names, data, after, refused = await in_thread(client)
    assert names == ["caf\xe9.txt"]
    assert data == b"latin-1 named"
    assert after == ["cafe.txt"]
    assert refused == "501"
    assert os.listdir(running.root) == []


async def test_passive_port_theft_is_refused(start_server, caplog):
    """A data connection to a PASV port from another address is dropped (and logged), and
    the listener keeps waiting for the control peer, whose transfer then works."""
    running = await start_server(wait_future_timeout=5)
    (running.root / "secret.bin").write_bytes(b"only for the logged-in client")

    def client() -> tuple[bytes, bytes]:
        with running.ftp() as ftp:
            ftp.voidcmd("TYPE I")
            host, port = ftplib.parse227(ftp.sendcmd("PASV"))
            thief = socket.socket()
            thief.bind(("127.0.0.2", 0))
            thief.settimeout(10)
            thief.connect((host, port))
            stolen = thief.recv(100)  # closed by the server: b""
            thief.close()
            with socket.create_connection((host, port), timeout=10) as data:
                ftp.sendcmd("RETR secret.bin")
                received = b""
                while chunk := data.recv(65536):
                    received += chunk
            ftp.voidresp()
            return stolen, received

    stolen, received = await in_thread(client)
    assert stolen == b""
    assert received == b"only for the logged-in client"
    assert any("not the control peer" in record.getMessage() for record in caplog.records)


async def test_epsv_over_ipv6(nursery, root):
    """A server listening on ::1 answers EPSV with a port reachable over IPv6."""
    server = Server([User(LOGIN, PASSWORD, base_path=root)])
    try:
        _, port = await nursery.start(server.serve, "::1", 0)
    except OSError:
        pytest.skip("this machine has no IPv6 loopback")
    (root / "six.txt").write_bytes(b"over ipv6")

    def client() -> tuple[str, bytes]:
        ftp = ftplib.FTP(timeout=10)
        ftp.connect("::1", port)
        ftp.login(LOGIN, PASSWORD)
        refused = _code(ftp, "EPSV 1")
        out: list[bytes] = []
        ftp.retrbinary("RETR six.txt", out.append)  # ftplib uses EPSV on IPv6
        ftp.quit()
        return refused, b"".join(out)

    assert await in_thread(client) == ("522", b"over ipv6")
    await server.close()


def _code(ftp: ftplib.FTP, command: str) -> str:
    try:
        return ftp.sendcmd(command)[:3]
    except ftplib.Error as exc:
        return str(exc)[:3]


async def test_type_a_converts_line_endings_both_ways(start_server):
    """TYPE A sends LF files as CRLF and stores CRLF uploads as LF; TYPE I and TYPE L 8 move
    bytes unchanged."""
    running = await start_server()
    (running.root / "unix.txt").write_bytes(b"one\ntwo\r\nthree\n" * 5000)

    def transfer(kind: str, command: str, payload: bytes = b"") -> bytes:
        with running.ftp() as ftp:
            ftp.voidcmd(f"TYPE {kind}")
            conn = ftp.transfercmd(command)
            received = b""
            with conn:
                if payload:
                    conn.sendall(payload)
                else:
                    while chunk := conn.recv(65536):
                        received += chunk
            ftp.voidresp()
            return received

    def client() -> list[bytes]:
        return [
            transfer("A", "RETR unix.txt"),
            transfer("I", "RETR unix.txt"),
            transfer("L 8", "RETR unix.txt"),
            transfer("A", "STOR up.txt", b"x\r\ny\r\nlone\rcr\r\n" * 5000),
        ]

    ascii_download, binary, local8, _ = await in_thread(client)
    assert ascii_download == b"one\r\ntwo\r\nthree\r\n" * 5000
    assert binary == local8 == b"one\ntwo\r\nthree\n" * 5000
    assert (running.root / "up.txt").read_bytes() == b"x\ny\nlone\rcr\n" * 5000


async def test_ftplib_text_mode(start_server):
    """ftplib's retrlines/storlines (TYPE A) round-trip a text file; it is stored with LF."""
    running = await start_server()

    def client() -> list[str]:
        with running.ftp() as ftp:
            ftp.storlines("STOR notes.txt", io.BytesIO(b"alpha\nbeta\n"))
            lines: list[str] = []
            ftp.retrlines("RETR notes.txt", lines.append)
            return lines

    assert await in_thread(client) == ["alpha", "beta"]
    assert (running.root / "notes.txt").read_bytes() == b"alpha\nbeta\n"


async def test_rang_limits_retr_and_hash(start_server):
    """RANG start end: RETR sends exactly those bytes, HASH digests exactly them; RANG 1 0
    clears; REST replaces RANG; uploads refuse a pending RANG; bad arguments are 501."""
    running = await start_server()
    payload = os.urandom(300_000)
    (running.root / "f.bin").write_bytes(payload)

    def client() -> dict[str, object]:
        results: dict[str, object] = {}
        with running.ftp() as ftp:
            ftp.voidcmd("TYPE I")
            results["rang"] = ftp.sendcmd("RANG 1000 70999")[:3]
            chunks: list[bytes] = []
            ftp.retrbinary("RETR f.bin", chunks.append)
            results["retr"] = b"".join(chunks)
            ftp.sendcmd("RANG 10 19")
            results["hash"] = ftp.sendcmd("HASH f.bin")
            ftp.sendcmd("RANG 5 9")
            ftp.sendcmd("RANG 1 0")
            chunks = []
            ftp.retrbinary("RETR f.bin", chunks.append)
            results["cleared"] = len(b"".join(chunks))
            ftp.sendcmd("RANG 5 9")
            ftp.sendcmd("REST 299990")
            chunks = []
            ftp.retrbinary("RETR f.bin", chunks.append)
            results["rest_wins"] = b"".join(chunks)
            ftp.sendcmd("RANG 0 9")
            ftp.sendcmd("PASV")
            results["stor"] = _code(ftp, "STOR up.bin")
            results["bad"] = [_code(ftp, "RANG 9 1"), _code(ftp, "RANG x y"), _code(ftp, "RANG 1")]
        return results

    results = await in_thread(client)
    assert results["rang"] == "350"
    assert results["retr"] == payload[1000:71000]
    digest = hashlib.sha256(payload[10:20]).hexdigest()
    assert results["hash"] == f"213 SHA-256 10-19 {digest} f.bin"
    assert results["cleared"] == len(payload)
    assert results["rest_wins"] == payload[299990:]
    assert results["stor"] == "503"
    assert results["bad"] == ["501", "501", "501"]
