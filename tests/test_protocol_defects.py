"""Regressions for protocol defects found by running other servers' test suites and real
clients against trio_ftp: REST in TYPE A, UTF8 in FEAT/OPTS, OS errors mapped to each
command's RFC 959 codes, HELP for every verb, constant-time password checks."""

from __future__ import annotations

import asyncio
import errno
import ftplib
import hmac
from pathlib import Path
from typing import Any

import aioftp
import pytest
from conftest import LOGIN, PASSWORD, in_thread, reply_of
from test_site_hash import connect, make_server

from trio_ftp import Connection, MemoryUserManager, Server, User, command, site_command
from trio_ftp import users as users_module
from trio_ftp.errors import PathIOError, reply_for


# REST in TYPE A ------------------------------------------------------------------------------
async def test_rest_is_refused_in_ascii_mode(nursery: Any) -> None:
    """A nonzero REST in TYPE A would seek the file, not the CRLF stream the client
    counted: 504. REST 0 (a probe) is fine, and TYPE I makes REST work."""
    client = await connect(nursery, make_server())
    assert await client.code("TYPE A") == "200"
    assert await client.code("REST 5") == "504"
    assert await client.code("REST 0") == "350"
    assert await client.code("TYPE I") == "200"
    assert await client.code("REST 5") == "350"


@pytest.mark.parametrize("verb", ["RETR f.txt", "STOR new.txt"])
async def test_type_a_after_rest_is_refused_before_150(nursery: Any, verb: str) -> None:
    """REST in TYPE I, then TYPE A, then the transfer: 504 before any 150 (no seek)."""
    client = await connect(nursery, make_server())
    assert await client.code("TYPE I") == "200"
    assert await client.code("REST 3") == "350"
    assert await client.code("TYPE A") == "200"
    assert await client.code("PASV") == "227"
    assert await client.code(verb) == "504"
    assert await client.code("NOOP") == "200"  # no 150 or 226 was queued behind it


async def test_ascii_resume_by_a_real_client_is_refused(start_server: Any, root: Path) -> None:
    """ftplib's retrlines with a rest offset (TYPE A + REST) gets 504 instead of a
    corrupted tail."""
    (root / "text.txt").write_bytes(b"line one\nline two\n")
    running = await start_server()

    def client() -> str:
        with running.ftp() as ftp:
            return reply_of(lambda: ftp.retrlines("RETR text.txt", lambda line: None))

    def resumed() -> str:
        with running.ftp() as ftp:
            ftp.voidcmd("TYPE A")
            return reply_of(lambda: ftp.sendcmd("REST 4"))

    assert (await in_thread(client)).startswith("226")
    assert (await in_thread(resumed)).startswith("504")


# UTF8 ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("encoding", "announced", "opts"),
    [("utf-8", True, "200"), ("UTF8", True, "200"), ("latin-1", False, "504")],
)
async def test_utf8_only_when_the_encoding_is_utf8(
    nursery: Any, encoding: str, announced: bool, opts: str
) -> None:
    server = Server([User("user", "pw")], encoding=encoding)
    client = await connect(nursery, server)
    code, lines = await client.command("FEAT")
    assert code == "211"
    assert any(line.strip() == "UTF8" for line in lines) is announced
    assert await client.code("OPTS UTF8 ON") == opts


# OS errors -> the command's codes -----------------------------------------------------------
UNLISTED = [errno.EBUSY, errno.ENODEV, errno.EMLINK, errno.EFBIG, errno.ETXTBSY, errno.EOVERFLOW]
TRANSIENT = [errno.EAGAIN, errno.EIO, errno.EINTR, errno.ETIMEDOUT, errno.ENOMEM]


@pytest.mark.parametrize("number", UNLISTED)
@pytest.mark.parametrize(
    ("verb", "expected"),
    [
        *[(verb, "550") for verb in ("RETR", "DELE", "MKD", "RNFR", "CWD")],
        *[(verb, "553") for verb in ("STOR", "APPE", "STOU", "RNTO")],
    ],
)
def test_unlisted_os_errors_are_permanent_refusals(number: int, verb: str, expected: str) -> None:
    """An errno the table does not name is a 5xx from the verb's RFC 959 list, not 451."""
    for exc in (OSError(number, "x"), PathIOError(OSError(number, "x"))):
        code, text = reply_for(exc, verb)
        assert code == expected, (exc, verb)
        assert "/" not in text  # no server path leaks into a reply


@pytest.mark.parametrize("number", TRANSIENT)
def test_transient_os_errors_stay_451(number: int) -> None:
    for verb in ("RETR", "STOR", "DELE"):
        assert reply_for(PathIOError(OSError(number, "x")), verb)[0] == "451"


def test_bugs_in_user_code_stay_451() -> None:
    """An exception that is not an OS error is a local error, whatever the verb."""
    assert reply_for(PathIOError(KeyError("x")), "STOR")[0] == "451"
    assert reply_for(RuntimeError("x"), "RETR")[0] == "451"


async def test_rnto_onto_the_root_is_refused(start_server: Any, root: Path) -> None:
    """Renaming a directory over / (the user's root) is a 5xx from RNTO's list, and
    nothing moves."""
    (root / "d").mkdir()
    (root / "d" / "f.txt").write_bytes(b"data")
    running = await start_server()

    def client() -> list[str]:
        with running.ftp() as ftp:
            replies = [ftp.sendcmd("RNFR d")]
            replies.append(reply_of(lambda: ftp.sendcmd("RNTO /")))
            ftp.sendcmd("RNFR d/f.txt")
            replies.append(reply_of(lambda: ftp.sendcmd("RNTO /")))
            return replies

    replies = await in_thread(client)
    assert replies[0].startswith("350")
    assert replies[1][:3] in {"550", "553"}, replies
    assert replies[2][:3] in {"550", "553"}, replies
    assert (root / "d" / "f.txt").read_bytes() == b"data"


# HELP ---------------------------------------------------------------------------------------
class Extended(Server):
    @command("XTRA", help="XTRA: an extra command")
    async def xtra(self, connection: Connection, rest: str) -> bool:
        connection.response("200", "extra")
        return True

    @site_command("WHO", help="SITE WHO: who is here")
    async def site_who(self, connection: Connection, rest: str) -> bool:
        connection.response("200", "you")
        return True


async def test_help_answers_every_verb_help_lists(nursery: Any) -> None:
    """Every verb HELP lists, custom ones and one put straight into commands_mapping
    included, has its own 214; so has every SITE subcommand through HELP SITE <sub>."""
    server = Extended([User("user", "pw")])

    async def bare(connection: Connection, rest: str) -> bool:
        connection.response("200", "bare")
        return True

    server.commands_mapping["bare"] = bare
    server.site_commands_mapping["RUNTIME"] = bare
    client = await connect(nursery, server)
    code, lines = await client.command("HELP")
    assert code == "214"
    listed = {word for line in lines[1:-1] for word in line.split()}
    assert {"XTRA", "BARE", "SITE", "RETR"} <= listed
    for verb in sorted(listed):
        code, help_lines = await client.command(f"HELP {verb}")
        assert code == "214", verb
        assert help_lines[0].strip(), verb
    code, lines = await client.command("SITE HELP")
    subcommands = [line.split()[1].rstrip(":") for line in lines[1:-1]]
    assert {"CHMOD", "HELP", "WHO", "RUNTIME"} <= set(subcommands)
    for sub in subcommands:
        code, help_lines = await client.command(f"HELP SITE {sub}")
        assert code == "214", sub
        assert help_lines[0].strip(), sub
    assert (await client.command("HELP SITE CHMOD"))[1][0].startswith("SITE CHMOD")
    assert await client.code("HELP NOSUCH") == "502"
    assert await client.code("HELP SITE NOSUCH") == "504"


# passwords ----------------------------------------------------------------------------------
async def test_passwords_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(users_module.hmac, "compare_digest", recording)
    user = User("anna", "pässwörd")
    manager = MemoryUserManager([user])
    assert await manager.authenticate(user, "pässwörd")
    assert not await manager.authenticate(user, "pässwört")
    assert len(calls) == 2
    assert all(isinstance(a, bytes) and isinstance(b, bytes) for a, b in calls)


async def test_non_ascii_password_logs_in(start_server: Any, root: Path) -> None:
    running = await start_server([User("anna", "pässwörd", base_path=root)], login_failure_delay=0)

    def login(password: str) -> str:
        with ftplib.FTP(encoding="utf-8") as ftp:
            ftp.connect(running.host, running.port, timeout=10)
            return reply_of(lambda: ftp.login("anna", password))

    assert (await in_thread(lambda: login("pässwörd"))).startswith("230")
    assert (await in_thread(lambda: login("pässwört"))).startswith("530")


# ABOR with nothing to abort, as aioftp's client sends it -----------------------------------
async def test_aioftp_client_abort_with_nothing_running(start_server: Any, root: Path) -> None:
    """aioftp's Client.abort() accepts only 226 (RFC 959 §4.1.3): with no transfer running
    it must not raise, and the session goes on."""
    (root / "f.txt").write_bytes(b"after abort")
    running = await start_server()

    async def main() -> bytes:
        client = aioftp.Client(socket_timeout=10, connection_timeout=10)
        await client.connect(running.host, running.port)
        try:
            await client.login(LOGIN, PASSWORD)
            await client.abort()
            async with client.download_stream("f.txt") as stream:
                data = await stream.read()
            await client.quit()
        finally:
            client.close()
        return data

    assert await in_thread(lambda: asyncio.run(asyncio.wait_for(main(), 20))) == b"after abort"
