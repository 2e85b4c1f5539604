"""Real clients' recorded command sequences against the replies the RFCs allow.

Each test drives one real client (ftplib plain and TLS, curl plain and TLS, wget, lftp plain
and TLS, aioftp, ftputil) through a typical session: login, CWD, listings, upload, download,
SIZE, MDTM, rename, delete, MKD, RMD, QUIT. The server's DEBUG log (logger
``trio_ftp.session``: ``-> Command(...)`` per command, ``<- CODE text`` per reply) is the
recording. Replies are paired with commands per session in order (RFC 959 §4.2: each command
gets zero or more ``1yz`` preliminary replies and then exactly one final one), and every code
must be in ``ALLOWED`` for its command. Verbs in ``UNCHECKED`` are deliberately not checked;
any other verb missing from the table fails the test, so the table grows with the clients.

Each test also checks that the client sent the commands we expect of it, so a recording
can't pass by being empty. curl, lftp and wget are installed by CI (.ci/run): a missing binary
makes its test fail, never skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import ftplib
import io
import logging
import random
import re
import subprocess
import warnings
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aioftp
import pytest
import trio
from conftest import CLIENT_TIMEOUT, LOGIN, PASSWORD, Running, TLSCerts, in_thread
from conftest import run_client as run_shared_client

from trio_ftp import Permission, User

with warnings.catch_warnings():
    # ftputil 5.2 warns at import time that its default path encoding will change; the
    # session here passes encoding="utf-8" explicitly, so the warning does not apply.
    warnings.simplefilter("ignore", DeprecationWarning)
    import ftputil
    import ftputil.session

#: Every client run ends within this many seconds (conftest's in_thread deadline is 30 s).

# The table ------------------------------------------------------------------------------------
#: The pseudo-command the greeting answers (the connection itself).
GREETING = "<connect>"


def codes(text: str) -> frozenset[str]:
    return frozenset(text.split())


RFC959 = "RFC 959 §5.4"
#: Transfer replies: 125/150 opening, (110) restart marker, 226/250 done, 425/426/451 failed.
_TRANSFER = "125 150 110 226 250 425 426 451"
_STORE = f"{_TRANSFER} 551 552 532 450 452 553 500 501 421 530"

#: Command -> (where the list comes from, the reply codes allowed).
ALLOWED: dict[str, tuple[str, frozenset[str]]] = {
    # RFC 959 §5.4, "Command-Reply Sequences"
    GREETING: (f"{RFC959} Connection Establishment", codes("120 220 421")),
    "USER": (RFC959, codes("230 530 500 501 421 331 332")),
    "PASS": (RFC959, codes("230 202 530 500 501 503 421 332")),
    "ACCT": (RFC959, codes("230 202 530 500 501 503 421")),
    "CWD": (RFC959, codes("250 500 501 502 421 530 550")),
    # §5.4 lists 200 for CDUP; §4.1.1 says "the reply codes shall be identical to the reply
    # codes of CWD" (250): both are allowed.
    "CDUP": (f"{RFC959}, §4.1.1", codes("200 250 500 501 502 421 530 550")),
    "REIN": (RFC959, codes("120 220 421 500 502")),
    "QUIT": (RFC959, codes("221 500")),
    "PORT": (RFC959, codes("200 500 501 421 530")),
    "PASV": (RFC959, codes("227 500 501 502 421 530")),
    "MODE": (RFC959, codes("200 500 501 504 421 530")),
    "TYPE": (RFC959, codes("200 500 501 504 421 530")),
    "STRU": (RFC959, codes("200 500 501 504 421 530")),
    "ALLO": (RFC959, codes("200 202 500 501 504 421 530")),
    "REST": (f"{RFC959}; RFC 3659 §5.3", codes("350 500 501 502 421 530")),
    # RFC 3659 §5.5: 554 "invalid REST parameter" for a transfer after a bad REST.
    "STOR": (f"{RFC959}; RFC 3659 §5.5", codes(f"{_STORE} 554")),
    "STOU": (RFC959, codes(_STORE)),
    "RETR": (f"{RFC959}; RFC 3659 §5.5", codes(f"{_TRANSFER} 450 550 500 501 421 530 554")),
    "LIST": (RFC959, codes("125 150 226 250 425 426 451 450 500 501 502 421 530")),
    "NLST": (RFC959, codes("125 150 226 250 425 426 451 450 500 501 502 421 530")),
    "APPE": (RFC959, codes(f"{_TRANSFER} 551 552 532 450 550 452 553 500 501 502 421 530")),
    "RNFR": (RFC959, codes("350 450 550 500 501 502 421 530")),
    "RNTO": (RFC959, codes("250 532 553 500 501 502 503 421 530")),
    "DELE": (RFC959, codes("250 450 550 500 501 502 421 530")),
    "RMD": (RFC959, codes("250 500 501 502 421 530 550")),
    "MKD": (RFC959, codes("257 500 501 502 421 530 550")),
    "PWD": (RFC959, codes("257 500 501 502 421 550")),
    "ABOR": (RFC959, codes("225 226 500 501 502 421")),
    "SYST": (RFC959, codes("215 500 501 502 421")),
    "STAT": (RFC959, codes("211 212 213 450 500 501 502 421 530")),
    "HELP": (RFC959, codes("211 214 500 501 502 421")),
    "NOOP": (RFC959, codes("200 500 421")),
    # RFC 2389 (FTP feature negotiation)
    "FEAT": ("RFC 2389 §3", codes("211 500 502")),
    "OPTS": ("RFC 2389 §4", codes("200 451 501")),
    # RFC 3659 (extensions to FTP)
    "MDTM": ("RFC 3659 §3", codes("213 550 500 501 502 503 504")),
    "SIZE": ("RFC 3659 §4", codes("213 550 500 501 502 503 504")),
    "MLST": ("RFC 3659 §7", codes("250 550 500 501 502 530")),
    # MLSD answers like LIST, plus 501 when the path is not a directory and 550 when it
    # does not exist.
    "MLSD": ("RFC 3659 §7", codes("125 150 226 250 425 426 451 450 500 501 502 530 550")),
    # RFC 2428 (FTP extensions for IPv6 and NATs)
    "EPRT": ("RFC 2428 §2", codes("200 500 501 522 530")),
    # 229 for EPSV [1|2]; 200 for "EPSV ALL" (§4)
    "EPSV": ("RFC 2428 §3, §4", codes("229 200 500 501 502 522 530")),
    # RFC 2228 command-reply sequences (FTP security extensions), as used for TLS by RFC 4217
    "AUTH": ("RFC 2228; RFC 4217 §4", codes("234 334 502 504 534 431 500 501 503")),
    "PBSZ": ("RFC 2228; RFC 4217 §8", codes("200 503 530 500 501")),
    "PROT": ("RFC 2228; RFC 4217 §9", codes("200 504 536 503 534 431 500 501 530")),
    "CCC": ("RFC 2228; RFC 4217 §6", codes("200 500 533 534")),
}
#: RFC 959 §4.2: "421 ... may be a reply to any command if the service knows it must shut
#: down."
ANY_COMMAND = codes("421")

#: Verbs deliberately not checked, and why.
UNCHECKED: dict[str, str] = {
    # lftp sends SITE CHMOD after mirror -R and SITE UTIME after put
    "SITE": "the replies of SITE subcommands are site-specific (RFC 959 §4.1.3)",
    # lftp sets the modification time of what it uploads with MFMT
    "MFMT": "MFMT comes from draft-somers-ftp-mfxx, which never became an RFC",
}


# the recording ------------------------------------------------------------------------------
@dataclass
class Exchange:
    """One command and the replies it got (preliminary ones first, the final one last)."""

    session: int
    verb: str
    arg: str
    codes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"[session {self.session}] {self.verb} {self.arg} -> {' '.join(self.codes)}"


_LOG_LINE = re.compile(
    r"\[(?P<session>\d+) [^\]]*\] "
    r"(?:-> Command\(verb='(?P<verb>[^']*)', arg=(?P<arg>.*)\)|<- (?P<code>\d{3}) .*)",
    re.DOTALL,
)


def pair_replies(messages: Iterable[str]) -> tuple[list[Exchange], list[Exchange]]:
    """The exchanges of the session log lines, in order; and those left without a final reply.

    A reply goes to the oldest command of its session still waiting for one (commands may be
    pipelined, and several sessions interleave). ``1yz`` replies are preliminary; any other
    is the final reply. A reply while no command waits (the greeting) is an exchange of
    ``GREETING``.
    """
    exchanges: list[Exchange] = []
    waiting: dict[int, deque[Exchange]] = {}
    for message in messages:
        match = _LOG_LINE.fullmatch(message)
        if match is None:
            continue
        session = int(match["session"])
        queue = waiting.setdefault(session, deque())
        if match["verb"] is not None:
            exchange = Exchange(session, match["verb"], match["arg"])
            queue.append(exchange)
            exchanges.append(exchange)
            continue
        code = match["code"]
        if not queue:
            exchanges.append(Exchange(session, GREETING, "", [code]))
        elif code.startswith("1"):
            queue[0].codes.append(code)
        else:
            queue.popleft().codes.append(code)
    return exchanges, [exchange for queue in waiting.values() for exchange in queue]


def violations(exchanges: Iterable[Exchange]) -> list[str]:
    """Every reply code not allowed for its command, and every verb missing from the table."""
    found = []
    for exchange in exchanges:
        if exchange.verb in UNCHECKED:
            continue
        if exchange.verb not in ALLOWED:
            found.append(f"{exchange}: {exchange.verb} is neither in ALLOWED nor in UNCHECKED")
            continue
        source, allowed = ALLOWED[exchange.verb]
        for code in exchange.codes:
            if code not in allowed | ANY_COMMAND:
                found.append(f"{exchange}: {code} is not allowed by {source}")
    return found


@dataclass
class Recording:
    """What the server logged while the client ran."""

    exchanges: list[Exchange]
    unanswered: list[Exchange]

    @property
    def verbs(self) -> set[str]:
        return {exchange.verb for exchange in self.exchanges}

    def check(self, expected_verbs: set[str]) -> None:
        """Every command answered, every code allowed, and the expected commands sent."""
        assert self.unanswered == [], [str(e) for e in self.unanswered]
        found = violations(self.exchanges)
        assert found == [], "replies not allowed:\n" + "\n".join(found)
        assert expected_verbs - self.verbs == set(), sorted(self.verbs)


class Recorder:
    """Captures the server's DEBUG session log with pytest's ``caplog``."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog
        caplog.set_level(logging.DEBUG, logger="trio_ftp")

    async def recording(self, running: Running) -> Recording:
        """The recording so far, once every session of ``running`` has ended (so the last
        commands a client sent without waiting for their replies are in it too)."""
        with trio.fail_after(5):
            # polling: the server has no event for "every session has ended"
            while running.server.connections:  # noqa: ASYNC110
                await trio.sleep(0.01)
        messages = [
            record.getMessage()
            for record in self.caplog.records
            if record.name == "trio_ftp.session"
        ]
        return Recording(*pair_replies(messages))


@pytest.fixture
def recorder(caplog: pytest.LogCaptureFixture) -> Recorder:
    return Recorder(caplog)


# shared helpers -------------------------------------------------------------------------------
def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def populate(root: Path) -> None:
    """``dir/`` with two files and a subdirectory, for the clients to work in."""
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "dir" / "file.txt").write_bytes(b"hello\n")
    (root / "dir" / "data.bin").write_bytes(payload(200_000, seed=1))
    (root / "dir" / "sub" / "deep.txt").write_bytes(b"deep\n")


async def run_client(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """Run a client binary (it must succeed); fail, never skip, when it is not installed."""
    result = await run_shared_client(argv, cwd, cwd.parent / "home")
    assert result.returncode == 0, (argv, result.returncode, result.stderr.decode())
    return result


@pytest.fixture
def local(tmp_path: Path) -> Path:
    """The client's working directory."""
    path = tmp_path / "local"
    path.mkdir()
    return path


# ftplib -----------------------------------------------------------------------------------------
def retr(ftp: ftplib.FTP, command: str, rest: int | None = None) -> bytes:
    out = io.BytesIO()
    ftp.retrbinary(command, out.write, blocksize=65536, rest=rest)
    return out.getvalue()


@contextlib.contextmanager
def epsv(ftp: ftplib.FTP) -> Iterator[None]:
    """ftplib sends EPSV only over IPv6: make it send EPSV for the transfers inside."""
    ftp.makepasv = lambda: ftplib.parse229(  # type: ignore[method-assign]
        ftp.sendcmd("EPSV"), ftp.sock.getpeername()
    )
    try:
        yield
    finally:
        del ftp.makepasv


@contextlib.contextmanager
def active(ftp: ftplib.FTP, command: str = "PORT") -> Iterator[None]:
    """Active mode for the transfers inside, announced with PORT, or EPRT (which ftplib
    sends only over IPv6)."""
    ftp.set_pasv(False)
    if command == "EPRT":
        ftp.sendport = ftp.sendeprt  # type: ignore[method-assign]
    try:
        yield
    finally:
        ftp.set_pasv(True)
        if command == "EPRT":
            del ftp.sendport


def ftplib_session(ftp: ftplib.FTP, upload: bytes) -> None:
    """A typical session, logged in, up to QUIT (exclusive): every step must succeed."""
    assert ftp.sendcmd("SYST") == "215 UNIX Type: L8"
    assert ftp.sendcmd("FEAT").startswith("211-")
    ftp.sendcmd("OPTS UTF8 ON")
    assert ftp.pwd() == "/"
    ftp.cwd("dir")
    listing: list[str] = []
    ftp.retrlines("LIST", listing.append)
    assert [line.split(None, 8)[8] for line in listing] == ["data.bin", "file.txt", "sub"]
    assert ftp.nlst() == ["data.bin", "file.txt", "sub"]
    assert [name for name, _ in ftp.mlsd()] == [".", "..", "data.bin", "file.txt", "sub"]
    assert ftp.sendcmd("MLST file.txt").startswith("250-")
    ftp.storbinary("STOR up.bin", io.BytesIO(upload), blocksize=65536)
    ftp.voidcmd("TYPE I")
    assert ftp.size("up.bin") == len(upload)
    assert re.fullmatch(r"213 \d{14}", ftp.sendcmd("MDTM up.bin"))
    assert retr(ftp, "RETR up.bin") == upload
    assert retr(ftp, "RETR up.bin", rest=1000) == upload[1000:]
    ftp.storbinary("APPE up.bin", io.BytesIO(b"tail"))
    assert retr(ftp, "RETR up.bin") == upload + b"tail"
    assert ftp.storbinary("STOU", io.BytesIO(b"unique")) == "226 transfer complete"
    assert retr(ftp, "RETR stou") == b"unique"  # STOU without a name: "stou" in the cwd
    with epsv(ftp):
        assert retr(ftp, "RETR file.txt") == b"hello\n"
    with active(ftp, "PORT"):
        assert retr(ftp, "RETR file.txt") == b"hello\n"
    with active(ftp, "EPRT"):
        assert ftp.nlst("sub") == ["deep.txt"]
    ftp.rename("up.bin", "moved.bin")
    ftp.delete("moved.bin")
    assert ftp.mkd("newdir") == "/dir/newdir"
    ftp.cwd("newdir")
    ftp.cwd("..")  # ftplib sends CDUP for ".."
    ftp.rmd("newdir")
    ftp.voidcmd("NOOP")
    assert ftp.sendcmd("STAT").startswith("211-")
    assert ftp.sendcmd("STAT file.txt").startswith("213-")
    assert ftp.sendcmd("HELP").startswith("214-")
    ftp.voidcmd("MODE S")
    ftp.voidcmd("STRU F")
    assert ftp.sendcmd("ALLO 100").startswith("202")
    assert ftp.sendcmd("ABOR").startswith("226")  # nothing to abort (RFC 959 §4.1.3)


def abort_download(ftp: ftplib.FTP) -> tuple[str, str]:
    """Start downloading a big file, read one block, abort (ABOR as urgent data): the
    replies to the transfer and to ABOR."""
    ftp.voidcmd("TYPE I")
    with ftp.transfercmd("RETR /big.bin") as conn:
        assert conn.recv(65536)
        first = ftp.abort()
    second = ftp.getresp() if first.startswith("426") else ""
    return first, second


async def test_ftplib(start_server, root, recorder):
    """ftplib's typical session, an aborted RETR, ACCT and REIN get only allowed replies."""
    populate(root)
    (root / "big.bin").write_bytes(payload(16 * 1024 * 1024, seed=2))
    running = await start_server()
    upload = payload(100_000, seed=3)

    def client() -> tuple[str, str]:
        with running.ftp() as ftp:
            ftplib_session(ftp, upload)
            aborted = abort_download(ftp)
            assert ftp.sendcmd("ACCT nothing").startswith("202")
            assert ftp.sendcmd("REIN").startswith("220")
            ftp.login(LOGIN, PASSWORD)
            ftp.quit()
        return aborted

    assert await in_thread(client) == ("426 transfer aborted", "226 abort successful")
    recording = await recorder.recording(running)
    recording.check(
        {GREETING, "USER", "PASS", "SYST", "FEAT", "OPTS", "PWD", "CWD", "CDUP", "LIST"}
        | {"NLST", "MLSD", "MLST", "TYPE", "PASV", "EPSV", "PORT", "EPRT", "STOR", "RETR"}
        | {"REST", "APPE", "STOU", "SIZE", "MDTM", "RNFR", "RNTO", "DELE", "MKD", "RMD"}
        | {"NOOP", "STAT", "HELP", "MODE", "STRU", "ALLO", "ABOR", "ACCT", "REIN", "QUIT"}
    )


async def test_ftplib_tls(start_server, root, recorder, tls):
    """FTP_TLS (AUTH TLS, PBSZ, PROT P, a refused CCC) gets only allowed replies."""
    populate(root)
    running = await start_server(tls_context=tls.server_context, tls_data_required=True)
    upload = payload(100_000, seed=4)

    def client() -> str:
        with ftplib.FTP_TLS(context=tls.client_context, timeout=10) as ftp:
            ftp.connect(running.host, running.port)
            ftp.auth()
            ftp.login(LOGIN, PASSWORD)
            ftp.prot_p()
            ftplib_session(ftp, upload)
            with pytest.raises(ftplib.error_perm) as refused:
                ftp.ccc()
            ftp.quit()
        return str(refused.value)

    assert (await in_thread(client))[:3] == "534"
    recording = await recorder.recording(running)
    recording.check(
        {GREETING, "AUTH", "PBSZ", "PROT", "CCC", "USER", "PASS", "CWD", "LIST", "MLSD"}
        | {"PASV", "EPSV", "PORT", "EPRT", "STOR", "RETR", "SIZE", "MDTM", "RNFR", "RNTO"}
        | {"DELE", "MKD", "RMD", "QUIT"}
    )


# curl -------------------------------------------------------------------------------------------
async def curl(tls: TLSCerts | None, local: Path, *args: str) -> bytes:
    argv = ["curl", "-q", "-sS", "--noproxy", "*", "--max-time", str(CLIENT_TIMEOUT - 5)]
    if tls is not None:
        argv += ["--ssl-reqd", "--cacert", str(tls.ca_file)]
    result = await run_client([*argv, *args], local)
    return result.stdout


async def curl_session(running: Running, tls: TLSCerts | None, local: Path) -> None:
    """curl's typical uses, one run each; every run must succeed."""
    url = f"ftp://{LOGIN}:{PASSWORD}@{running.host}:{running.port}/dir/"
    source = local / "source.bin"
    source.write_bytes(payload(150_000, seed=5))
    listing = await curl(tls, local, url)
    assert [line.split(None, 8)[8] for line in listing.decode().splitlines()] == [
        "data.bin",
        "file.txt",
        "sub",
    ]
    # curl turns the CR LF of an ASCII transfer into LF
    assert await curl(tls, local, "--list-only", url) == b"data.bin\nfile.txt\nsub\n"
    await curl(tls, local, "-T", str(source), url + "up.bin")
    await curl(tls, local, "-R", "-o", str(local / "back.bin"), url + "up.bin")  # -R: MDTM
    assert (local / "back.bin").read_bytes() == source.read_bytes()
    head = await curl(tls, local, "-I", url + "file.txt")  # SIZE, MDTM: no transfer
    assert b"Content-Length: 6" in head
    (running.root / "dir" / "part.bin").write_bytes(source.read_bytes()[:1000])
    await curl(tls, local, "-C", "-", "-T", str(source), url + "part.bin")  # SIZE + APPE
    assert (running.root / "dir" / "part.bin").read_bytes() == source.read_bytes()
    (local / "partial.bin").write_bytes(source.read_bytes()[:5000])
    await curl(tls, local, "-C", "-", "-o", str(local / "partial.bin"), url + "up.bin")  # REST
    assert (local / "partial.bin").read_bytes() == source.read_bytes()
    # -Q commands run before curl changes into the URL's directory
    quotes = ["RNFR dir/up.bin", "RNTO dir/moved.bin", "DELE dir/moved.bin", "MKD dir/new"]
    quotes.append("RMD dir/new")
    await curl(tls, local, *(arg for q in quotes for arg in ("-Q", q)), "--list-only", url)
    if tls is None:
        # curl 7.88 fails active FTPS before sending EPRT ("sa_addr inet_ntop() failed",
        # curl/curl#10622, fixed in curl 8.0); ftplib's FTP_TLS covers active FTPS.
        await curl(tls, local, "--ftp-port", "-", "-o", str(local / "a.txt"), url + "file.txt")
    await curl(tls, local, "--disable-epsv", "-o", str(local / "b.txt"), url + "file.txt")
    await curl(tls, local, "--ftp-create-dirs", "-T", str(source), url + "x/y/z.bin")
    assert (running.root / "dir" / "x" / "y" / "z.bin").read_bytes() == source.read_bytes()


async def test_curl(start_server, root, recorder, local):
    """curl's typical uses get only allowed replies; it sent EPSV, PASV, EPRT, SIZE, MDTM."""
    populate(root)
    running = await start_server()
    await curl_session(running, None, local)
    recording = await recorder.recording(running)
    recording.check(
        {GREETING, "USER", "PASS", "PWD", "CWD", "EPSV", "PASV", "EPRT", "TYPE", "LIST"}
        | {"NLST", "SIZE", "MDTM", "RETR", "STOR", "APPE", "REST", "RNFR", "RNTO", "DELE"}
        | {"MKD", "RMD", "QUIT"}
    )


async def test_curl_tls(start_server, root, recorder, local, tls):
    """curl --ssl-reqd (AUTH SSL, PBSZ, PROT P) gets only allowed replies."""
    populate(root)
    running = await start_server(tls_context=tls.server_context, tls_data_required=True)
    await curl_session(running, tls, local)
    recording = await recorder.recording(running)
    recording.check(
        {GREETING, "AUTH", "PBSZ", "PROT", "USER", "PASS", "CWD", "EPSV", "PASV", "LIST"}
        | {"SIZE", "MDTM", "RETR", "STOR", "APPE", "REST", "QUIT"}
    )


# wget -------------------------------------------------------------------------------------------
async def test_wget(start_server, root, recorder, local):
    """wget (listing, download, -c, -m, active) gets only allowed replies; it sent SIZE."""
    populate(root)
    running = await start_server()
    url = f"ftp://{LOGIN}:{PASSWORD}@{running.host}:{running.port}/dir/"
    wget = ["wget", "--no-config", "-nv", "--no-proxy", "--tries=1", "--timeout=10"]
    (local / "listing").mkdir()
    await run_client([*wget, "--no-remove-listing", url], local / "listing")
    await run_client([*wget, url + "data.bin"], local)
    (local / "file.txt").write_bytes(b"hel")
    await run_client([*wget, "-c", url + "file.txt"], local)
    assert (local / "file.txt").read_bytes() == b"hello\n"
    await run_client([*wget, "-m", "-nH", url], local)
    await run_client([*wget, "--no-passive-ftp", "-O", "active.txt", url + "file.txt"], local)
    assert (local / "data.bin").read_bytes() == (root / "dir" / "data.bin").read_bytes()
    assert (local / "dir" / "sub" / "deep.txt").read_bytes() == b"deep\n"
    recording = await recorder.recording(running)
    recording.check(
        {GREETING, "USER", "PASS", "SYST", "PWD", "TYPE", "CWD", "SIZE", "PASV", "PORT"}
        | {"REST", "RETR", "LIST"}
    )


# lftp -------------------------------------------------------------------------------------------
async def lftp(running: Running, local: Path, settings: list[str], *commands: str) -> bytes:
    script = "; ".join(
        [
            "set cmd:fail-exit yes",
            "set net:max-retries 1",
            "set net:timeout 10",
            *settings,
            f"open -u {LOGIN},{PASSWORD} ftp://{running.host}:{running.port}",
            *commands,
        ]
    )
    return (await run_client(["lftp", "-c", script], local)).stdout


LFTP_SESSION = (
    "cd dir",
    "cls -l",  # MLSD
    "ls",  # LIST
    "nlist",  # NLST
    "put source.bin -o up.bin",
    "get up.bin -o back.bin",  # SIZE, MDTM, RETR
    "put -c source.bin -o part.bin",  # SIZE, REST, STOR
    "get -c up.bin -o partial.bin",  # REST, RETR
    "mv up.bin moved.bin",
    "rm moved.bin",
    "mkdir newdir",
    "rmdir newdir",
    "mirror -R --parallel=4 tree tree",  # MKD, STOR, SITE CHMOD
    "mirror --parallel=4 tree mirrored",  # CWD, MLSD, RETR
    "set ftp:passive-mode false",
    "ls sub",  # PORT
)


async def test_lftp(start_server, root, recorder, local):
    """lftp's typical session gets only allowed replies; it sent FEAT, OPTS and MLSD."""
    populate(root)
    running = await start_server()
    source = payload(150_000, seed=6)
    (local / "source.bin").write_bytes(source)
    (root / "dir" / "part.bin").write_bytes(source[:1000])
    (local / "partial.bin").write_bytes(source[:5000])
    (local / "tree" / "d1").mkdir(parents=True)
    (local / "tree" / "d1" / "f.txt").write_bytes(b"mirrored\n")
    await lftp(running, local, [], *LFTP_SESSION)
    assert (local / "back.bin").read_bytes() == source
    assert (local / "partial.bin").read_bytes() == source
    assert (root / "dir" / "part.bin").read_bytes() == source
    assert (local / "mirrored" / "d1" / "f.txt").read_bytes() == b"mirrored\n"
    recording = await recorder.recording(running)
    recording.check(
        {GREETING, "FEAT", "AUTH", "OPTS", "USER", "PASS", "PWD", "CWD", "MLSD", "LIST"}
        | {"NLST", "TYPE", "PASV", "PORT", "SIZE", "MDTM", "STOR", "RETR", "REST", "RNFR"}
        | {"RNTO", "DELE", "MKD", "RMD", "SITE", "QUIT"}
    )


async def test_lftp_tls(start_server, root, recorder, local, tls):
    """lftp forced to FTPS (AUTH TLS, PBSZ, PROT P) gets only allowed replies."""
    populate(root)
    running = await start_server(tls_context=tls.server_context, tls_data_required=True)
    source = payload(150_000, seed=7)
    (local / "source.bin").write_bytes(source)
    (root / "dir" / "part.bin").write_bytes(source[:1000])
    (local / "partial.bin").write_bytes(source[:5000])
    (local / "tree" / "d1").mkdir(parents=True)
    (local / "tree" / "d1" / "f.txt").write_bytes(b"mirrored\n")
    settings = [
        f'set ssl:ca-file "{tls.ca_file}"',
        "set ssl:verify-certificate yes",
        "set ftp:ssl-force true",
        "set ftp:ssl-protect-data true",
    ]
    await lftp(running, local, settings, *LFTP_SESSION)
    assert (local / "back.bin").read_bytes() == source
    recording = await recorder.recording(running)
    recording.check(
        {GREETING, "FEAT", "AUTH", "PBSZ", "PROT", "USER", "PASS", "CWD", "MLSD", "LIST"}
        | {"PASV", "PORT", "SIZE", "STOR", "RETR", "REST", "RNFR", "RNTO", "DELE", "MKD"}
        | {"RMD", "QUIT"}
    )


# aioftp -----------------------------------------------------------------------------------------
async def test_aioftp(start_server, root, recorder, local):
    """aioftp's client gets only allowed replies; it sent EPSV, MLSD and MLST."""
    populate(root)
    running = await start_server()
    source = local / "source.bin"
    source.write_bytes(payload(150_000, seed=8))

    async def session() -> None:
        client = aioftp.Client(socket_timeout=10, connection_timeout=10, encoding="utf-8")
        await client.connect(running.host, running.port)
        try:
            await client.login(LOGIN, PASSWORD)
            await client.change_directory("dir")
            assert str(await client.get_current_directory()) == "/dir"
            assert [p.name for p, _ in await client.list()] == ["data.bin", "file.txt", "sub"]
            names = [p.name for p, _ in await client.list(raw_command="LIST")]
            assert names == ["data.bin", "file.txt", "sub"]
            assert (await client.stat("file.txt"))["size"] == "6"
            await client.upload(source, "up.bin", write_into=True)
            await client.download("up.bin", local / "back.bin", write_into=True)
            async with client.upload_stream("up.bin", offset=100) as stream:
                await stream.write(source.read_bytes()[100:])
            async with client.download_stream("up.bin", offset=100) as stream:
                assert await stream.read() == source.read_bytes()[100:]
            await client.rename("up.bin", "moved.bin")
            await client.remove_file("moved.bin")
            await client.make_directory("newdir", parents=False)
            await client.remove_directory("newdir")
            assert await client.exists("missing") is False
            await client.quit()
        finally:
            client.close()

    await in_thread(lambda: asyncio.run(asyncio.wait_for(session(), CLIENT_TIMEOUT - 5)))
    assert (local / "back.bin").read_bytes() == source.read_bytes()
    recording = await recorder.recording(running)
    recording.check(
        {GREETING, "USER", "PASS", "CWD", "PWD", "TYPE", "EPSV", "MLSD", "LIST", "MLST"}
        | {"STOR", "RETR", "REST", "RNFR", "RNTO", "DELE", "MKD", "RMD", "QUIT"}
    )


# ftputil ----------------------------------------------------------------------------------------
class ClosingFTP(ftplib.FTP):
    """``ftplib.FTP`` that closes its socket when the login fails (ftputil 5.2 leaks it)."""

    def login(self, *args: Any, **kwargs: Any) -> str:
        try:
            return super().login(*args, **kwargs)
        except BaseException:
            self.close()
            raise


async def test_ftputil(start_server, root, recorder, local):
    """ftputil gets only allowed replies; it sent OPTS UTF8 ON and LIST."""
    populate(root)
    running = await start_server()
    source = local / "source.bin"
    source.write_bytes(payload(150_000, seed=9))

    def session() -> None:
        factory = ftputil.session.session_factory(
            base_class=ClosingFTP, port=running.port, encoding="utf-8"
        )
        with ftputil.FTPHost(running.host, LOGIN, PASSWORD, session_factory=factory) as host:
            host.set_time_shift(0.0)
            host.chdir("dir")
            assert host.getcwd() == "/dir"
            assert host.listdir(".") == ["data.bin", "file.txt", "sub"]
            assert host.path.isdir("sub")
            assert host.stat("file.txt").st_size == 6
            host.upload(source, "up.bin")
            host.download("up.bin", local / "back.bin")
            with host.open("up.bin", "wb", rest=100) as remote:
                remote.write(source.read_bytes()[100:])
            with host.open("up.bin", "rb", rest=100) as remote:
                assert remote.read() == source.read_bytes()[100:]
            host.rename("up.bin", "moved.bin")
            host.remove("moved.bin")
            host.mkdir("newdir")
            host.rmdir("newdir")

    await in_thread(session)
    assert (local / "back.bin").read_bytes() == source.read_bytes()
    recording = await recorder.recording(running)
    recording.check(
        {GREETING, "USER", "PASS", "OPTS", "PWD", "CWD", "LIST", "TYPE", "PASV", "STOR"}
        | {"RETR", "REST", "RNFR", "RNTO", "DELE", "MKD", "RMD"}
    )
    # ftputil closes its sessions without QUIT
    assert "QUIT" not in recording.verbs


# error replies --------------------------------------------------------------------------------
ERROR_COMMANDS = (
    # (command, its reply's code) in a logged-in session of the read/write user, in dir/
    ("CWD missing", "550"),
    ("SIZE missing.txt", "550"),
    ("SIZE sub", "550"),
    ("MDTM missing.txt", "550"),
    ("DELE missing.txt", "550"),
    ("RNFR missing.txt", "550"),
    ("RNTO anything.txt", "503"),
    ("MKD sub", "550"),
    ("RMD sub", "550"),
    ("RMD missing", "550"),
    ("MLST missing.txt", "550"),
    ("TYPE X", "504"),
    ("MODE B", "504"),
    ("STRU R", "504"),
    ("REST abc", "501"),
    ("EPSV 3", "522"),
    ("EPRT |3|127.0.0.1|6000|", "522"),
    ("PORT 192,0,2,1,4,1", "501"),  # a foreign address: the bounce attack (RFC 2577)
    ("AUTH TLS", "502"),  # no TLS configured
    ("PBSZ 0", "503"),
    ("PROT P", "503"),
)


def reply_code(ftp: ftplib.FTP, command: str) -> str:
    """Send ``command``; the code of its reply."""
    try:
        return ftp.sendcmd(command)[:3]
    except (ftplib.error_perm, ftplib.error_temp) as exc:
        return str(exc)[:3]


def transfer_refusal(ftp: ftplib.FTP, command: str) -> str:
    """Set up a passive data connection, then send a transfer ``command`` that the server
    must refuse; the code of its reply."""
    ftp.voidcmd("TYPE I")
    try:
        with ftp.transfercmd(command):
            pass
    except (ftplib.error_perm, ftplib.error_temp) as exc:
        return str(exc)[:3]
    raise AssertionError(f"{command} was accepted")


async def test_error_replies(start_server, root, recorder):
    """Refused commands get codes the RFCs allow for the command, exactly as expected."""
    populate(root)
    running = await start_server()

    def client() -> dict[str, str]:
        got: dict[str, str] = {}
        with running.ftp(login=None) as ftp:
            got["PASS first"] = reply_code(ftp, "PASS secret")
            got["USER"] = reply_code(ftp, "USER user")
            got["PASS wrong"] = reply_code(ftp, "PASS wrong")
            got["CWD before login"] = reply_code(ftp, "CWD dir")
            ftp.login(LOGIN, PASSWORD)
            ftp.cwd("dir")
            for command, _ in ERROR_COMMANDS:
                got[command] = reply_code(ftp, command)
            for command in ("RETR missing.txt", "RETR sub", "MLSD file.txt"):
                got[command] = transfer_refusal(ftp, command)
            ftp.quit()
        return got

    got = await in_thread(client)
    assert got == {
        "PASS first": "503",
        "USER": "331",
        "PASS wrong": "530",
        "CWD before login": "530",
        **dict(ERROR_COMMANDS),
        "RETR missing.txt": "550",
        "RETR sub": "550",
        "MLSD file.txt": "501",
    }
    recording = await recorder.recording(running)
    recording.check({GREETING, "USER", "PASS", "CWD", "RETR", "MLSD", "SIZE", "RNTO", "EPRT"})


async def test_transfer_refusals(start_server, root, recorder):
    """Refused transfers get codes that RFC 959 §5.4 lists for the command."""
    # LIST/NLST of a missing path: 450 (the §5.4 lists have no 550). STOR onto a directory or
    # by a read-only user: 553, 450 or 532 (the STOR list has no 550, unlike APPE's). RETR
    # with no PORT/PASV first: 425 (the RETR list has no 503).
    populate(root)
    users = [
        User(LOGIN, PASSWORD, base_path=root),
        User("reader", PASSWORD, base_path=root, permissions=[Permission("/", writable=False)]),
    ]
    running = await start_server(users)

    def client() -> None:
        with running.ftp() as ftp:
            ftp.cwd("dir")
            reply_code(ftp, "RETR file.txt")  # no data channel set up yet
            transfer_refusal(ftp, "LIST missing")
            transfer_refusal(ftp, "NLST missing")
            transfer_refusal(ftp, "STOR sub")
            ftp.quit()
        with running.ftp(login="reader") as ftp:
            transfer_refusal(ftp, "STOR dir/new.txt")
            ftp.quit()

    await in_thread(client)
    assert not (root / "dir" / "new.txt").exists()
    recording = await recorder.recording(running)
    recording.check({GREETING, "LIST", "NLST", "STOR", "RETR", "QUIT"})


# the recorder itself ----------------------------------------------------------------------------
def test_pair_replies_in_order_per_session():
    """Replies pair with their session's oldest waiting command; 1yz don't end it."""
    lines = [
        "[1 127.0.0.1:1] <- 220 ready",
        "[1 127.0.0.1:1] -> Command(verb='USER', arg='user')",
        "[2 127.0.0.1:2] <- 220 ready",
        "[1 127.0.0.1:1] <- 331 password required",
        "[1 127.0.0.1:1] -> Command(verb='RETR', arg='big.bin')",
        "[1 127.0.0.1:1] <- 150 opening data connection",
        "[1 127.0.0.1:1] data connection from 127.0.0.1:3",
        "[1 127.0.0.1:1] -> Command(verb='ABOR', arg='')",
        "[1 127.0.0.1:1] <- 426 transfer aborted",
        "[1 127.0.0.1:1] <- 226 abort successful",
        "[2 127.0.0.1:2] -> Command(verb='QUIT', arg='')",
        "[1 127.0.0.1:1] -> Command(verb='NOOP', arg='')",
    ]
    exchanges, unanswered = pair_replies(lines)
    assert [str(e) for e in exchanges] == [
        "[session 1] <connect>  -> 220",
        "[session 1] USER 'user' -> 331",
        "[session 2] <connect>  -> 220",
        "[session 1] RETR 'big.bin' -> 150 426",
        "[session 1] ABOR '' -> 226",
        "[session 2] QUIT '' -> ",
        "[session 1] NOOP '' -> ",
    ]
    assert [str(e) for e in unanswered] == ["[session 1] NOOP '' -> ", "[session 2] QUIT '' -> "]
    assert violations(exchanges) == []
    assert violations([Exchange(1, "CWD", "'x'", ["150", "250"])]) == [
        "[session 1] CWD 'x' -> 150 250: 150 is not allowed by RFC 959 §5.4"
    ]
    assert violations([Exchange(1, "XYZZ", "''", ["500"])]) == [
        "[session 1] XYZZ '' -> 500: XYZZ is neither in ALLOWED nor in UNCHECKED"
    ]
