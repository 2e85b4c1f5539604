"""SIGHUP reloads the TOML users and the TLS certificate without dropping a session: the
real command line, in one process and with workers."""

from __future__ import annotations

import ftplib
import signal
import ssl
from pathlib import Path

import pytest
import trio
import trustme
from conftest import in_thread
from test_cli import serving

from trio_ftp.config import hash_password

pytestmark = pytest.mark.slow  # a server process, and scrypt hashes

BOB = ("bob", "bob-password")
CAROL = ("carol", "carol-password")


def write_config(path: Path, root: Path, *users: tuple[str, str]) -> None:
    tables = "".join(
        f'\n[[users]]\nlogin = "{login}"\npassword_hash = "{hash_password(password)}"\n'
        for login, password in users
    )
    path.write_text(f'root = "{root}"\n{tables}')


def login(port: int, user: tuple[str, str], context: ssl.SSLContext | None = None) -> ftplib.FTP:
    ftp = ftplib.FTP_TLS(context=context, timeout=10) if context else ftplib.FTP(timeout=10)
    ftp.connect("127.0.0.1", port)
    if isinstance(ftp, ftplib.FTP_TLS):
        ftp.auth()
    ftp.login(*user)
    return ftp


def refused(port: int, user: tuple[str, str]) -> bool:
    with ftplib.FTP(timeout=10) as ftp:
        ftp.connect("127.0.0.1", port)
        try:
            ftp.login(*user)
        except ftplib.error_perm:
            return True
        return False


async def wait_for_log(log: Path, needle: str, count: int = 1) -> None:
    with trio.fail_after(15):
        while (await trio.Path(log).read_text()).count(needle) < count:  # noqa: ASYNC110
            await trio.sleep(0.02)  # a file has no event to wait on


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_sighup_reloads_users_and_keeps_sessions(tmp_path: Path, workers: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    config, log = tmp_path / "server.toml", tmp_path / "log"
    write_config(config, root, BOB)
    args = ["--config", str(config), "--no-anonymous", "--log-file", str(log)]
    args += ["--workers", workers]
    async with serving(*args) as (port, process):
        bob = await in_thread(login, port, BOB)
        try:
            assert await in_thread(refused, port, CAROL)
            write_config(config, root, CAROL)  # bob removed, carol added
            process.send_signal(signal.SIGHUP)
            await wait_for_log(log, "SIGHUP: reloaded 1 user(s)", count=int(workers))
            assert (await in_thread(bob.sendcmd, "NOOP")).startswith("200")  # still served
            assert await in_thread(refused, port, BOB)  # but bob cannot log in again
            carol = await in_thread(login, port, CAROL)
            await in_thread(carol.quit)
            config.write_text("this is [not TOML")
            process.send_signal(signal.SIGHUP)
            await wait_for_log(log, "SIGHUP: reload failed, the running configuration stays")
            carol = await in_thread(login, port, CAROL)  # the last good users stay
            await in_thread(carol.quit)
        finally:
            bob.close()
        assert process.returncode is None  # SIGHUP never ended the server


async def test_sighup_reloads_the_tls_certificate(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    cert, key, log = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "log"
    old_ca, new_ca = trustme.CA(), trustme.CA()

    def install(ca: trustme.CA) -> ssl.SSLContext:
        issued = ca.issue_cert("127.0.0.1")
        issued.private_key_pem.write_to_path(str(key))
        issued.cert_chain_pems[0].write_to_path(str(cert))
        for pem in issued.cert_chain_pems[1:]:
            pem.write_to_path(str(cert), append=True)
        context = ssl.create_default_context()
        ca.configure_trust(context)
        return context

    old_client = install(old_ca)
    args = ["--root", str(root), "--user", ":".join(BOB), "--log-file", str(log)]
    args += ["--tls-cert", str(cert), "--tls-key", str(key)]
    async with serving(*args) as (port, process):
        kept = await in_thread(login, port, BOB, old_client)
        try:
            new_client = install(new_ca)
            process.send_signal(signal.SIGHUP)
            await wait_for_log(log, "and the TLS certificate")
            fresh = await in_thread(login, port, BOB, new_client)  # the new certificate
            await in_thread(fresh.quit)
            with pytest.raises(ssl.SSLError):
                await in_thread(login, port, BOB, old_client)  # the old one is gone
            assert (await in_thread(kept.sendcmd, "NOOP")).startswith("200")
        finally:
            kept.close()
