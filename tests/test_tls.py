"""FTPS: the TLS state machine (memory streams), tickets, handshake failures, ABOR over TLS."""

from __future__ import annotations

import contextlib
import ftplib
import io
import os
import signal
import socket
import ssl
import subprocess
import sys
import time

import pytest
import trio
import trio.testing
from conftest import LOGIN, PASSWORD, ImplicitFTP, in_thread, in_thread_with_cpu
from memory_client import start_memory_session

from trio_ftp import MemoryPathIO, Server, User
from trio_ftp.tls import wrap_server_side


def tls_server(tls, **kwargs):
    return Server([User("user", "pw")], path_io_factory=MemoryPathIO, **kwargs)


async def upgrade(client, tls):
    """Send AUTH TLS and complete the client side of the handshake."""
    assert await client.code("AUTH TLS") == "234"
    assert client.buffer == b""
    stream = trio.SSLStream(client.stream, tls.client_context, server_hostname="127.0.0.1")
    with trio.fail_after(10):
        await stream.do_handshake()
    client.stream = stream


async def test_auth_without_tls_configured_is_502(nursery):
    """AUTH TLS on a server without TLS gets 502; FEAT does not offer it."""
    client = await start_memory_session(nursery, Server([User("user", "pw")]))
    await client.reply()
    assert await client.code("AUTH TLS") == "502"
    _, lines = await client.command("FEAT")
    assert not any("AUTH" in line or "PROT" in line for line in lines)


async def test_feat_offers_tls(nursery, tls):
    """With tls_context, FEAT lists AUTH TLS, PBSZ and PROT."""
    client = await start_memory_session(nursery, tls_server(tls, tls_context=tls.server_context))
    await client.reply()
    code, lines = await client.command("FEAT")
    assert code == "211"
    assert {"AUTH TLS", "PBSZ", "PROT"} <= {line.strip() for line in lines}


async def test_tls_sequence(nursery, tls):
    """PBSZ/PROT need AUTH, PROT needs PBSZ; levels S/E 536, junk 504; AUTH twice 503."""
    client = await start_memory_session(nursery, tls_server(tls, tls_context=tls.server_context))
    await client.reply()
    assert await client.code("PBSZ 0") == "503"
    assert await client.code("PROT P") == "503"
    assert await client.code("AUTH KERBEROS_V4") == "504"
    assert await client.code("CCC") == "533"
    await upgrade(client, tls)
    assert await client.code("PROT P") == "503"
    assert await client.command("PBSZ 1024") == ("200", ["PBSZ=0"])
    assert await client.code("PROT S") == "536"
    assert await client.code("PROT X") == "504"
    assert await client.code("PROT P") == "200"
    assert await client.code("PROT C") == "200"
    assert await client.code("AUTH TLS") == "503"
    assert await client.code("USER user") == "331"
    assert await client.code("PASS pw") == "230"


async def test_auth_ssl_alias(nursery, tls):
    """curl sends AUTH SSL first: it upgrades like AUTH TLS."""
    client = await start_memory_session(nursery, tls_server(tls, tls_context=tls.server_context))
    await client.reply()
    assert await client.code("AUTH SSL") == "234"


async def test_plaintext_after_auth_is_discarded(nursery, tls):
    """Commands pipelined after AUTH in clear are never executed (RFC 4217 §9)."""
    server = tls_server(tls, tls_context=tls.server_context)
    client = await start_memory_session(nursery, server)
    await client.reply()
    await client.send(b"AUTH TLS\r\nMKD injected\r\n")
    assert (await client.reply())[0] == "234"
    stream = trio.SSLStream(client.stream, tls.client_context, server_hostname="127.0.0.1")
    client.stream = stream
    with trio.fail_after(10):
        await stream.do_handshake()
    await client.command("USER user")
    await client.command("PASS pw")
    assert await client.code("CWD injected") == "550"


async def test_tls_control_required(nursery, tls):
    """tls_control_required: USER and PASS in clear get 530; after AUTH, login works."""
    server = tls_server(tls, tls_context=tls.server_context, tls_control_required=True)
    client = await start_memory_session(nursery, server)
    await client.reply()
    assert await client.code("USER user") == "530"
    assert await client.code("PASS pw") == "530"
    await upgrade(client, tls)
    assert await client.code("USER user") == "331"
    assert await client.code("PASS pw") == "230"


async def test_ccc_refused_by_default_and_allowed_when_enabled(nursery, tls):
    """CCC is 534 unless tls_allow_ccc; when allowed the session goes on in clear."""
    client = await start_memory_session(nursery, tls_server(tls, tls_context=tls.server_context))
    await client.reply()
    await upgrade(client, tls)
    assert await client.code("CCC") == "534"

    server = tls_server(tls, tls_context=tls.server_context, tls_allow_ccc=True)
    client = await start_memory_session(nursery, server)
    await client.reply()
    plain = client.stream
    await upgrade(client, tls)
    assert await client.code("CCC") == "200"
    with trio.fail_after(10):
        await client.stream.unwrap()
    client.stream = plain
    assert await client.code("NOOP") == "200"


async def test_prot_c_refused_when_data_tls_required(nursery, tls):
    """tls_data_required: PROT C is refused by policy (534)."""
    server = tls_server(tls, tls_context=tls.server_context, tls_data_required=True)
    client = await start_memory_session(nursery, server)
    await client.reply()
    await upgrade(client, tls)
    assert await client.code("PBSZ 0") == "200"
    assert await client.code("PROT C") == "534"


@pytest.mark.parametrize("tickets", [True, False])
async def test_data_connections_send_no_session_tickets(tls, tickets):
    """session_tickets=False sends no TLS 1.3 ticket; the context's setting is restored."""
    tls.server_context.minimum_version = ssl.TLSVersion.TLSv1_3
    client_raw, server_raw = trio.testing.memory_stream_pair()
    server = wrap_server_side(server_raw, tls.server_context, session_tickets=tickets)
    assert tls.server_context.num_tickets == 2
    client = trio.SSLStream(client_raw, tls.client_context, server_hostname="127.0.0.1")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.do_handshake)
            nursery.start_soon(client.do_handshake)
        await server.send_all(b"payload")
        assert await client.receive_some(100) == b"payload"
    assert client.session.has_ticket is tickets


async def test_garbage_instead_of_handshake_costs_one_connection(start_server, tls):
    """Implicit FTPS: garbage or a vanished client mid-handshake ends only that connection,
    without spinning, while another client transfers normally."""
    handshake_timeout = 0.5
    running = await start_server(ssl=tls.server_context, tls_handshake_timeout=handshake_timeout)
    payload = os.urandom(2 * 1024 * 1024)
    (running.root / "f.bin").write_bytes(payload)

    cpu_before = time.process_time()
    started = trio.current_time()
    garbage = await trio.open_tcp_stream(running.host, running.port)
    await garbage.send_all(b"GET / HTTP/1.0\r\n\r\n" * 10)
    stalled = await trio.open_tcp_stream(running.host, running.port)
    await stalled.send_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # half a ClientHello

    def implicit_download() -> bytes:
        ftp = ImplicitFTP(context=tls.client_context, timeout=10)
        ftp.connect(running.host, running.port)
        ftp.login(LOGIN, PASSWORD)
        ftp.prot_p()
        out = io.BytesIO()
        ftp.retrbinary("RETR f.bin", out.write)
        ftp.quit()
        return out.getvalue()

    downloaded, client_cpu = await in_thread_with_cpu(implicit_download)
    assert downloaded == payload
    with trio.fail_after(10):
        assert await garbage.receive_some(100) == b""  # closed, no reply in clear
        with contextlib.suppress(trio.BrokenResourceError):  # the handshake timed out
            assert await stalled.receive_some(100) == b""
    waited = trio.current_time() - started
    server_cpu = time.process_time() - cpu_before - client_cpu
    # Nothing spun while they waited: well below one core over the window.
    assert server_cpu < 0.5 * waited, f"{server_cpu:.2f} s of server CPU in {waited:.2f} s"
    await garbage.aclose()
    await stalled.aclose()
    assert len(running.server.connections) == 0


async def test_garbage_on_tls_data_connection_is_dropped(start_server, tls):
    """With PROT P, a data connection that is not TLS is dropped and the transfer gets 425."""
    running = await start_server(tls_context=tls.server_context, wait_future_timeout=0.5)
    (running.root / "f.bin").write_bytes(b"secret data")

    def client() -> str:
        ftp = ftplib.FTP_TLS(context=tls.client_context, timeout=10)
        ftp.connect(running.host, running.port)
        ftp.auth()
        ftp.login(LOGIN, PASSWORD)
        ftp.prot_p()
        host, port = ftplib.parse227(ftp.sendcmd("PASV"))
        with socket.create_connection((host, port), timeout=5) as data:
            data.sendall(b"this is not a TLS ClientHello\r\n" * 4)
            ftp.putcmd("RETR f.bin")
            first = ftp.getresp()
            assert first.startswith("150")
            try:
                ftp.getresp()
            except ftplib.error_temp as exc:
                second = str(exc)
            else:
                second = "no error"
            leaked = data.recv(100)
        ftp.voidcmd("NOOP")
        ftp.quit()
        assert leaked == b""
        return second

    reply = await in_thread(client)
    assert reply.startswith("425")
    assert "TLS" in reply


async def test_abor_during_tls_transfer(start_server, tls):
    """ABOR in a TLS session stops a large TLS download with 426 then 226; the session lives."""
    running = await start_server(tls_context=tls.server_context, block_size=4096)
    (running.root / "big.bin").write_bytes(os.urandom(32 * 1024 * 1024))

    def client() -> list[str]:
        ftp = ftplib.FTP_TLS(context=tls.client_context, timeout=10)
        ftp.connect(running.host, running.port)
        ftp.auth()
        ftp.login(LOGIN, PASSWORD)
        ftp.prot_p()
        ftp.voidcmd("TYPE I")
        conn = ftp.transfercmd("RETR big.bin")
        received = len(conn.recv(65536))
        ftp.putcmd("ABOR")
        replies = [ftp.getline()[:3], ftp.getline()[:3]]
        try:
            while chunk := conn.recv(65536):
                received += len(chunk)
        except OSError:
            pass
        conn.close()
        assert received < 32 * 1024 * 1024
        replies.append(ftp.sendcmd("PWD")[:3])
        ftp.quit()
        return replies

    assert await in_thread(client) == ["426", "226", "257"]


async def test_cli_explicit_ftps_required(tls_ca, tmp_path, tls):
    """python -m trio_ftp --tls-cert/--tls-key --tls-required: clear login refused, TLS works."""
    cert = tls_ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    served = tmp_path / "served"
    served.mkdir()
    (served / "hello.txt").write_bytes(b"over tls\n")
    command = [sys.executable, "-m", "trio_ftp", str(served), "--port", "0"]
    command += ["--tls-cert", str(cert_file), "--tls-key", str(key_file), "--tls-required"]
    process = await trio.lowlevel.open_process(command, stdout=subprocess.PIPE)
    try:
        with trio.fail_after(15):
            line = b""
            while not line.endswith(b"\n"):
                line += await process.stdout.receive_some(1)
        port = int(line.decode().split("ftp://127.0.0.1:")[1].split("/")[0])

        def client() -> bytes:
            plain = ftplib.FTP(timeout=10)
            plain.connect("127.0.0.1", port)
            with pytest.raises(ftplib.error_perm, match="530"):
                plain.login()
            plain.close()
            ftp = ftplib.FTP_TLS(context=tls.client_context, timeout=10)
            ftp.connect("127.0.0.1", port)
            ftp.auth()
            ftp.login()
            with pytest.raises(ftplib.error_perm, match="521"):
                ftp.retrbinary("RETR hello.txt", lambda data: None)
            ftp.prot_p()
            out = io.BytesIO()
            ftp.retrbinary("RETR hello.txt", out.write)
            ftp.quit()
            return out.getvalue()

        assert await in_thread(client) == b"over tls\n"
    finally:
        process.send_signal(signal.SIGINT)
        with trio.fail_after(10):
            await process.wait()
        await process.stdout.aclose()


async def test_abor_cancels_a_data_handshake(start_server, tls):
    """ABOR while the data connection's TLS handshake is stalled: 426 then 226, the stalled
    data connection is closed, and the session goes on."""
    running = await start_server(tls_context=tls.server_context, wait_future_timeout=30)
    (running.root / "f.bin").write_bytes(b"data")

    def client() -> list[str]:
        ftp = ftplib.FTP_TLS(context=tls.client_context, timeout=10)
        ftp.connect(running.host, running.port)
        ftp.auth()
        ftp.login(LOGIN, PASSWORD)
        ftp.prot_p()
        host, port = ftplib.parse227(ftp.sendcmd("PASV"))
        with socket.create_connection((host, port), timeout=5) as data:
            data.sendall(b"\x16\x03\x01")  # the start of a ClientHello, then silence
            replies = [ftp.sendcmd("RETR f.bin")[:3]]
            ftp.putcmd("ABOR")
            replies += [ftp.getline()[:3], ftp.getline()[:3]]
            replies.append("closed" if data.recv(100) == b"" else "open")
        replies.append(ftp.sendcmd("NOOP")[:3])
        ftp.quit()
        return replies

    assert await in_thread(client) == ["150", "426", "226", "closed", "200"]


async def test_command_connection_is_the_stream_in_use(nursery, tls):
    """A custom command's ``connection.command_connection`` is the TLS stream after AUTH
    TLS, and the clear one again after CCC (it used to stay the plaintext socket)."""
    from trio_ftp import command

    seen: list[type] = []

    class Probe(Server):
        @command("XWHO", before_login=True)
        async def xwho(self, connection, rest):
            seen.append(type(connection.command_connection))
            connection.response("200", "ok")
            return True

    server = Probe(
        [User("user", "pw")],
        path_io_factory=MemoryPathIO,
        tls_context=tls.server_context,
        tls_allow_ccc=True,
    )
    client = await start_memory_session(nursery, server)
    await client.reply()
    assert await client.code("XWHO") == "200"
    plain = client.stream
    await upgrade(client, tls)
    assert await client.code("XWHO") == "200"
    assert await client.code("CCC") == "200"
    with trio.fail_after(10):
        await client.stream.unwrap()
    client.stream = plain
    assert await client.code("XWHO") == "200"
    assert seen[1] is trio.SSLStream
    assert seen[0] is seen[2]
    assert seen[0] is not trio.SSLStream
