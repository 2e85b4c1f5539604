"""Integration tests driving a real server with Python's ftplib (in threads), command by command."""

from __future__ import annotations

import ftplib
import functools
import io
import os
import re
import socket
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import trio
from conftest import LOGIN, PASSWORD, MiB, code, in_thread, random_bytes, reply_of


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def retr(ftp: ftplib.FTP, name: str, rest: int | None = None) -> bytes:
    out = io.BytesIO()
    ftp.retrbinary(f"RETR {name}", out.write, blocksize=65536, rest=rest)
    return out.getvalue()


def list_lines(ftp: ftplib.FTP, command: str = "LIST") -> list[str]:
    lines: list[str] = []
    ftp.retrlines(command, lines.append)
    return lines


def parse_ls(line: str) -> tuple[str, int, str]:
    """``(mode, size, name)`` of one ``ls -l`` style line."""
    parts = line.split(None, 8)
    assert len(parts) == 9, line
    mode, links, _owner, _group, size, month, day, clock, name = parts
    assert re.fullmatch(r"[-dl][-rwxsStT]{9}", mode), line
    assert links.isdigit(), line
    assert size.isdigit(), line
    assert day.isdigit(), line
    assert month in {
        "Jan",
        "Feb",
        "Mar",
        "Apr",
        "May",
        "Jun",
        "Jul",
        "Aug",
        "Sep",
        "Oct",
        "Nov",
        "Dec",
    }, line
    assert re.fullmatch(r"\d\d:\d\d|\d{4}", clock), line
    return mode, int(size), name


def read_until_eof(sock: socket.socket, limit: int = 100_000) -> bytes:
    """Everything ``sock`` still delivers until EOF (bounded; a reset counts as EOF)."""
    chunks = []
    for _ in range(limit):
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def populate(root: Path) -> None:
    (root / "a.txt").write_bytes(b"hello\n")
    (root / "b.bin").write_bytes(bytes(range(256)) * 4)
    (root / "sub").mkdir()
    (root / "sub" / "inner.txt").write_bytes(b"inner")


# login ---------------------------------------------------------------------------------------
async def test_login_ok(start_server):
    """USER/PASS with the right password answers 331 then 230."""
    running = await start_server()

    def client() -> tuple[str, str]:
        with running.ftp(login=None) as ftp:
            first = ftp.sendcmd(f"USER {LOGIN}")
            second = ftp.sendcmd(f"PASS {PASSWORD}")
            return first, second

    first, second = await in_thread(client)
    assert code(first) == "331"
    assert code(second) == "230"


async def test_login_wrong_password(start_server):
    """A wrong password is refused with 530 (ftplib.error_perm) and the session is not logged."""
    running = await start_server()

    def client() -> tuple[str, str]:
        with running.ftp(login=None) as ftp:
            with pytest.raises(ftplib.error_perm) as info:
                ftp.login(LOGIN, "wrong")
            return str(info.value), reply_of(lambda: ftp.sendcmd("PWD"))

    refused, pwd = await in_thread(client)
    assert code(refused) == "530"
    assert code(pwd) == "530"


async def test_login_unknown_user(start_server):
    """An unknown user gets 331 (no enumeration) and then 530 after PASS."""
    running = await start_server()

    def client() -> tuple[str, str]:
        with running.ftp(login=None) as ftp:
            user = ftp.sendcmd("USER nobody")
            return user, reply_of(lambda: ftp.sendcmd("PASS whatever"))

    user, password = await in_thread(client)
    assert code(user) == "331"
    assert code(password) == "530"


async def test_pass_before_user(start_server):
    """PASS without USER first is a bad sequence: 503."""
    running = await start_server()

    def client() -> str:
        with running.ftp(login=None) as ftp:
            return reply_of(lambda: ftp.sendcmd("PASS secret"))

    assert code(await in_thread(client)) == "503"


async def test_commands_before_login(start_server, root):
    """Commands that need a login answer 530 before one, and touch nothing."""
    populate(root)
    running = await start_server()
    commands = [
        "PWD",
        "CWD sub",
        "CDUP",
        "MKD new",
        "RMD sub",
        "DELE a.txt",
        "RNFR a.txt",
        "SIZE a.txt",
        "MDTM a.txt",
        "MLST a.txt",
        "PASV",
        "EPSV",
        "RETR a.txt",
        "STOR x",
        "LIST",
        "NLST",
        "MLSD",
        "REST 5",
    ]

    def client() -> dict[str, str]:
        with running.ftp(login=None) as ftp:
            return {
                command: code(reply_of(functools.partial(ftp.sendcmd, command)))
                for command in commands
            }

    assert await in_thread(client) == dict.fromkeys(commands, "530")
    assert sorted(p.name for p in root.iterdir()) == ["a.txt", "b.bin", "sub"]


async def test_anonymous_reads_but_cannot_write(start_server, root):
    """Anonymous may list and RETR; STOR is 553 (RFC 959 §5.4 has no 550 for STOR) and
    APPE/MKD/DELE/RNFR/RMD are 550; nothing changes."""
    populate(root)
    (root / "emptydir").mkdir()
    running = await start_server()
    before = sorted(str(p.relative_to(root)) for p in root.rglob("*"))

    def client() -> tuple[list[str], bytes, dict[str, str]]:
        with running.ftp(login=None) as ftp:
            assert code(ftp.login()) == "230"  # anonymous
            names = ftp.nlst()
            data = retr(ftp, "a.txt")
            refused = {
                "STOR": reply_of(lambda: ftp.storbinary("STOR new.txt", io.BytesIO(b"x"))),
                "APPE": reply_of(lambda: ftp.storbinary("APPE a.txt", io.BytesIO(b"x"))),
                "MKD": reply_of(lambda: ftp.sendcmd("MKD newdir")),
                "DELE": reply_of(lambda: ftp.sendcmd("DELE a.txt")),
                "RNFR": reply_of(lambda: ftp.sendcmd("RNFR a.txt")),
                "RMD": reply_of(lambda: ftp.sendcmd("RMD emptydir")),
            }
            return names, data, {verb: code(reply) for verb, reply in refused.items()}

    names, data, refused = await in_thread(client)
    assert names == ["a.txt", "b.bin", "emptydir", "sub"]
    assert data == b"hello\n"
    assert refused == {
        "STOR": "553",
        **dict.fromkeys(["APPE", "MKD", "DELE", "RNFR", "RMD"], "550"),
    }
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == before
    assert (root / "a.txt").read_bytes() == b"hello\n"


# navigation and directory tree ---------------------------------------------------------------
async def test_pwd_cwd_cdup(start_server, root):
    """PWD says 257 "/", CWD into a subdirectory and CDUP back; CWD to a file or nowhere is 550."""
    populate(root)
    running = await start_server()

    def client() -> list[str]:
        with running.ftp() as ftp:
            return [
                ftp.sendcmd("PWD"),
                ftp.sendcmd("CWD sub"),
                ftp.sendcmd("PWD"),
                ftp.sendcmd("CDUP"),
                ftp.sendcmd("PWD"),
                reply_of(lambda: ftp.sendcmd("CWD a.txt")),
                reply_of(lambda: ftp.sendcmd("CWD missing")),
                ftp.sendcmd("XPWD"),
            ]

    replies = await in_thread(client)
    assert replies[0] == '257 "/" is the current directory'
    assert code(replies[1]) == "250"
    assert replies[2] == '257 "/sub" is the current directory'
    assert code(replies[3]) == "250"
    assert replies[4] == '257 "/" is the current directory'
    assert code(replies[5]) == "550"
    assert code(replies[6]) == "550"
    assert replies[7] == '257 "/" is the current directory'


async def test_mkd_rmd(start_server, root):
    """MKD answers 257 with the quoted path (a quote doubled) and makes it; RMD removes it."""
    running = await start_server()

    def client() -> list[str]:
        with running.ftp() as ftp:
            return [
                ftp.sendcmd("MKD newdir"),
                ftp.mkd('say"hi'),
                ftp.sendcmd('MKD a"b'),
                reply_of(lambda: ftp.sendcmd("MKD newdir")),
                ftp.sendcmd("RMD newdir"),
                reply_of(lambda: ftp.sendcmd("RMD newdir")),
            ]

    replies = await in_thread(client)
    assert replies[0] == '257 "/newdir" created'
    assert replies[1] == '/say"hi'  # ftplib's parse257 undoes the doubling
    assert replies[2] == '257 "/a""b" created'
    assert code(replies[3]) == "550"
    assert code(replies[4]) == "250"
    assert code(replies[5]) == "550"
    assert sorted(p.name for p in root.iterdir()) == ['a"b', 'say"hi']
    assert all(p.is_dir() for p in root.iterdir())


async def test_rmd_non_empty_and_root(start_server, root):
    """RMD of a non-empty directory and of / are refused with 550."""
    populate(root)
    running = await start_server()

    def client() -> list[str]:
        with running.ftp() as ftp:
            return [
                code(reply_of(lambda: ftp.sendcmd("RMD sub"))),
                code(reply_of(lambda: ftp.sendcmd("RMD /"))),
            ]

    assert await in_thread(client) == ["550", "550"]
    assert (root / "sub" / "inner.txt").exists()


async def test_dele(start_server, root):
    """DELE removes a file (250); a missing file or a directory is 550."""
    populate(root)
    running = await start_server()

    def client() -> list[str]:
        with running.ftp() as ftp:
            return [
                code(ftp.sendcmd("DELE a.txt")),
                code(reply_of(lambda: ftp.sendcmd("DELE a.txt"))),
                code(reply_of(lambda: ftp.sendcmd("DELE sub"))),
            ]

    assert await in_thread(client) == ["250", "550", "550"]
    assert not (root / "a.txt").exists()
    assert (root / "sub").is_dir()


async def test_rename_file_and_dir(start_server, root):
    """RNFR (350) + RNTO (250) renames a file and a directory; RNTO without RNFR is 503."""
    populate(root)
    running = await start_server()

    def client() -> list[str]:
        with running.ftp() as ftp:
            return [
                ftp.sendcmd("RNFR a.txt"),
                ftp.sendcmd("RNTO renamed.txt"),
                ftp.sendcmd("RNFR sub"),
                ftp.sendcmd("RNTO moved"),
                reply_of(lambda: ftp.sendcmd("RNTO again")),
                reply_of(lambda: ftp.sendcmd("RNFR missing")),
            ]

    replies = await in_thread(client)
    assert [code(r) for r in replies] == ["350", "250", "350", "250", "503", "550"]
    assert (root / "renamed.txt").read_bytes() == b"hello\n"
    assert (root / "moved" / "inner.txt").read_bytes() == b"inner"
    assert not (root / "a.txt").exists()
    assert not (root / "sub").exists()
    assert not (root / "again").exists()


# information commands -----------------------------------------------------------------------
async def test_syst_noop_type_unknown(start_server):
    """SYST 215, NOOP 200, TYPE A/I/L 8 200, TYPE X 504, an unknown verb 502."""
    running = await start_server()

    def client() -> list[str]:
        with running.ftp() as ftp:
            return [
                ftp.sendcmd("SYST"),
                ftp.sendcmd("NOOP"),
                ftp.sendcmd("TYPE A"),
                ftp.sendcmd("TYPE I"),
                ftp.sendcmd("TYPE L 8"),
                reply_of(lambda: ftp.sendcmd("TYPE X")),
                reply_of(lambda: ftp.sendcmd("FOO")),
                reply_of(lambda: ftp.sendcmd("FOO bar baz")),
            ]

    replies = await in_thread(client)
    assert replies[0] == "215 UNIX Type: L8"
    assert replies[1] == "200 ok"
    assert [code(r) for r in replies[2:]] == ["200", "200", "200", "504", "502", "502"]


async def test_feat_opts_help(start_server):
    """FEAT 211 lists EPSV, MDTM, MLST, REST STREAM, SIZE, UTF8; OPTS UTF8 ON 200; HELP 214."""
    running = await start_server()

    def client() -> list[str]:
        with running.ftp() as ftp:
            return [
                ftp.sendcmd("FEAT"),
                ftp.sendcmd("OPTS UTF8 ON"),
                ftp.sendcmd("HELP"),
                ftp.sendcmd("HELP RETR"),
                reply_of(lambda: ftp.sendcmd("HELP NOPE")),
            ]

    feat, opts, help_all, help_retr, help_nope = await in_thread(client)
    lines = feat.split("\n")
    assert lines[0].startswith("211-")
    assert lines[-1].startswith("211 ")
    features = {line.strip() for line in lines[1:-1]}
    assert {"EPSV", "MDTM", "REST STREAM", "SIZE", "UTF8"} <= features
    assert any(re.fullmatch(r"MLST ([\w.]+\*?;)+", f) for f in features), features
    assert all(line.startswith(" ") for line in lines[1:-1])
    assert code(opts) == "200"
    help_lines = help_all.split("\n")
    assert help_lines[0].startswith("214-")
    assert help_lines[-1].startswith("214 ")
    assert "RETR" in help_all.split()
    assert "STOR" in help_all.split()
    assert help_retr == "214 RETR <file>: download"
    assert code(help_nope) == "502"


async def test_size_binary_and_ascii(start_server, root):
    """SIZE answers 213 with the exact size in TYPE I, and 550 in TYPE A (and for a directory)."""
    populate(root)
    running = await start_server()

    def client() -> list[str]:
        with running.ftp() as ftp:
            ascii_reply = reply_of(lambda: ftp.sendcmd("SIZE b.bin"))
            ftp.voidcmd("TYPE I")
            return [
                ascii_reply,
                ftp.sendcmd("SIZE b.bin"),
                str(ftp.size("a.txt")),
                reply_of(lambda: ftp.sendcmd("SIZE sub")),
                reply_of(lambda: ftp.sendcmd("SIZE missing")),
            ]

    replies = await in_thread(client)
    assert code(replies[0]) == "550"
    assert replies[1] == "213 1024"
    assert replies[2] == "6"
    assert code(replies[3]) == "550"
    assert code(replies[4]) == "550"


async def test_mdtm(start_server, root):
    """MDTM answers 213 YYYYMMDDHHMMSS, the file's mtime in UTC."""
    populate(root)
    mtime = 1_700_000_000.75
    os.utime(root / "a.txt", (mtime, mtime))
    running = await start_server()

    def client() -> tuple[str, str]:
        with running.ftp() as ftp:
            return ftp.sendcmd("MDTM a.txt"), reply_of(lambda: ftp.sendcmd("MDTM missing"))

    reply, missing = await in_thread(client)
    expected = datetime.fromtimestamp(mtime, timezone.utc).strftime("%Y%m%d%H%M%S")
    assert expected == "20231114221320"
    assert reply == f"213 {expected}"
    assert code(missing) == "550"


async def test_mlst(start_server, root):
    """MLST answers a multi-line 250 whose indented middle line gives the file's facts."""
    populate(root)
    os.utime(root / "b.bin", (1_700_000_000, 1_700_000_000))
    running = await start_server()

    def client() -> list[str]:
        with running.ftp() as ftp:
            return [
                ftp.sendcmd("MLST b.bin"),
                ftp.sendcmd("MLST sub"),
                reply_of(lambda: ftp.sendcmd("MLST missing")),
            ]

    file_reply, dir_reply, missing = await in_thread(client)
    lines = file_reply.split("\n")
    assert len(lines) == 3
    assert lines[0].startswith("250-")
    assert lines[2].startswith("250 ")
    assert lines[1].startswith(" ")
    facts_text, _, name = lines[1][1:].partition(" ")
    assert name == "/b.bin"
    facts = dict(f.split("=", 1) for f in facts_text.rstrip(";").split(";"))
    assert facts["type"] == "file"
    assert facts["size"] == "1024"
    assert facts["modify"] == "20231114221320"
    assert facts["perm"] == "adfrw"
    dir_facts = dir_reply.split("\n")[1]
    assert "type=dir;" in dir_facts
    assert dir_facts.endswith(" /sub")
    assert code(missing) == "550"


async def test_mlsd(start_server, root):
    """ftplib's mlsd() sees every entry with the right type and size."""
    populate(root)
    running = await start_server()

    def client() -> list[tuple[str, dict[str, str]]]:
        with running.ftp() as ftp:
            entries = list(ftp.mlsd())
            not_dir = reply_of(lambda: list(ftp.mlsd("a.txt")))
            entries.append(("<file>", {"reply": code(not_dir)}))
            sub = {name: facts["type"] for name, facts in ftp.mlsd("sub")}
            entries.append(("<sub>", sub))
            return entries

    entries = dict(await in_thread(client))
    assert entries.pop("<file>") == {"reply": "501"}
    sub = entries.pop("<sub>")
    assert sub["."] == "cdir"
    assert sub[".."] == "pdir"
    assert entries.pop(".")["type"] == "cdir"  # the root has no parent entry
    assert sorted(entries) == ["a.txt", "b.bin", "sub"]
    assert entries["a.txt"]["type"] == "file"
    assert entries["a.txt"]["size"] == "6"
    assert entries["b.bin"]["type"] == "file"
    assert entries["b.bin"]["size"] == "1024"
    assert entries["sub"]["type"] == "dir"


async def test_list(start_server, root):
    """LIST lines parse as ls -l with the right names, kinds and sizes, sorted by name."""
    populate(root)
    running = await start_server()

    def client() -> list[str]:
        with running.ftp() as ftp:
            return list_lines(ftp)

    lines = await in_thread(client)
    parsed = [parse_ls(line) for line in lines]
    assert [(mode[0], size, name) for mode, size, name in parsed if mode[0] == "-"] == [
        ("-", 6, "a.txt"),
        ("-", 1024, "b.bin"),
    ]
    assert [name for _, _, name in parsed] == ["a.txt", "b.bin", "sub"]
    assert parsed[2][0][0] == "d"


async def test_list_options_stripped(start_server, root):
    """LIST -la and LIST -a ignore the option and list the same names as LIST."""
    populate(root)
    running = await start_server()

    def client() -> list[list[str]]:
        with running.ftp() as ftp:
            return [
                [parse_ls(line)[2] for line in list_lines(ftp, command)]
                for command in ("LIST", "LIST -la", "LIST -a", "LIST -la sub")
            ]

    plain, la, a, sub = await in_thread(client)
    assert plain == la == a == ["a.txt", "b.bin", "sub"]
    assert sub == ["inner.txt"]


async def test_nlst(start_server, root):
    """NLST gives the bare names, sorted, CRLF-terminated; NLST of a subdirectory lists it."""
    (root / "zeta").write_bytes(b"")
    (root / "alpha").write_bytes(b"")
    (root / "Mid").mkdir()
    (root / "Mid" / "x").write_bytes(b"")
    running = await start_server()

    def client() -> tuple[list[str], list[str], bytes]:
        raw = bytearray()
        with running.ftp() as ftp:
            ftp.retrbinary("NLST", raw.extend)
            return ftp.nlst(), ftp.nlst("Mid"), bytes(raw)

    names, sub, raw = await in_thread(client)
    assert names == ["Mid", "alpha", "zeta"]
    assert sub == ["x"]
    assert raw == b"Mid\r\nalpha\r\nzeta\r\n"  # CRLF line ends on the wire


async def test_list_single_file_and_missing(start_server, root):
    """LIST of a file gives its one line; LIST of a missing path is 450 (RFC 959 §5.4)."""
    populate(root)
    running = await start_server()

    def client() -> tuple[list[str], str]:
        with running.ftp() as ftp:
            return list_lines(ftp, "LIST b.bin"), reply_of(lambda: list_lines(ftp, "LIST nope"))

    lines, missing = await in_thread(client)
    assert len(lines) == 1
    assert parse_ls(lines[0])[1:] == (1024, "b.bin")
    assert code(missing) == "450"


# byte-exact transfers -------------------------------------------------------------------------
async def test_stor_retr_big_binary(start_server, root):
    """A 5 MiB random file is stored and retrieved byte for byte."""
    payload = random_bytes(5 * MiB)
    running = await start_server()

    def client() -> tuple[str, bytes]:
        with running.ftp() as ftp:
            ftp.voidcmd("TYPE I")
            stored = ftp.storbinary("STOR big.bin", io.BytesIO(payload), blocksize=65536)
            return stored, retr(ftp, "big.bin")

    stored, back = await in_thread(client)
    assert code(stored) == "226"
    assert (root / "big.bin").read_bytes() == payload
    assert back == payload


async def test_appe(start_server, root):
    """APPE appends to an existing file and creates a missing one."""
    first, second = random_bytes(2 * MiB, seed=1), random_bytes(3 * MiB, seed=2)
    (root / "f.bin").write_bytes(first)
    running = await start_server()

    def client() -> list[str]:
        with running.ftp() as ftp:
            ftp.voidcmd("TYPE I")
            return [
                ftp.storbinary("APPE f.bin", io.BytesIO(second), blocksize=65536),
                ftp.storbinary("APPE new.bin", io.BytesIO(b"abc")),
            ]

    assert [code(r) for r in await in_thread(client)] == ["226", "226"]
    assert (root / "f.bin").read_bytes() == first + second
    assert (root / "new.bin").read_bytes() == b"abc"


async def test_rest_retr(start_server, root):
    """REST N + RETR sends exactly the tail from N (REST 0 and REST size too)."""
    payload = random_bytes(5 * MiB)
    (root / "f.bin").write_bytes(payload)
    running = await start_server()
    offset = 1_234_567

    def client() -> tuple[bytes, bytes, bytes, bytes]:
        with running.ftp() as ftp:
            ftp.voidcmd("TYPE I")
            return (
                retr(ftp, "f.bin", rest=offset),
                retr(ftp, "f.bin", rest=0),
                retr(ftp, "f.bin", rest=len(payload)),
                retr(ftp, "f.bin"),
            )

    tail, whole, empty, again = await in_thread(client)
    assert tail == payload[offset:]
    assert whole == payload
    assert empty == b""
    assert again == payload  # the offset applies to one transfer only


async def test_rest_stor_resumes(start_server, root):
    """Upload half, then REST half + STOR of the rest gives the whole file."""
    payload = random_bytes(5 * MiB)
    half = len(payload) // 2 + 17
    running = await start_server()

    def client() -> list[str]:
        with running.ftp() as ftp:
            ftp.voidcmd("TYPE I")
            first = ftp.storbinary("STOR f.bin", io.BytesIO(payload[:half]), blocksize=65536)
            size = ftp.sendcmd("SIZE f.bin")
            second = ftp.storbinary(
                "STOR f.bin", io.BytesIO(payload[half:]), blocksize=65536, rest=str(half)
            )
            return [first, size, second]

    first, size, second = await in_thread(client)
    assert code(first) == "226"
    assert size == f"213 {half}"
    assert code(second) == "226"
    assert (root / "f.bin").read_bytes() == payload


async def test_rest_stor_mid_file_overwrites_in_place(start_server, root):
    """REST N + STOR overwrites from N without truncating what lies beyond the new data."""
    (root / "f.bin").write_bytes(b"0123456789")
    running = await start_server()

    def client() -> str:
        with running.ftp() as ftp:
            ftp.voidcmd("TYPE I")
            return ftp.storbinary("STOR f.bin", io.BytesIO(b"ab"), rest="3")

    assert code(await in_thread(client)) == "226"
    assert (root / "f.bin").read_bytes() == b"012ab56789"


async def test_rest_errors(start_server, root):
    """REST past the end then RETR or STOR is 554; REST then APPE is 503; bad REST is 501."""
    (root / "f.bin").write_bytes(b"0123456789")
    running = await start_server()

    def client() -> list[str]:
        sink = bytearray()
        with running.ftp() as ftp:
            ftp.voidcmd("TYPE I")
            return [
                reply_of(lambda: ftp.retrbinary("RETR f.bin", sink.extend, rest=11)),
                reply_of(lambda: ftp.storbinary("STOR f.bin", io.BytesIO(b"x"), rest=11)),
                reply_of(lambda: ftp.storbinary("STOR nope.bin", io.BytesIO(b"x"), rest=1)),
                reply_of(lambda: ftp.storbinary("APPE f.bin", io.BytesIO(b"x"), rest=5)),
                reply_of(lambda: ftp.sendcmd("REST -1")),
                reply_of(lambda: ftp.sendcmd("REST abc")),
                # the refused offsets were consumed: a plain RETR gets everything
                str(bytes(retr(ftp, "f.bin"))),
            ]

    replies = await in_thread(client)
    assert [code(r) for r in replies[:6]] == ["554", "554", "554", "503", "501", "501"]
    assert replies[6] == str(b"0123456789")
    assert (root / "f.bin").read_bytes() == b"0123456789"
    assert not (root / "nope.bin").exists()


async def test_epsv_transfers(start_server, root):
    """EPSV answers 229 (|||port|); a RETR and a STOR over that port are byte-exact."""
    payload = random_bytes(5 * MiB)
    (root / "f.bin").write_bytes(payload)
    running = await start_server()

    def epsv_port(ftp: ftplib.FTP) -> int:
        reply = ftp.sendcmd("EPSV")
        match = re.fullmatch(r"229 .*\(\|\|\|(\d+)\|\)", reply)
        assert match, reply
        return int(match.group(1))

    def client() -> tuple[bytes, str, str, str]:
        with running.ftp() as ftp:
            ftp.voidcmd("TYPE I")
            with socket.create_connection((running.host, epsv_port(ftp)), timeout=10) as data:
                assert code(ftp.sendcmd("RETR f.bin")) == "150"
                got = read_until_eof(data)
            retr_end = ftp.voidresp()
            with socket.create_connection((running.host, epsv_port(ftp)), timeout=10) as data:
                assert code(ftp.sendcmd("STOR up.bin")) == "150"
                data.sendall(payload[::-1])
            stor_end = ftp.voidresp()
            return got, retr_end, stor_end, reply_of(lambda: ftp.sendcmd("EPSV 2"))

    got, retr_end, stor_end, wrong_family = await in_thread(client)
    assert got == payload
    assert code(retr_end) == "226"
    assert code(stor_end) == "226"
    assert (root / "up.bin").read_bytes() == payload[::-1]
    assert code(wrong_family) == "522"


async def test_transfer_without_pasv(start_server, root):
    """RETR/LIST without a data channel set up first is 425 (RFC 959 §5.4)."""
    populate(root)
    running = await start_server()

    def client() -> list[str]:
        with running.ftp() as ftp:
            return [
                code(reply_of(lambda: ftp.sendcmd("RETR a.txt"))),
                code(reply_of(lambda: ftp.sendcmd("LIST"))),
            ]

    assert await in_thread(client) == ["425", "425"]


# ABOR and broken transfers --------------------------------------------------------------------
async def test_abort_urgent(start_server, root):
    """ftplib's abort() (urgent data) during a big RETR gives 426 then 226; the session goes on."""
    size = 20 * MiB
    (root / "big").write_bytes(random_bytes(size))
    running = await start_server(block_size=8192)

    def client() -> tuple[str, str, int, str]:
        with running.ftp() as ftp:
            ftp.voidcmd("TYPE I")
            with ftp.transfercmd("RETR big") as data:
                received = len(data.recv(65536))
                first = ftp.abort()
                second = ftp.getmultiline()
                received += len(read_until_eof(data))
            return first, second, received, ftp.pwd()

    first, second, received, pwd = await in_thread(client)
    assert code(first) == "426"
    assert code(second) == "226"
    assert 0 < received < size
    assert pwd == "/"


async def test_abort_in_band(start_server, root):
    """A plain in-band ABOR during a big RETR gives 426 then 226; the session goes on."""
    size = 20 * MiB
    (root / "big").write_bytes(random_bytes(size))
    running = await start_server(block_size=8192)

    def client() -> tuple[str, str, int, str]:
        with running.ftp() as ftp:
            ftp.voidcmd("TYPE I")
            with ftp.transfercmd("RETR big") as data:
                received = len(data.recv(65536))
                ftp.sock.sendall(b"ABOR\r\n")
                first = ftp.getmultiline()
                second = ftp.getmultiline()
                received += len(read_until_eof(data))
            return first, second, received, ftp.sendcmd("NOOP")

    first, second, received, noop = await in_thread(client)
    assert code(first) == "426"
    assert code(second) == "226"
    assert 0 < received < size
    assert noop == "200 ok"


async def test_abort_without_transfer(start_server):
    """ABOR with no transfer running answers 226 (RFC 959 §4.1.3; aioftp's abort() wants it)."""
    running = await start_server()

    def client() -> str:
        with running.ftp() as ftp:
            return ftp.sendcmd("ABOR")

    assert code(await in_thread(client)) == "226"


async def test_noop_answered_during_transfer(start_server, root):
    """NOOP is answered at once while a RETR is still running, before the RETR's 226."""
    size = 20 * MiB
    payload = random_bytes(size)
    (root / "big").write_bytes(payload)
    running = await start_server()

    def client() -> tuple[str, bytes, str]:
        with running.ftp() as ftp:
            ftp.voidcmd("TYPE I")
            with ftp.transfercmd("RETR big") as data:
                head = data.recv(65536)
                noop = ftp.sendcmd("NOOP")
                got = head + read_until_eof(data)
            return noop, got, ftp.voidresp()

    noop, got, end = await in_thread(client)
    assert noop == "200 ok"
    assert got == payload
    assert code(end) == "226"


async def test_client_closes_data_connection_mid_retr(start_server, root):
    """A client closing the data connection mid-RETR gets 426 for the RETR; the session goes on."""
    size = 20 * MiB
    (root / "big").write_bytes(random_bytes(size))
    running = await start_server(block_size=8192)

    def client() -> tuple[str, str, list[str], str]:
        with running.ftp() as ftp:
            ftp.voidcmd("TYPE I")
            data = ftp.transfercmd("RETR big")
            data.recv(65536)
            data.close()  # unread data: the kernel resets the connection
            end = ftp.getmultiline()
            noop = ftp.sendcmd("NOOP")
            # again, with the NOOP sent at once: answered before or after the RETR's end
            data = ftp.transfercmd("RETR big")
            data.recv(65536)
            data.close()
            ftp.sock.sendall(b"NOOP\r\n")
            both = sorted(ftp.getmultiline() for _ in range(2))
            return end, noop, both, ftp.pwd()

    end, noop, both, pwd = await in_thread(client)
    assert code(end) == "426", end
    assert noop == "200 ok"
    assert [code(r) for r in both] == ["200", "426"], both
    assert pwd == "/"


async def test_control_disconnect_mid_transfer_spares_other_session(start_server, root):
    """A client dropping its control connection mid-RETR ends its session, not another's."""
    size = 20 * MiB
    payload = random_bytes(size)
    (root / "big").write_bytes(payload)
    small = random_bytes(MiB, seed=7)
    (root / "small").write_bytes(small)
    running = await start_server(block_size=8192)

    def client() -> tuple[bytes, str, list[str]]:
        with running.ftp() as other:
            other.voidcmd("TYPE I")
            quitter = running.ftp()
            quitter.voidcmd("TYPE I")
            data = quitter.transfercmd("RETR big")
            data.recv(65536)
            quitter.close()  # control connection gone, data connection still open
            got = other.sendcmd("NOOP")
            data.close()
            return retr(other, "small"), got, other.nlst()

    got, noop, names = await in_thread(client)
    assert got == small
    assert noop == "200 ok"
    assert names == ["big", "small"]
    for _ in range(100):
        if not running.server.connections:
            break
        await trio.sleep(0.02)
    assert running.server.connections == {}


# path confinement -----------------------------------------------------------------------------
async def test_dotdot_stays_at_root(start_server, root):
    """CWD ../../.. stays at /; RETR ../../etc/passwd and /etc/passwd are 550 (not found)."""
    running = await start_server()

    def client() -> list[str]:
        sink = bytearray()
        with running.ftp() as ftp:
            return [
                code(ftp.sendcmd("CWD ../../..")),
                ftp.pwd(),
                code(reply_of(lambda: ftp.retrbinary("RETR ../../etc/passwd", sink.extend))),
                code(reply_of(lambda: ftp.retrbinary("RETR /etc/passwd", sink.extend))),
                code(reply_of(lambda: ftp.sendcmd("SIZE /etc/passwd"))),
                code(reply_of(lambda: ftp.sendcmd("CWD /etc"))),
                str(len(sink)),
            ]

    assert await in_thread(client) == ["250", "/", "550", "550", "550", "550", "0"]


async def test_symlink_to_outside_directory_refused(start_server, root, tmp_path):
    """A symlink in the root to a directory outside: CWD/RETR/LIST/NLST/STOR through it are 550."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"top secret")
    os.symlink(outside, root / "escape")
    running = await start_server()

    def client() -> list[str]:
        sink = bytearray()
        with running.ftp() as ftp:
            return [
                code(reply_of(lambda: ftp.sendcmd("CWD escape"))),
                code(reply_of(lambda: ftp.retrbinary("RETR escape/secret.txt", sink.extend))),
                code(reply_of(lambda: list_lines(ftp, "LIST escape"))),
                code(reply_of(lambda: ftp.nlst("escape"))),
                code(reply_of(lambda: ftp.storbinary("STOR escape/new.txt", io.BytesIO(b"x")))),
                code(reply_of(lambda: ftp.sendcmd("SIZE escape/secret.txt"))),
                ftp.pwd(),
                str(bytes(sink)),
            ]

    assert await in_thread(client) == ["550"] * 6 + ["/", "b''"]
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


async def test_dangling_symlink_to_outside_refused(start_server, root, tmp_path):
    """STOR/APPE through a dangling symlink pointing outside the root is 550; nothing is written."""
    target = tmp_path / "created-outside.txt"
    os.symlink(target, root / "dangling")
    running = await start_server()

    def client() -> list[str]:
        with running.ftp() as ftp:
            return [
                code(reply_of(lambda: ftp.storbinary("STOR dangling", io.BytesIO(b"pwned")))),
                code(reply_of(lambda: ftp.storbinary("APPE dangling", io.BytesIO(b"pwned")))),
                code(reply_of(lambda: ftp.sendcmd("MKD dangling/sub"))),
            ]

    assert await in_thread(client) == ["550", "550", "550"]
    assert not target.exists()
    assert (root / "dangling").is_symlink()


# PASV and data ports --------------------------------------------------------------------------
async def test_data_ports_single_port_reused(start_server, root):
    """With one data port, two consecutive PASV transfers both use it (227 announces it)."""
    populate(root)
    port = free_port()
    running = await start_server(data_ports=[port])

    def client() -> tuple[list[int], list[bytes], list[str]]:
        with running.ftp() as ftp:
            ftp.voidcmd("TYPE I")
            announced: list[int] = []
            original = ftp.makepasv

            def recording() -> tuple[str, int]:
                host, data_port = original()
                announced.append(data_port)
                return host, data_port

            ftp.makepasv = recording  # type: ignore[method-assign]
            results: list[bytes] = []
            replies: list[str] = []
            for _ in range(2):
                replies.append(reply_of(lambda: results.append(retr(ftp, "b.bin"))))
            replies.append(
                reply_of(lambda: results.append(b"|".join(n.encode() for n in ftp.nlst())))
            )
            return announced, results, replies

    announced, results, replies = await in_thread(client)
    assert replies == ["None", "None", "None"]
    assert announced == [port, port, port]
    assert results == [bytes(range(256)) * 4] * 2 + [b"a.txt|b.bin|sub"]


async def test_pasv_twice_replaces_listener(start_server, root):
    """A second PASV before any transfer replaces the first (same single port), and it works."""
    populate(root)
    port = free_port()
    running = await start_server(data_ports=[port])

    def client() -> tuple[list[str], bytes]:
        with running.ftp() as ftp:
            replies = [ftp.sendcmd("PASV"), ftp.sendcmd("PASV"), ftp.sendcmd("PASV")]
            _, data_port = ftplib.parse227(replies[-1])
            with socket.create_connection((running.host, data_port), timeout=10) as data:
                assert code(ftp.sendcmd("RETR a.txt")) == "150"
                got = read_until_eof(data)
            assert code(ftp.voidresp()) == "226"
            return replies, got

    replies, got = await in_thread(client)
    assert [ftplib.parse227(r) for r in replies] == [("127.0.0.1", port)] * 3
    assert got == b"hello\r\n"  # TYPE A (the default) sends CRLF


async def test_pasv_no_free_port(start_server, root):
    """While one session holds the only data port, another session's PASV gets 425."""
    populate(root)
    port = free_port()
    running = await start_server(data_ports=[port])

    def client() -> tuple[str, str, bytes]:
        with running.ftp() as holder, running.ftp() as other:
            held = holder.sendcmd("PASV")
            refused = reply_of(lambda: other.sendcmd("PASV"))
            # the holder can still use it
            _, data_port = ftplib.parse227(held)
            with socket.create_connection((running.host, data_port), timeout=10) as data:
                assert code(holder.sendcmd("RETR a.txt")) == "150"
                got = read_until_eof(data)
            assert code(holder.voidresp()) == "226"
            return held, refused, got

    held, refused, got = await in_thread(client)
    assert ftplib.parse227(held) == ("127.0.0.1", port)
    assert code(refused) == "425"
    assert got == b"hello\r\n"  # TYPE A (the default) sends CRLF


# timeouts ------------------------------------------------------------------------------------
async def test_idle_timeout_closes(start_server):
    """A silent logged-in client gets 421 after idle_timeout, then the connection closes."""
    running = await start_server(idle_timeout=0.5)

    def client() -> tuple[str, str, float]:
        ftp = running.ftp()
        try:
            ftp.sock.settimeout(5)
            started = time.monotonic()
            line = ftp.file.readline()
            elapsed = time.monotonic() - started
            return line, ftp.file.readline(), elapsed
        finally:
            ftp.close()

    line, after, elapsed = await in_thread(client)
    assert line.startswith("421 ")
    assert after == ""
    assert 0.3 < elapsed < 3


async def test_long_transfer_not_idle(start_server, root):
    """A download longer than idle_timeout is not interrupted: all bytes then 226."""
    size = 4 * MiB
    payload = random_bytes(size)
    (root / "big").write_bytes(payload)
    idle = 0.25
    running = await start_server(idle_timeout=idle, socket_timeout=5)

    def client() -> tuple[bytes, str, float]:
        ftp = running.ftp()
        try:
            ftp.voidcmd("TYPE I")
            started = time.monotonic()
            chunks = []
            with ftp.transfercmd("RETR big") as data:
                for _ in range(10_000):  # at least 0.64 s: 64 KiB at most every 10 ms
                    chunk = data.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    time.sleep(0.01)
            end = ftp.voidresp()
            return b"".join(chunks), end, time.monotonic() - started
        finally:
            ftp.close()

    got, end, elapsed = await in_thread(client)
    assert elapsed > 2 * idle
    assert got == payload
    assert code(end) == "226"


async def test_idle_clock_restarts_after_transfer(start_server):
    """After a transfer longer than idle_timeout, the client gets a full idle_timeout before 421."""
    idle = 0.25
    running = await start_server(idle_timeout=idle, socket_timeout=5)

    def client() -> tuple[str, float]:
        ftp = running.ftp()
        try:
            ftp.voidcmd("TYPE I")
            with ftp.transfercmd("STOR slow.bin") as data:
                # 2.5 idle periods of upload; the server's idle clock last started at STOR
                for _ in range(25):
                    data.sendall(b"x" * 1000)
                    time.sleep(idle / 10)
            end = ftp.voidresp()
            assert code(end) == "226", end
            ended = time.monotonic()
            ftp.sock.settimeout(5)
            line = ftp.file.readline()
            return line, time.monotonic() - ended
        finally:
            ftp.close()

    line, silence = await in_thread(client)
    assert line.startswith("421 ")
    assert silence > idle - 0.1, f"421 after only {silence:.3f} s of silence"


async def test_wait_future_timeout(start_server, root):
    """PASV then RETR without connecting: 150, then 425 after wait_future_timeout."""
    populate(root)
    running = await start_server(wait_future_timeout=0.3)

    def client() -> tuple[str, str, float, str]:
        with running.ftp() as ftp:
            ftp.sendcmd("PASV")
            started = time.monotonic()
            first = ftp.sendcmd("RETR a.txt")
            second = reply_of(ftp.getresp)
            return first, second, time.monotonic() - started, ftp.sendcmd("NOOP")

    first, second, elapsed, noop = await in_thread(client)
    assert code(first) == "150"
    assert code(second) == "425"
    assert 0.2 < elapsed < 3
    assert noop == "200 ok"


# server shutdown ------------------------------------------------------------------------------
async def test_close_during_transfers(start_server, root):
    """Server.close() while two slow RETRs run ends both sessions; connections is empty."""
    size = 20 * MiB
    (root / "big").write_bytes(random_bytes(size))
    running = await start_server(block_size=8192)
    started = [threading.Event(), threading.Event()]
    results: list[tuple[int, list[str]]] = []

    def client(index: int) -> None:
        ftp = running.ftp()
        try:
            ftp.voidcmd("TYPE I")
            received = 0
            with ftp.transfercmd("RETR big") as data:
                received += len(data.recv(65536))
                started[index].set()
                for _ in range(2000):  # slow reader: bounded
                    try:
                        chunk = data.recv(65536)
                    except ConnectionResetError:
                        break
                    if not chunk:
                        break
                    received += len(chunk)
                    time.sleep(0.005)
            lines = []
            ftp.sock.settimeout(5)
            for _ in range(10):
                try:
                    line = ftp.file.readline()
                except ConnectionResetError:
                    break
                if not line:
                    break
                lines.append(line[:3])
            results.append((received, lines))
        finally:
            ftp.close()

    async with trio.open_nursery() as nursery:
        for index in range(2):
            nursery.start_soon(in_thread, client, index)
        for event in started:
            assert await in_thread(event.wait, 10)
        assert len(running.server.connections) == 2
        with trio.fail_after(5):
            await running.server.close()
        assert running.server.connections == {}
    assert len(results) == 2
    for received, lines in results:
        assert received < size
        assert lines in ([], ["426"], ["426", "421"])  # 421: server going away; no ABOR: no 226


# hostile input --------------------------------------------------------------------------------
def raw_session(running) -> socket.socket:
    sock = socket.create_connection((running.host, running.port), timeout=5)
    greeting = sock.recv(1024)
    assert greeting.startswith(b"220 ")
    return sock


def read_reply_line(sock: socket.socket) -> bytes:
    data = b""
    for _ in range(1000):
        if data.endswith(b"\r\n"):
            break
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


async def test_overlong_line_closes(start_server):
    """5000 bytes without a newline: 500, then the server closes the connection."""
    running = await start_server()

    def client() -> tuple[bytes, bytes]:
        with raw_session(running) as sock:
            sock.sendall(b"A" * 5000)
            reply = read_reply_line(sock)
            return reply, read_until_eof(sock)

    reply, rest = await in_thread(client)
    assert reply.startswith(b"500 ")
    assert rest == b""


async def test_invalid_utf8_answered_501(start_server):
    """A command line that is not UTF-8 is answered 501 and the session continues."""
    running = await start_server()

    def client() -> list[bytes]:
        with raw_session(running) as sock:
            sock.sendall(f"USER {LOGIN}\r\nPASS {PASSWORD}\r\n".encode())
            assert read_reply_line(sock).startswith(b"331")
            assert read_reply_line(sock).startswith(b"230")
            sock.sendall(b"CWD \xc3\x28\xfe\r\nNOOP\r\n")
            return [read_reply_line(sock), read_reply_line(sock)]

    invalid, noop = await in_thread(client)
    assert invalid.startswith(b"501 ")
    assert noop == b"200 ok\r\n"


async def test_telnet_iac_dont_is_filtered(start_server):
    """b"\\xff\\xfe\\x01" is Telnet IAC DONT ECHO (the option byte goes with it), not bad
    UTF-8."""
    running = await start_server()

    def client() -> list[bytes]:
        with raw_session(running) as sock:
            sock.sendall(b"SYST\xff\xfe\x01\r\nNOOP\r\n")
            return [read_reply_line(sock), read_reply_line(sock)]

    assert await in_thread(client) == [b"215 UNIX Type: L8\r\n", b"200 ok\r\n"]


# many sessions --------------------------------------------------------------------------------
async def test_many_sequential_sessions(start_server, root):
    """Twenty sessions one after another all log in, list and download."""
    populate(root)
    running = await start_server()

    def client() -> list[tuple[list[str], bytes]]:
        results = []
        for _ in range(20):
            with running.ftp() as ftp:
                results.append((ftp.nlst(), retr(ftp, "a.txt")))
        return results

    assert await in_thread(client) == [(["a.txt", "b.bin", "sub"], b"hello\n")] * 20


async def test_many_concurrent_sessions(start_server, root):
    """Ten concurrent sessions (threads) each upload and download their own file."""
    running = await start_server()
    results: dict[int, bytes] = {}

    def client(index: int) -> None:
        payload = random_bytes(256 * 1024, seed=index)
        with running.ftp() as ftp:
            ftp.voidcmd("TYPE I")
            ftp.storbinary(f"STOR f{index}", io.BytesIO(payload))
            results[index] = retr(ftp, f"f{index}")

    async with trio.open_nursery() as nursery:
        for index in range(10):
            nursery.start_soon(in_thread, client, index)
    assert results == {i: random_bytes(256 * 1024, seed=i) for i in range(10)}
    for index in range(10):
        assert (root / f"f{index}").read_bytes() == results[index]
