"""No injection (issue "Hardening"): NUL is refused, a command ends only at CR LF, no reply
carries a bare CR or LF whatever the file names on disk, and nothing sent in clear before a
TLS handshake is obeyed after it (CVE-2011-1575, STARTTLS command injection).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath

import pytest
import trio
from conftest import LOGIN, PASSWORD, Running, TLSCerts
from wire import (
    READ_TIMEOUT,
    Wire,
    reply_lines_are_clean,
    start_server,  # noqa: F401 (the fixture: wraps conftest's)
    transfer,
)

from trio_ftp import User

VICTIM = b"the victim: DELE must not reach me\n"


async def open_session(running: Running, *, login: bool = True) -> Wire:
    wire = await Wire.connect(running.host, running.port)
    assert (await wire.greeting()).startswith(b"220")
    if login:
        assert (await wire.login(LOGIN, PASSWORD)).startswith(b"230")
    return wire


def forged_lines(reply: bytes) -> list[bytes]:
    """Lines of ``reply`` that would read as a ``226`` reply of their own."""
    return [line for line in reply.split(b"\r\n") if line.startswith(b"226")]


def make_victim(root: Path) -> Path:
    victim = root / "victim"
    victim.write_bytes(VICTIM)
    victim.chmod(0o640)
    return victim


def victim_intact(victim: Path) -> bool:
    return victim.read_bytes() == VICTIM and stat.S_IMODE(victim.stat().st_mode) == 0o640


# NUL ---------------------------------------------------------------------------------------
NUL_LINES = [
    b"DELE victim\x00",
    b"DELE vic\x00tim",
    b"DELE \x00victim",
    b"DELE victim\x00.bak",
    b"RNFR victim\x00",
    b"SITE CHMOD 0777 victim\x00",
    b"MFMT 20000101000000 victim\x00",
    b"MKD newdir\x00evil",
    b"XMKD newdir\x00",
    b"CWD a\x00",
    b"SIZE victim\x00",
    b"MLST victim\x00",
    b"HASH victim\x00",
    b"STAT victim\x00",
    b"TYPE I\x00",
    b"NO\x00OP",
    b"\x00NOOP",
]


async def test_nul_in_an_argument_is_refused_with_501_and_the_session_goes_on(
    start_server: Callable[..., Awaitable[Running]], root: Path
) -> None:
    """A line holding NUL anywhere gets one 501, changes nothing, and the session goes on."""
    victim = make_victim(root)
    (root / "a").mkdir()
    running = await start_server()
    wire = await open_session(running, login=False)
    try:
        # before login: USER and PASS with NUL log nobody in
        reply = await wire.command(b"USER user\x00")
        assert reply[:4] == b"501 ", reply
        assert (await wire.command(b"NOOP")).startswith(b"200")
        assert (await wire.command(b"USER user")).startswith(b"331")
        reply = await wire.command(b"PASS secret\x00")
        assert reply[:4] == b"501 ", reply
        assert (await wire.command(b"NOOP")).startswith(b"200")
        assert (await wire.command(b"PWD")).startswith(b"530")  # not logged in by it
        assert (await wire.command(f"PASS {PASSWORD}")).startswith(b"230")

        for line in NUL_LINES:
            reply = await wire.command(line)
            assert reply[:4] == b"501 ", (line, reply)
            assert reply_lines_are_clean(reply), reply
            assert (await wire.command(b"NOOP")).startswith(b"200"), line
        for verb in (b"STOR", b"APPE", b"RETR", b"LIST", b"NLST", b"MLSD", b"STOU"):
            line = verb + b" victim\x00evil"
            reply, data = await transfer(wire, line, b"overwritten")
            assert reply[:4] == b"501 ", (line, reply)
            assert data == b""
            assert (await wire.command(b"NOOP")).startswith(b"200"), line
        assert (await wire.command(b"PWD")).startswith(b'257 "/"')
    finally:
        await wire.aclose()
    assert victim_intact(victim)
    assert sorted(os.listdir(root)) == ["a", "victim"]


# line framing ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "packet",
    [
        b"NOOP\nDELE victim\r\n",
        b"NOOP\rDELE victim\r\n",
        b"NOOP\n\rDELE victim\r\n",
        b"RNFR victim\nRNTO moved\r\n",
        b"SITE CHMOD 0777 victim\rDELE victim\r\n",
    ],
    ids=["LF", "CR", "LF-CR", "RNFR-LF-RNTO", "CHMOD-CR-DELE"],
)
async def test_a_bare_cr_or_lf_does_not_end_a_command(
    start_server: Callable[..., Awaitable[Running]], root: Path, packet: bytes
) -> None:
    """Only CR LF ends a command: a bare CR or LF gets one 501 and no smuggled command runs."""
    victim = make_victim(root)
    running = await start_server()
    wire = await open_session(running)
    try:
        await wire.send(packet)
        reply = await wire.reply()
        assert reply[:4] == b"501 ", reply
        assert reply_lines_are_clean(reply), reply
        # One reply only: the next one is NOOP's.
        assert (await wire.command(b"NOOP")).startswith(b"200")
    finally:
        await wire.aclose()
    assert victim_intact(victim)
    assert sorted(os.listdir(root)) == ["victim"]


async def test_a_line_ended_by_a_bare_lf_waits_for_cr_lf(
    start_server: Callable[..., Awaitable[Running]], root: Path
) -> None:
    """A line ended by a bare LF is not run or answered until CR LF, then it gets 501."""
    victim = make_victim(root)
    running = await start_server()
    wire = await open_session(running)
    try:
        await wire.send(b"DELE victim\n")
        with trio.move_on_after(0.3):
            early = await wire.reply()
            pytest.fail(f"a line without CR LF was answered: {early!r}")
        assert victim_intact(victim)
        await wire.send(b"\r\n")
        reply = await wire.reply()
        assert reply[:4] == b"501 ", reply
        assert (await wire.command(b"NOOP")).startswith(b"200")
    finally:
        await wire.aclose()
    assert victim_intact(victim)


# replies stay clean whatever the names -----------------------------------------------------
ODD_NAMES = [
    "line\nfeed",
    "\r\n226 forged",
    "carriage\rreturn",
    "ends with cr\r",
    "\n226 forged too",
    'say"hi',
    'two ""quotes""',
    "tab\there",
    "nel\x85226 next-line",
    "ls\u2028226 line-separator",
    "ps\u2029226 paragraph-separator",
    "vt\x0bff\x0c",
    " 226 leading space",
    "226 forged at the start",
]
BYTES_NAMES = [b"bad\xff\r\n226 forged-bytes", b"\xc0\xaf\n226 overlong"]


def make_odd_tree(root: Path) -> None:
    odd = root / "odd"
    odd.mkdir()
    for name in ODD_NAMES:
        (odd / name).mkdir()
        (odd / name / "inner").write_bytes(b"x")
        (odd / f"file {name}").write_bytes(b"y" * 7)
    for raw in BYTES_NAMES:
        os.mkdir(os.fsencode(odd) + b"/" + raw)
    (root / "plain").mkdir()


def check_clean(replies: list[bytes]) -> None:
    for reply in replies:
        assert reply_lines_are_clean(reply), reply
        assert not forged_lines(reply), reply


async def test_replies_stay_clean_whatever_the_names_on_disk(
    start_server: Callable[..., Awaitable[Running]], root: Path
) -> None:
    """No reply has a bare CR or LF or a forged line, whatever the names on disk or sent."""
    make_odd_tree(root)
    running = await start_server()
    wire = await open_session(running)
    replies: list[bytes] = []

    async def command(line: bytes | str) -> bytes:
        reply = await wire.command(line)
        replies.append(reply)
        return reply

    try:
        await command("TYPE I")
        for path in ("odd", "/odd/", "/", "odd/" + ODD_NAMES[0][:4] + "*"):
            await command(f"STAT {path}")
        listing = await command("STAT odd")
        assert listing.startswith(b"213-"), listing
        assert listing.count(b"\r\n") >= len(ODD_NAMES) * 2 + len(BYTES_NAMES)
        sendable = [name for name in ODD_NAMES if "\r" not in name and "\n" not in name]
        for name in sendable:
            assert (await command(f"CWD /odd/{name}")).startswith(b"250"), name
            pwd = await command("PWD")
            quoted = '"/odd/' + name.replace('"', '""') + '"'
            assert pwd.startswith(b"257 " + quoted.encode()), (name, pwd)
            await command("MLST")
            await command("STAT .")
            await command("CWD /")
            for verb in ("SIZE", "MDTM", "MLST", "HASH", "STAT"):
                await command(f"{verb} odd/file {name}")
            await command(f"MFMT 20200101000000 odd/file {name}")
            await command(f"MKD plain/{name}")
            await command(f"RNFR plain/{name}")
            await command(f"RNTO plain/renamed {name}")
            await command(f"RMD plain/renamed {name}")
            await command(f"DELE odd/no such {name}")
        # Bare CR / LF sent by the client come back (if at all) sanitized too.
        for line in (
            b"SITE x\r226 forged",
            b"XYZ\r226 forged",
            b"STAT odd\r226 forged",
            b"MKD plain/q\r226 forged",
        ):
            await command(line)
        assert (await command("NOOP")).startswith(b"200")
    finally:
        await wire.aclose()
    check_clean(replies)


@pytest.mark.parametrize("home", ["/odd/\r\n226 forged", "/odd/line\nfeed", '/odd/say"hi'])
async def test_a_home_directory_with_odd_characters_gives_clean_replies(
    start_server: Callable[..., Awaitable[Running]], root: Path, home: str
) -> None:
    """A home directory named with CR, LF or quotes gives clean login, PWD, MLST, STAT replies."""
    make_odd_tree(root)
    user = User(LOGIN, PASSWORD, base_path=root, home_path=PurePosixPath(home))
    running = await start_server([user])
    wire = await open_session(running, login=False)
    replies = []
    try:
        replies.append(await wire.command(f"USER {LOGIN}"))
        replies.append(await wire.command(f"PASS {PASSWORD}"))
        assert replies[-1].startswith(b"230"), replies[-1]
        for line in ("PWD", "XPWD", "MLST", "STAT .", "STAT", "CWD .", "MLST inner"):
            replies.append(await wire.command(line))
        pwd = replies[2]
        assert re.match(rb'257 "/odd/', pwd), pwd
    finally:
        await wire.aclose()
    check_clean(replies)


# STARTTLS injection ------------------------------------------------------------------------
@pytest.mark.parametrize("logged_in", [True, False], ids=["after-login", "before-login"])
async def test_commands_sent_in_clear_with_auth_tls_are_never_run(
    start_server: Callable[..., Awaitable[Running]],
    root: Path,
    tls: TLSCerts,
    logged_in: bool,
) -> None:
    """Commands sent in clear after AUTH TLS are never run nor answered (CVE-2011-1575)."""
    victim = make_victim(root)
    running = await start_server(tls_context=tls.server_context)
    wire = await open_session(running, login=logged_in)
    secure = trio.SSLStream(wire.stream, tls.client_context, server_hostname="127.0.0.1")
    try:
        injected = (
            b"DELE victim\r\n" if logged_in else b"USER user\r\nPASS secret\r\nDELE victim\r\n"
        )
        await wire.send(b"AUTH TLS\r\n" + injected)
        reply = await wire.reply()
        assert reply.startswith(b"234"), reply
        with trio.move_on_after(0.2):  # anything the server would answer in clear
            late = await wire.line()
            pytest.fail(f"the server sent clear bytes after 234: {late!r}")
        with trio.fail_after(READ_TIMEOUT):
            await secure.do_handshake()
        tls_wire = Wire(secure)  # type: ignore[arg-type]
        # The next reply answers our own next command, not an injected one.
        first = await tls_wire.command(b"NOOP")
        assert first.startswith(b"200"), first
        assert (await tls_wire.command(b"SYST")).startswith(b"215")
        pwd = await tls_wire.command(b"PWD")
        if logged_in:
            assert pwd.startswith(b"257"), pwd
        else:
            assert pwd.startswith(b"530"), pwd  # the injected USER/PASS did not log in
        assert (await tls_wire.command(b"NOOP")).startswith(b"200")
    finally:
        await trio.aclose_forcefully(secure)
    assert victim_intact(victim)


# log injection --------------------------------------------------------------------------------
#: Characters a client can put in a name that must never reach a log line raw: a terminal
#: escape, tab, DEL, C1 NEL (a line break to some readers), the Unicode line separator.
HOSTILE = "evil\x1b[31m\t\x7f\x85\u2028 login failed for root from 1.2.3.4 \\x1b"


async def test_client_strings_reach_the_log_escaped(start_server, root: Path, caplog) -> None:
    """Names and logins holding control characters, sent through every command that logs
    them, appear in the log only escaped: every formatted line is printable, one line."""
    caplog.set_level("DEBUG", logger="trio_ftp")
    (root / f"{HOSTILE}.txt").write_bytes(b"payload")
    running = await start_server()
    wire = await Wire.connect(running.host, running.port)
    await wire.greeting()
    assert (await wire.login(HOSTILE, "wrong")).startswith(b"530")
    assert (await wire.login(LOGIN, PASSWORD)).startswith(b"230")
    assert (await wire.command("TYPE I")).startswith(b"200")
    final, data = await transfer(wire, f"RETR {HOSTILE}.txt")
    assert final.startswith(b"226")
    assert data == b"payload"
    final, _ = await transfer(wire, f"STOR {HOSTILE}.up", upload=b"up")
    assert final.startswith(b"226")
    for line in (
        f"MKD {HOSTILE}.d",
        f"CWD {HOSTILE}.d",
        "CDUP",
        f"RNFR {HOSTILE}.up",
        f"RNTO {HOSTILE}.moved",
        f"SITE CHMOD 600 {HOSTILE}.moved",
        f"DELE {HOSTILE}.moved",
        f"RMD {HOSTILE}.d",
        f"SIZE {HOSTILE}.missing",
        f"SITE {HOSTILE}",
        f"{HOSTILE}",
    ):
        reply = await wire.command(line)
        assert reply[:1] in b"2345", (line, reply)
    await wire.command("QUIT")
    await wire.aclose()
    messages = [record.getMessage() for record in caplog.records]
    assert messages
    dirty = [message for message in messages if not message.isprintable()]
    assert not dirty, dirty
    assert any("evil\\x1b[31m\\x09\\x7f\\x85\\u2028" in message for message in messages)
    # The backslash the client sent is doubled: "\\x1b" in the log is never a real escape.
    assert any("\\\\x1b" in message for message in messages)
