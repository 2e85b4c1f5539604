"""SITE (HELP, CHMOD, custom subcommands) and HASH (draft-bryan-ftpext-hash-02)."""

from __future__ import annotations

import ftplib
import functools
import hashlib
import os
import random
import stat
import zlib
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

import pytest
import trio
from conftest import in_thread
from memory_client import MemoryClient, start_memory_session

from trio_ftp import (
    AbstractPathIO,
    Connection,
    MemoryPathIO,
    PathIO,
    Permission,
    Server,
    User,
    site_command,
)
from trio_ftp.handlers.hash import HASH_THREADS
from trio_ftp.pathio import GuardedPathIO

MiB = 1024 * 1024
FEAT_DEFAULT = "HASH SHA-256*;SHA-1;MD5;CRC32"


@functools.cache
def payload(size: int) -> bytes:
    """Reproducible random bytes."""
    return random.Random(size).randbytes(size)


BIG = payload(3 * MiB + 12345)  # spans several 1 MiB hashing blocks, ends mid-block


def seeded(files: Mapping[str, bytes | None], base: type[MemoryPathIO] = MemoryPathIO) -> Any:
    """A MemoryPathIO factory whose sessions all share a tree holding ``files``."""
    tree = base.from_files(files).state

    class Seeded(base):  # type: ignore[valid-type,misc]
        def __init__(self, timeout: Any = None, connection: Any = None, state: Any = None):
            super().__init__(timeout=timeout, connection=connection, state=state or tree)

    return Seeded


FILES: dict[str, bytes | None] = {
    "/f.txt": b"hello world",
    "/big.bin": BIG,
    "/empty": b"",
    "/d/": None,
}


def make_server(
    files: Mapping[str, bytes | None] = FILES,
    server_class: type[Server] = Server,
    users: list[User] | None = None,
    path_io: type[MemoryPathIO] = MemoryPathIO,
) -> Server:
    """A memory-backed server: ``user``/``pw`` read-write, ``anonymous`` read-only."""
    if users is None:
        users = [User("user", "pw"), User(permissions=[Permission("/", writable=False)])]
    return server_class(users, path_io_factory=seeded(files, path_io))


async def connect(nursery: Any, server: Server, login: str | None = "user") -> MemoryClient:
    """A session of ``server``, greeted and (unless ``login`` is None) logged in."""
    client = await start_memory_session(nursery, server)
    assert (await client.reply())[0] == "220"
    if login is not None:
        assert await client.code(f"USER {login}") == "331"
        assert await client.code("PASS pw") == "230"
    return client


def tree_of(server: Server) -> MemoryPathIO:
    """The memory backend of the server's (first) running session."""
    path_io = next(iter(server.connections.values())).path_io.inner
    assert isinstance(path_io, MemoryPathIO)
    return path_io


async def mode_of(server: Server, path: str) -> int:
    return stat.S_IMODE((await tree_of(server).stat(PurePosixPath(path))).st_mode)


# SITE ---------------------------------------------------------------------------------------------
async def test_site_help_lists_and_explains_subcommands(nursery: Any) -> None:
    """SITE HELP is a 214 list of every subcommand; SITE HELP CHMOD one line; HELP SITE works."""
    client = await connect(nursery, make_server())
    code, lines = await client.command("SITE HELP")
    assert code == "214"
    assert len(lines) == 4
    assert lines[1].strip().startswith("SITE CHMOD <mode> <path>")
    assert lines[2].strip().startswith("SITE HELP")
    code, lines = await client.command("SITE HELP chmod")
    assert code == "214"
    assert len(lines) == 1
    assert lines[0].startswith("SITE CHMOD <mode> <path>:")
    assert await client.code("SITE HELP NOPE") == "504"
    code, lines = await client.command("HELP SITE")
    assert code == "214"
    assert lines[0].startswith("SITE <command>")


async def test_site_syntax_and_login(nursery: Any) -> None:
    """SITE alone 501, unknown subcommand 504; before login SITE HELP works, CHMOD is 530."""
    server = make_server()
    client = await connect(nursery, server, login=None)
    assert await client.code("SITE HELP") == "214"
    assert await client.code("SITE CHMOD 600 f.txt") == "530"
    assert await client.code("USER user") == "331"
    assert await client.code("PASS pw") == "230"
    assert await client.code("SITE") == "501"
    code, lines = await client.command("SITE NOPE x")
    assert code == "504"
    assert "SITE HELP" in lines[0]
    assert await mode_of(server, "/f.txt") == 0o644


async def test_site_chmod_sets_mode(nursery: Any) -> None:
    """SITE CHMOD sets a file's and a directory's mode, relative to the current directory."""
    server = make_server()
    client = await connect(nursery, server)
    assert await client.command("SITE CHMOD 0600 f.txt") == ("200", ["mode set to 0600"])
    assert await mode_of(server, "/f.txt") == 0o600
    assert await client.code("site chmod 711 /d") == "200"
    assert await mode_of(server, "/d") == 0o711
    assert await client.code("CWD /d") == "250"
    assert await client.code("SITE CHMOD 4 ../f.txt") == "200"
    assert await mode_of(server, "/f.txt") == 0o004


@pytest.mark.parametrize("mode", ["4755", "2755", "1777", "7000"])
async def test_site_chmod_refuses_special_bits(nursery: Any, mode: str) -> None:
    """Setuid, setgid or sticky in SITE CHMOD: 550 with a reason, the mode unchanged."""
    server = make_server()
    client = await connect(nursery, server)
    before = await mode_of(server, "/f.txt")
    code, lines = await client.command(f"SITE CHMOD {mode} f.txt")
    assert (code, "setuid" in lines[0]) == ("550", True)
    assert await mode_of(server, "/f.txt") == before


async def test_site_chmod_special_bits_when_permitted(nursery: Any) -> None:
    """Server(permit_special_mode_bits=True) lets SITE CHMOD set 0o7000 bits."""
    server = Server(
        [User("user", "pw")], path_io_factory=seeded(FILES), permit_special_mode_bits=True
    )
    client = await connect(nursery, server)
    assert await client.command("SITE CHMOD 4755 f.txt") == ("200", ["mode set to 4755"])
    assert await mode_of(server, "/f.txt") == 0o4755


@pytest.mark.parametrize(
    "arguments", ["8 f.txt", "0x1 f.txt", "12345 f.txt", "rwx f.txt", "-1 f.txt", "644", ""]
)
async def test_site_chmod_bad_mode_is_501(nursery: Any, arguments: str) -> None:
    """A mode that is not 1 to 4 octal digits, or no path, is a 501 and changes nothing."""
    server = make_server()
    client = await connect(nursery, server)
    assert await client.code(f"SITE CHMOD {arguments}") == "501"
    assert await mode_of(server, "/f.txt") == 0o644


async def test_site_chmod_needs_write_permission(nursery: Any) -> None:
    """A read-only user gets 550 and the mode is unchanged."""
    server = make_server()
    client = await connect(nursery, server, login="anonymous")
    assert await client.command("SITE CHMOD 600 f.txt") == ("550", ["permission denied"])
    assert await mode_of(server, "/f.txt") == 0o644


async def test_site_chmod_missing_path_is_550(nursery: Any) -> None:
    """SITE CHMOD of a path that does not exist is 550."""
    client = await connect(nursery, make_server())
    assert await client.command("SITE CHMOD 600 nope") == ("550", ["path does not exist"])


async def test_site_chmod_cannot_leave_the_root(nursery: Any) -> None:
    """``..`` stops at the user's root: a file outside it is never reached."""
    files = {"/secret": b"s", "/jail/inside": b"i"}
    users = [User("user", "pw", base_path=PurePosixPath("/jail"))]
    server = make_server(files, users=users)
    client = await connect(nursery, server)
    for path in ("../secret", "/../secret", "../../secret"):
        assert await client.code(f"SITE CHMOD 600 {path}") == "550", path
    assert await mode_of(server, "/secret") == 0o644
    assert await client.code("SITE CHMOD 600 ../inside") == "200"
    assert await mode_of(server, "/jail/inside") == 0o600


async def test_site_chmod_unsupported_backend_is_502(nursery: Any) -> None:
    """A backend without chmod answers 502 "not supported by this backend"."""

    class NoChmod(MemoryPathIO):
        chmod = AbstractPathIO.chmod  # type: ignore[assignment]

    client = await connect(nursery, make_server(path_io=NoChmod))
    code, lines = await client.command("SITE CHMOD 600 f.txt")
    assert code == "502"
    assert "not supported" in lines[0]


async def test_site_subcommand_on_a_subclass(nursery: Any) -> None:
    """@site_command on a Server subclass adds a subcommand, its help, and its login rule."""

    class MyServer(Server):
        @site_command("ECHO", help="SITE ECHO <text>: say it back", login_required=False)
        async def site_echo(self, connection: Any, rest: str) -> bool:
            connection.response("200", rest.upper())
            return True

        @site_command("CHMOD", help="SITE CHMOD: disabled here")
        async def site_chmod(self, connection: Any, rest: str) -> bool:
            connection.response("550", "chmod is disabled")
            return True

    server = make_server(server_class=MyServer)
    client = await connect(nursery, server, login=None)
    assert await client.command("SITE echo hi there") == ("200", ["HI THERE"])
    assert await client.code("USER user") == "331"
    assert await client.code("PASS pw") == "230"
    assert await client.command("SITE CHMOD 600 f.txt") == ("550", ["chmod is disabled"])
    assert await mode_of(server, "/f.txt") == 0o644
    code, lines = await client.command("SITE HELP")
    assert code == "214"
    assert {line.strip() for line in lines[1:-1]} >= {
        "SITE ECHO <text>: say it back",
        "SITE CHMOD: disabled here",
    }


async def test_site_subcommand_registered_at_runtime(nursery: Any) -> None:
    """site_commands_mapping entries add (login required) or remove subcommands at run time."""
    server = make_server()
    calls: list[str] = []

    async def ping(connection: Any, rest: str) -> None:
        """SITE PING [<text>]: answer pong."""
        calls.append(rest)
        connection.response("200", "pong")

    server.site_commands_mapping["PING"] = ping
    del server.site_commands_mapping["CHMOD"]
    client = await connect(nursery, server, login=None)
    assert await client.code("SITE PING") == "530"
    assert await client.code("USER user") == "331"
    assert await client.code("PASS pw") == "230"
    assert await client.command("SITE ping a b") == ("200", ["pong"])
    assert calls == ["a b"]
    assert await client.command("SITE HELP PING") == ("214", ["SITE PING [<text>]: answer pong."])
    assert await client.code("SITE CHMOD 600 f.txt") == "504"
    _, lines = await client.command("SITE HELP")
    assert not any("CHMOD" in line for line in lines)


# HASH ---------------------------------------------------------------------------------------------
async def test_hash_default_sha256_of_a_big_file(nursery: Any) -> None:
    """HASH answers 213 SHA-256 0-<last byte> <hashlib's digest> <path> for a multi-MB file."""
    client = await connect(nursery, make_server())
    code, lines = await client.command("HASH big.bin")
    assert code == "213"
    expected = hashlib.sha256(BIG).hexdigest()
    assert lines == [f"SHA-256 0-{len(BIG) - 1} {expected} big.bin"]


@pytest.mark.parametrize(
    ("algorithm", "digest"),
    [
        ("SHA-256", lambda data: hashlib.sha256(data).hexdigest()),
        ("SHA-1", lambda data: hashlib.sha1(data).hexdigest()),
        ("MD5", lambda data: hashlib.md5(data).hexdigest()),
        ("CRC32", lambda data: f"{zlib.crc32(data):08x}"),
    ],
)
async def test_hash_each_algorithm(nursery: Any, algorithm: str, digest: Any) -> None:
    """OPTS HASH selects each algorithm, and HASH then gives that digest of the whole file."""
    client = await connect(nursery, make_server())
    assert await client.command(f"OPTS HASH {algorithm.lower()}") == ("200", [algorithm])
    for name, data in (("f.txt", b"hello world"), ("big.bin", BIG)):
        code, lines = await client.command(f"HASH {name}")
        assert code == "213"
        assert lines == [f"{algorithm} 0-{len(data) - 1} {digest(data)} {name}"]


async def test_opts_hash_query_select_and_refuse(nursery: Any) -> None:
    """OPTS HASH answers the selection; a bad name is 501 and keeps it; it is per session."""
    server = make_server()
    client = await connect(nursery, server)
    assert await client.command("OPTS HASH") == ("200", ["SHA-256"])
    assert await client.command("OPTS HASH SHA-1") == ("200", ["SHA-1"])
    assert await client.command("OPTS HASH") == ("200", ["SHA-1"])
    assert await client.code("OPTS HASH SHA-512") == "501"
    assert await client.command("OPTS HASH") == ("200", ["SHA-1"])
    code, lines = await client.command("HASH f.txt")
    assert code == "213"
    assert lines[0].startswith("SHA-1 ")
    other = await connect(nursery, server)
    assert await other.command("OPTS HASH") == ("200", ["SHA-256"])


async def test_feat_advertises_hash_with_the_selection_starred(nursery: Any) -> None:
    """FEAT lists HASH with * on SHA-256, then on the algorithm OPTS HASH selected."""
    client = await connect(nursery, make_server())
    code, lines = await client.command("FEAT")
    assert code == "211"
    features = [line.strip() for line in lines[1:-1]]
    assert FEAT_DEFAULT in features
    assert await client.code("OPTS HASH CRC32") == "200"
    _, lines = await client.command("FEAT")
    features = [line.strip() for line in lines[1:-1]]
    assert "HASH SHA-256;SHA-1;MD5;CRC32*" in features
    assert FEAT_DEFAULT not in features


async def test_hash_honours_rest_once(nursery: Any) -> None:
    """REST n makes HASH hash the tail from n (reported n-<last>); the next HASH starts at 0."""
    client = await connect(nursery, make_server())
    offset = MiB + 7
    assert await client.code("TYPE I") == "200"  # REST is refused in TYPE A
    assert await client.code(f"REST {offset}") == "350"
    code, lines = await client.command("HASH big.bin")
    assert code == "213"
    tail = hashlib.sha256(BIG[offset:]).hexdigest()
    assert lines == [f"SHA-256 {offset}-{len(BIG) - 1} {tail} big.bin"]
    _, lines = await client.command("HASH big.bin")
    assert lines[0].startswith(f"SHA-256 0-{len(BIG) - 1} ")


async def test_hash_rest_at_the_end_and_past_it(nursery: Any) -> None:
    """REST at the size hashes nothing; past the end is 554 and the offset is consumed."""
    client = await connect(nursery, make_server())
    size = len(b"hello world")
    assert await client.code("TYPE I") == "200"  # REST is refused in TYPE A
    assert await client.code(f"REST {size}") == "350"
    empty = hashlib.sha256(b"").hexdigest()
    assert await client.command("HASH f.txt") == ("213", [f"SHA-256 {size}-{size} {empty} f.txt"])
    assert await client.code(f"REST {size + 1}") == "350"
    assert await client.code("HASH f.txt") == "554"
    assert (await client.command("HASH f.txt"))[1][0].startswith(f"SHA-256 0-{size - 1} ")


async def test_hash_errors(nursery: Any) -> None:
    """HASH: no argument 501, missing file 550, directory 550; an empty file hashes 0-0."""
    client = await connect(nursery, make_server())
    assert await client.code("HASH") == "501"
    assert await client.command("HASH nope") == ("550", ["path does not exist"])
    assert await client.command("HASH d") == ("550", ["path is not a file"])
    assert await client.command("HASH /") == ("550", ["path is not a file"])
    empty = hashlib.sha256(b"").hexdigest()
    assert await client.command("HASH /empty") == ("213", [f"SHA-256 0-0 {empty} /empty"])


async def test_hash_needs_login_and_read_permission(nursery: Any) -> None:
    """HASH before login is 530; without read permission on the path it is 550."""
    users = [User("user", "pw", permissions=[Permission("/d", readable=False)])]
    client = await connect(
        nursery, make_server({"/d/x": b"x", "/y": b"y"}, users=users), login=None
    )
    assert await client.code("HASH y") == "530"
    assert await client.code("USER user") == "331"
    assert await client.code("PASS pw") == "230"
    assert await client.command("HASH d/x") == ("550", ["permission denied"])
    assert await client.code("HASH y") == "213"


async def test_hash_runs_in_worker_threads(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Every 1 MiB block is hashed in a worker thread under the server's hash_threads
    limiter (never trio's default one), for a PathIO file and for a memory one."""
    hashed: list[object] = []
    run_sync = trio.to_thread.run_sync

    async def recording(fn: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(fn, "__name__", "") == "update":
            hashed.append(kwargs.get("limiter"))
        return await run_sync(fn, *args, **kwargs)

    monkeypatch.setattr(trio.to_thread, "run_sync", recording)
    server = make_server()
    (tmp_path / "big.bin").write_bytes(BIG)
    local = Connection(path_io=GuardedPathIO(PathIO()))
    hasher = hashlib.sha256()
    assert await server.hash_file(local, tmp_path / "big.bin", 5, hasher) == len(BIG) - 5
    assert hasher.hexdigest() == hashlib.sha256(BIG[5:]).hexdigest()
    blocks = -(-(len(BIG) - 5) // MiB)
    assert hashed == [server.hash_threads] * blocks
    hashed.clear()
    memory = Connection(path_io=GuardedPathIO(MemoryPathIO.from_files({"/big.bin": BIG})))
    hasher = hashlib.sha256()
    assert await server.hash_file(memory, PurePosixPath("/big.bin"), 0, hasher) == len(BIG)
    assert hasher.hexdigest() == hashlib.sha256(BIG).hexdigest()
    assert hashed == [server.hash_threads] * -(-len(BIG) // MiB)
    assert server.hash_threads.total_tokens == HASH_THREADS


# the local file system, through ftplib ------------------------------------------------------------
async def test_site_chmod_and_hash_on_disk(start_server: Any, tmp_path: Any) -> None:
    """On PathIO: HASH matches hashlib (whole and tail), SITE CHMOD changes the disk's mode,
    a read-only user and a symlink out of the root get 550."""
    running = await start_server()
    root = running.root
    (root / "big.bin").write_bytes(BIG)
    (root / "f.txt").write_bytes(b"abc")
    os.chmod(root / "f.txt", 0o644)
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"secret")
    os.chmod(outside, 0o644)
    (root / "link").symlink_to(outside)

    def client() -> list[str]:
        replies = []
        with running.ftp() as ftp:
            ftp.voidcmd("TYPE I")  # REST is refused in TYPE A
            for line in ("HASH big.bin", "REST 1000", "OPTS HASH MD5", "HASH big.bin"):
                replies.append(ftp.sendcmd(line))
            replies.append(ftp.sendcmd("SITE CHMOD 0640 f.txt"))
            for line in ("SITE CHMOD 600 link", "HASH link"):
                try:
                    replies.append(ftp.sendcmd(line))
                except ftplib.error_perm as exc:
                    replies.append(str(exc))
        with running.ftp("anonymous", "x@y") as ftp:
            try:
                replies.append(ftp.sendcmd("SITE CHMOD 600 f.txt"))
            except ftplib.error_perm as exc:
                replies.append(str(exc))
        return replies

    replies = await in_thread(client)
    whole = hashlib.sha256(BIG).hexdigest()
    assert replies[0] == f"213 SHA-256 0-{len(BIG) - 1} {whole} big.bin"
    assert replies[1].startswith("350")
    tail = hashlib.md5(BIG[1000:]).hexdigest()
    assert replies[3] == f"213 MD5 1000-{len(BIG) - 1} {tail} big.bin"
    assert replies[4].startswith("200")
    assert stat.S_IMODE(os.stat(root / "f.txt").st_mode) == 0o640
    assert replies[5].startswith("550")
    assert replies[6].startswith("550")
    assert stat.S_IMODE(os.stat(outside).st_mode) == 0o644
    assert replies[7] == "550 permission denied"


async def test_site_chmod_special_bits_on_disk(start_server: Any, root: Any) -> None:
    """On PathIO: SITE CHMOD 4755 (setuid), 2755 and 1777 answer 550 and leave no 0o7000 bit
    on disk; with permit_special_mode_bits=True, 4755 reaches the disk."""
    refusing = await start_server()
    permitting = await start_server(permit_special_mode_bits=True)  # the same root
    for name in ("refused", "permitted"):
        (root / name).write_bytes(b"#!/bin/sh\n")
        os.chmod(root / name, 0o644)

    def client() -> list[str]:
        replies = []
        with refusing.ftp() as ftp:
            for mode in ("4755", "2755", "1777"):
                try:
                    replies.append(ftp.sendcmd(f"SITE CHMOD {mode} refused"))
                except ftplib.error_perm as exc:
                    replies.append(str(exc))
        with permitting.ftp() as ftp:
            replies.append(ftp.sendcmd("SITE CHMOD 4755 permitted"))
        return replies

    replies = await in_thread(client)
    assert [reply[:3] for reply in replies] == ["550", "550", "550", "200"], replies
    assert stat.S_IMODE(os.stat(root / "refused").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(root / "permitted").st_mode) == 0o4755


# HASH as an abortable transfer --------------------------------------------------------------------
GiB = 1024 * MiB


def sparse(path: Any, size: int) -> None:
    """A file of ``size`` zero bytes that takes no disk space."""
    with open(path, "wb") as file:
        file.truncate(size)


async def until_hashing(server: Server, sessions: int) -> None:
    """Wait (bounded) until ``sessions`` sessions are running a HASH worker."""
    with trio.fail_after(10):
        while sum("worker_active" in c for c in server.connections.values()) < sessions:  # noqa: ASYNC110
            await trio.sleep(0.005)


async def test_abor_during_hash_answers_426_then_226(nursery: Any, tmp_path: Any) -> None:
    """While a big file is hashed STAT reports it; ABOR answers 426 then 226 (no 213), and
    the session goes on."""
    sparse(tmp_path / "big.bin", 4 * GiB)
    server = Server([User("user", "pw", base_path=tmp_path)])
    client = await connect(nursery, server)
    assert await client.code("TYPE I") == "200"
    await client.send("HASH big.bin")
    await until_hashing(server, 1)
    with trio.fail_after(5):
        _, lines = await client.command("STAT")
        assert any("transfer in progress: HASH big.bin," in line for line in lines), lines
        assert await client.code("ABOR") == "426"
        assert (await client.reply())[0] == "226"
        assert await client.code("NOOP") == "200"
        assert await client.code("PWD") == "257"


async def test_concurrent_hashes_leave_threads_for_path_lookups(
    nursery: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three sessions hashing big files do not hold trio's default worker threads: with that
    pool cut to three threads, and every look-up and read in a thread (a root without cached
    look-ups, as on NFS), a fourth session's SIZE and CWD still answer within 1 s."""
    monkeypatch.setattr(PathIO, "event_loop_calls", False)
    trio.to_thread.current_default_thread_limiter().total_tokens = 3
    for n in range(3):
        sparse(tmp_path / f"big{n}.bin", 4 * GiB)
    (tmp_path / "d").mkdir()
    server = Server([User("user", "pw", base_path=tmp_path)])
    hashing = [await connect(nursery, server) for _ in range(3)]
    other = await connect(nursery, server)
    assert await other.code("TYPE I") == "200"  # SIZE is refused in TYPE A
    for n, client in enumerate(hashing):
        await client.send(f"HASH big{n}.bin")
    await until_hashing(server, 3)
    for _ in range(5):
        with trio.fail_after(1):
            assert await other.command("SIZE big0.bin") == ("213", [str(4 * GiB)])
            assert await other.code("CWD d") == "250"
            assert await other.code("CWD /") == "250"
    await until_hashing(server, 3)  # the hashes were still running all along
    for client in hashing:
        with trio.fail_after(5):
            assert await client.code("ABOR") == "426"
            assert (await client.reply())[0] == "226"


class HangingRead(MemoryPathIO):
    """A backend whose file reads never return."""

    async def read(self, file: Any, block_size: int) -> bytes:
        await trio.sleep_forever()
        raise AssertionError("unreachable")


async def test_hash_read_that_hangs_is_451_after_path_timeout(
    nursery: Any, autojump_clock: Any
) -> None:
    """A backend read that never returns: HASH answers 451 after path_timeout; meanwhile the
    session answers NOOP at once, and goes on afterwards."""
    server = Server(
        [User("user", "pw")], path_io_factory=seeded(FILES, HangingRead), path_timeout=0.2
    )
    client = await connect(nursery, server)
    await client.send("HASH big.bin")
    assert await client.code("NOOP") == "200"  # before HASH's reply
    code, lines = await client.reply()
    assert code == "451", lines
    assert await client.code("PWD") == "257"


async def test_hash_of_a_fifo_is_550_at_once(nursery: Any, tmp_path: Any) -> None:
    """HASH of a FIFO (no writer) answers 550 at once and opens nothing: no transfer starts,
    no thread waits for a writer; the session goes on."""
    os.mkfifo(tmp_path / "pipe")
    server = Server([User("user", "pw", base_path=tmp_path)])
    client = await connect(nursery, server)
    with trio.fail_after(5):
        code, _ = await client.command("HASH pipe")
        assert code == "550"
        assert await client.code("NOOP") == "200"
    assert stat.S_ISFIFO(os.lstat(tmp_path / "pipe").st_mode)


class FifoCalledAFile(MemoryPathIO):
    """A backend that calls ``/pipe`` a file but whose ``stat`` says FIFO, and whose open
    would hang (as opening a FIFO with no writer does)."""

    opened: list[PurePosixPath] = []

    async def is_file(self, path: PurePosixPath) -> bool:
        return path == PurePosixPath("/pipe") or await super().is_file(path)

    async def stat(self, path: PurePosixPath) -> os.stat_result:
        info = await super().stat(path)
        if path != PurePosixPath("/pipe"):
            return info
        return os.stat_result((stat.S_IFIFO | 0o644, *tuple(info)[1:]))

    async def _open(self, path: PurePosixPath, mode: str) -> Any:
        FifoCalledAFile.opened.append(path)
        await trio.sleep_forever()


async def test_hash_checks_stat_is_a_regular_file_before_opening(nursery: Any) -> None:
    """For a backend whose is_file and open do not refuse a FIFO, HASH still answers 550
    (from stat) without opening it."""
    FifoCalledAFile.opened.clear()
    server = make_server({**FILES, "/pipe": b""}, path_io=FifoCalledAFile)
    client = await connect(nursery, server)
    with trio.fail_after(5):
        assert await client.command("HASH pipe") == ("550", ["path is not a file"])
        assert await client.code("NOOP") == "200"
    assert FifoCalledAFile.opened == []
