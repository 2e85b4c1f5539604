"""Confinement is absolute: no spelling of a path, through no command, reaches outside the
user's root (issue "Hardening").

Layout of every test: ``tmp_path/root`` is the user's root and ``tmp_path/outside`` a sibling
holding a secret, files that must not change and a name that must never be listed. Inside
the root are symlinks pointing out (relative, absolute, to the root's parent, dangling) and
symlinks pointing in. Each spelling of an outside path is tried with every command that
takes a path (the list comes from ``server.commands_mapping``, so a new command is tried too),
then the outside tree is compared byte for byte with what it was.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio
from conftest import LOGIN, PASSWORD, Running
from wire import (
    READ_TIMEOUT,
    Wire,
    data_connect,
    start_server,  # noqa: F401 (the fixture: wraps conftest's)
)

SECRET = b"S3CRET-a7f19c-must-never-leave-the-outside-dir"
#: The secret file's size: no listing may show it (it would be the outside file's stat).
SECRET_SIZE = 7919
HIDDEN_NAME = "hidden-4e0b2d-must-never-be-listed.dat"
KEEP = b"keep me exactly as I am\n"
INSIDE = b"a file inside the root\n"
DECOY = b"the decoy /outside/secret.txt, inside the root\n"
DATA = bytes(range(256)) * 3
UPLOAD = b"PWNED-upload-b5c3e1"
#: A fixed past time (2001-09-09) for everything outside, so any touch shows in the
#: snapshot, and a listing that shows it has shown something of the outside.
OLD_NS = 1_000_000_000 * 1_000_000_000

#: Verbs that take no path. Everything else in ``commands_mapping`` is attacked with a path,
#: so a command added later is covered (or fails here until it is classified).
NON_PATH_VERBS = {
    "abor",
    "acct",
    "allo",
    "auth",
    "ccc",
    "eprt",
    "epsv",
    "feat",
    "help",
    "mode",
    "noop",
    "opts",
    "pass",
    "pasv",
    "pbsz",
    "port",
    "prot",
    "pwd",
    "xpwd",
    "quit",
    "rang",
    "rein",
    "rest",
    "stru",
    "syst",
    "type",
    "user",
}
#: Path verbs whose argument is not just a path, driven by their own code below.
SPECIAL_VERBS = {"rnfr", "rnto", "mfmt", "site", "cdup", "xcup"}
#: Generic path verbs answered on the control connection; any other generic verb (the data
#: transfers, and any unknown new verb) is sent after PASV with its data connection served.
CONTROL_PATH_VERBS = {
    "cwd",
    "xcwd",
    "dele",
    "hash",
    "mdtm",
    "mkd",
    "xmkd",
    "mlst",
    "rmd",
    "xrmd",
    "size",
    "stat",
}
UPLOAD_VERBS = {"stor", "appe", "stou"}
#: The path commands the issue names; each must be attacked.
REQUIRED_PATH_VERBS = {
    "retr",
    "size",
    "mdtm",
    "mlst",
    "mlsd",
    "list",
    "nlst",
    "stat",
    "cwd",
    "xcwd",
    "cdup",
    "stor",
    "appe",
    "stou",
    "dele",
    "mkd",
    "xmkd",
    "rmd",
    "rnfr",
    "rnto",
    "site",
    "hash",
    "mfmt",
}
#: Names relative to the outside directory each spelling is built for: a secret file, a
#: file that must not change, the directory itself, an empty directory, a new name.
TARGETS = ("secret.txt", "keep.txt", "", "emptydir", "created")


# layout ------------------------------------------------------------------------------------
def make_layout(root: Path) -> Path:
    """Build the outside tree and the links inside the root; return the outside dir."""
    outside = root.parent / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes((SECRET * 200)[:SECRET_SIZE])
    (outside / "keep.txt").write_bytes(KEEP)
    (outside / HIDDEN_NAME).write_bytes(SECRET)
    (outside / "emptydir").mkdir()
    (outside / "sub").mkdir()
    (outside / "sub" / "deep.txt").write_bytes(SECRET)
    for path in (outside / "secret.txt", outside / "keep.txt", outside / HIDDEN_NAME):
        path.chmod(0o640)
    (outside / "sub" / "deep.txt").chmod(0o640)
    for path in (outside / "emptydir", outside / "sub", outside):
        path.chmod(0o750)
    for dirpath, dirnames, filenames in os.walk(outside, topdown=False):
        for name in [*dirnames, *filenames]:
            os.utime(Path(dirpath) / name, ns=(OLD_NS, OLD_NS))
    os.utime(outside, ns=(OLD_NS, OLD_NS))

    # The decoy: what `..` chains that stop at the root name instead of the real outside.
    (root / "outside").mkdir()
    (root / "outside" / "secret.txt").write_bytes(DECOY)
    (root / "outside" / "keep.txt").write_bytes(DECOY)
    (root / "outside" / "emptydir").mkdir()
    (root / "a").mkdir()
    (root / "a" / "data.bin").write_bytes(DATA)
    (root / "inside.txt").write_bytes(INSIDE)
    make_links(root, outside)
    return outside


def make_links(root: Path, outside: Path) -> None:
    """(Re)create the symlinks inside the root (a command may have renamed or removed one)."""
    links = {
        "link_rel": "../outside",
        "link_abs": str(outside),
        "link_up": "..",
        "link_secret": "../outside/secret.txt",
        "link_dangling": "../outside/created-through-a-dangling-link",
        "link_in": "a",
        "link_in_file": "a/data.bin",
    }
    for name, target in links.items():
        path = root / name
        if not path.is_symlink():
            if path.exists():
                path.unlink() if path.is_file() else path.rmdir()
            os.symlink(target, path)


def restore_inside(path: Path) -> None:
    """Make ``path`` the regular file holding INSIDE again if a command changed it (reading
    it costs far less than rewriting it after each of the thousands of commands)."""
    try:
        intact = stat.S_ISREG(path.lstat().st_mode) and path.read_bytes() == INSIDE
    except OSError:
        intact = False
    if not intact:
        path.write_bytes(INSIDE)


Entry = tuple[int, int, int, int, bytes]


def snapshot(tmp: Path, root: Path) -> dict[str, Entry]:
    """Every entry under ``tmp`` but the root: (type, mode, size, mtime, content or link)."""
    entries: dict[str, Entry] = {}

    def record(path: Path) -> None:
        st = path.lstat()
        if stat.S_ISREG(st.st_mode):
            content = path.read_bytes()
        elif stat.S_ISLNK(st.st_mode):
            content = os.readlink(path).encode()
        else:
            content = b""
        kind, mode = stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode)
        entries[str(path.relative_to(tmp.parent))] = (
            kind,
            mode,
            st.st_size,
            st.st_mtime_ns,
            content,
        )

    record(tmp)
    for dirpath, dirnames, filenames in os.walk(tmp):
        here = Path(dirpath)
        dirnames[:] = [name for name in dirnames if here / name != root]
        for name in [*dirnames, *filenames]:
            record(here / name)
    for name in os.listdir(tmp.parent):  # nothing new next to this test's directory either
        entries.setdefault(name, (0, 0, 0, 0, b""))
    return entries


def secrets_of_the_host() -> list[bytes]:
    """Bytes that would only come back if a real system file were served."""
    try:
        first = Path("/etc/passwd").read_bytes().split(b"\n", 1)[0]
    except OSError:
        return []
    return [first] if len(first) >= 12 else []


# a client that records everything it receives ----------------------------------------------
@dataclass
class Client:
    """A logged-in raw session; every reply and every data byte goes into ``received``."""

    wire: Wire
    received: list[bytes] = field(default_factory=list)

    @classmethod
    async def open(cls, running: Running) -> Client:
        wire = await Wire.connect(running.host, running.port)
        client = cls(wire)
        assert (await client.reply()).startswith(b"220")
        assert (await client.send(f"USER {LOGIN}".encode())).startswith(b"331")
        assert (await client.send(f"PASS {PASSWORD}".encode())).startswith(b"230")
        assert (await client.send(b"TYPE I")).startswith(b"200")
        return client

    async def reply(self) -> bytes:
        reply = await self.wire.reply()
        self.received.append(reply)
        return reply

    async def send(self, line: bytes) -> bytes:
        await self.wire.send(line + b"\r\n")
        return await self.reply()

    async def transfer(self, line: bytes, upload: bytes = b"") -> tuple[bytes, bytes]:
        """PASV, then ``line``; serve the data connection if a ``1xx`` opens one.

        Returns the final reply and what came over the data connection.
        """
        pasv = await self.send(b"PASV")
        match = re.search(rb"\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)", pasv)
        assert match is not None, pasv
        numbers = [int(group) for group in match.groups()]
        address = ".".join(map(str, numbers[:4])), numbers[4] * 256 + numbers[5]
        first = await self.send(line)
        if not first.startswith(b"1"):
            return first, b""
        stream = await data_connect(address)
        chunks: list[bytes] = []
        try:
            with trio.fail_after(READ_TIMEOUT):
                try:
                    if upload:
                        await stream.send_all(upload)
                    await stream.send_eof()
                    while chunk := await stream.receive_some(65536):
                        chunks.append(chunk)
                except trio.BrokenResourceError:
                    pass  # the server dropped it: whatever came is still recorded
        finally:
            await stream.aclose()
        data = b"".join(chunks)
        self.received.append(data)
        return await self.reply(), data

    async def pwd(self) -> str:
        reply = await self.send(b"PWD")
        match = re.match(rb'257 "((?:[^"]|"")*)"', reply)
        assert match is not None, reply
        return match.group(1).replace(b'""', b'"').decode("utf-8", "surrogateescape")

    async def aclose(self) -> None:
        with trio.move_on_after(2):
            await self.wire.send(b"QUIT\r\n")
        await self.wire.aclose()


# spellings ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spelling:
    """A way to write "``outside/<target>``"; ``{}`` stands for the target name.

    kind:
        ``escape``: names something outside (or nothing): every command must be refused.
        ``nul``: holds a NUL: every command must be refused with ``501``.
        ``clamped``: ``..`` stops at the root, so it names the decoy ``/outside`` inside it:
        RETR serves the decoy, and commands may succeed on the decoy.
        ``literal``: one ordinary (odd) name inside the root: MKD creates exactly that name.
        ``confined``: something else inside the root: commands may succeed there.
    """

    template: bytes
    kind: str

    def spell(self, target: str, outside: Path) -> bytes:
        text = self.template.replace(b"{abs}", str(outside).encode())
        text = text.replace(b"{abs//}", str(outside).replace("/", "//").encode())
        return text.replace(b"{}", target.encode())


SPELLINGS = [
    # `..` chains stop at the root: they land on the decoy `/outside` inside it
    Spelling(b"../outside/{}", "clamped"),
    Spelling(b"../../../outside/{}", "clamped"),
    Spelling(b"/../outside/{}", "clamped"),
    Spelling(b"/../../../outside/{}", "clamped"),
    Spelling(b"a/../../outside/{}", "clamped"),
    Spelling(b"a/./../../../outside/{}", "clamped"),
    Spelling(b"~/../outside/{}", "clamped"),
    Spelling(b"//..//outside//{}", "clamped"),
    Spelling(b"..//outside//{}", "clamped"),
    Spelling(b"-la ../outside/{}", "confined"),  # LIST options are stripped before the path
    Spelling(b" ../outside/{}", "confined"),
    # the real absolute path is a virtual path inside the root, where it does not exist
    Spelling(b"{abs}/{}", "escape"),
    Spelling(b"/../../..{abs}/{}", "escape"),
    Spelling(b"{abs//}//{}", "escape"),
    Spelling(b"//etc//passwd", "escape"),
    # symlinks pointing out of the root (relative, absolute, to the parent, dangling)
    Spelling(b"link_rel/{}", "escape"),
    Spelling(b"link_abs/{}", "escape"),
    Spelling(b"link_up/outside/{}", "escape"),
    Spelling(b"a/../link_rel/{}", "escape"),
    Spelling(b"/link_rel/sub/../{}", "escape"),
    Spelling(b"link_secret", "escape"),
    Spelling(b"link_dangling", "escape"),
    # overlong UTF-8 for '/' and '.', as raw bytes
    Spelling(b"..\xc0\xafoutside\xc0\xaf{}", "escape"),
    Spelling(b"\xc0\xae\xc0\xae/outside/{}", "escape"),
    Spelling(b"\xc0\xae\xc0\xae\xc0\xafoutside\xc0\xaf{}", "escape"),
    Spelling(b"..\xe0\x80\xafoutside\xe0\x80\xaf{}", "escape"),
    Spelling(b"\xc0\xae\xc0\xae\xc0\xaf\xc0\xae\xc0\xae\xc0\xafetc\xc0\xafpasswd", "escape"),
    # NUL, anywhere
    Spelling(b"../outside/{}\x00", "nul"),
    Spelling(b"{}\x00/../../outside", "nul"),
    Spelling(b"\x00../outside/{}", "nul"),
    Spelling(b"link_rel\x00/{}", "nul"),
    # taken literally: one odd name inside the root
    Spelling(b"..\\outside\\{}", "literal"),
    Spelling(b"..\\..\\..\\outside\\{}", "literal"),
    Spelling(b"%2e%2e%2foutside%2f{}", "literal"),
    Spelling(b"..%2foutside%2f{}", "literal"),
    Spelling(b"%252e%252e%252foutside%252f{}", "literal"),
    Spelling(b"..%c0%afoutside%c0%af{}", "literal"),
    Spelling("..\u2215outside\u2215{}".encode(), "literal"),
    Spelling("\uff0e\uff0e\uff0foutside\uff0f{}".encode(), "literal"),
    Spelling(b"%2e%2e/outside/{}", "confined"),
]


def spelling_id(spelling: Spelling) -> str:
    return spelling.template.decode("ascii", "backslashreplace").replace("{}", "T")


@dataclass
class Attempt:
    what: bytes
    reply: bytes
    must_refuse: bool


def code_of(reply: bytes) -> bytes:
    return reply[:3]


def refused(reply: bytes) -> bool:
    return reply[:1] in (b"4", b"5")


async def attack(
    client: Client,
    running: Running,
    spelling: Spelling,
    outside: Path,
) -> list[Attempt]:
    """Try every path command with every target of ``spelling``; return what each got."""
    commands = running.server.commands_mapping
    generic = sorted(set(commands) - NON_PATH_VERBS - SPECIAL_VERBS)
    site_names = sorted(running.server.site_commands_mapping)
    arguments = list(dict.fromkeys(spelling.spell(t, outside) for t in TARGETS))
    attempts: list[Attempt] = []
    refuse = spelling.kind in ("escape", "nul")

    async def after_each() -> None:
        """Restore the links, and if the working directory moved, list it and go back."""
        make_links(running.root, outside)
        restore_inside(running.root / "inside.txt")
        where = await client.pwd()
        if where != "/":
            attempts.append(Attempt(b"PWD after the last command: " + where.encode(), b"", refuse))
            await client.transfer(b"NLST")
            await client.transfer(b"LIST -a")
            assert (await client.send(b"CWD /")).startswith(b"250")

    async def run(line: bytes, action: Callable[[bytes], Awaitable[bytes]], refuse: bool) -> None:
        attempts.append(Attempt(line, await action(line), refuse))
        await after_each()

    async def control(line: bytes) -> bytes:
        return await client.send(line)

    async def data(line: bytes) -> bytes:
        verb = line.split(b" ", 1)[0].lower().decode()
        reply, _ = await client.transfer(line, UPLOAD if verb in UPLOAD_VERBS else b"")
        return reply

    for argument in arguments:
        for verb in generic:
            line = verb.upper().encode() + b" " + argument
            await run(line, control if verb in CONTROL_PATH_VERBS else data, refuse)
        # MFMT <time> <path>
        await run(b"MFMT 20200101000000 " + argument, control, refuse)
        # SITE <sub> <path> and SITE <sub> <mode> <path>, for every registered subcommand
        for name in site_names:
            await run(f"SITE {name} ".encode() + argument, control, refuse)
            await run(f"SITE {name} 0777 ".encode() + argument, control, refuse)
        # RNFR from outside (then RNTO inside), and RNTO to outside (from inside)
        await run(b"RNFR " + argument, control, refuse)
        await run(b"RNTO stolen.txt", control, refuse)
        reply = await client.send(b"RNFR inside.txt")
        assert reply.startswith(b"350"), reply
        await run(b"RNTO " + argument, control, refuse)
        # Whatever is still pending (a refused RNTO may leave the RNFR pending: see
        # test_a_refused_rename_leaves_nothing_pending) ends here, renaming nothing.
        await client.send(b"RNTO inside.txt")
    return attempts


@pytest.mark.parametrize("spelling", SPELLINGS, ids=spelling_id)
async def test_no_spelling_of_an_outside_path_reaches_outside(
    start_server: Callable[..., Awaitable[Running]], root: Path, spelling: Spelling
) -> None:
    """No path spelling, through any command, reads, lists, changes or creates anything outside."""
    outside = make_layout(root)
    before = snapshot(root.parent, root)
    running = await start_server()
    client = await Client.open(running)
    try:
        if spelling.kind == "literal":
            # Taken literally: MKD makes exactly that one name, inside the root.
            argument = spelling.spell("mkd-probe", outside)
            reply = await client.send(b"MKD " + argument)
            assert reply.startswith(b"257"), reply
            assert (root / argument.decode()).is_dir()
        elif spelling.kind == "clamped":
            # `..` stopped at the root: the decoy inside it is what is served.
            reply, data = await client.transfer(b"RETR " + spelling.spell("secret.txt", outside))
            assert reply.startswith(b"226"), reply
            assert data == DECOY
        elif spelling.kind == "escape":
            # Not found (550), or an argument refused as such (501): never the real file.
            secret = spelling.spell("secret.txt", outside)
            reply, data = await client.transfer(b"RETR " + secret)
            assert code_of(reply) in (b"550", b"501"), reply
            assert data == b""
            reply = await client.send(b"SIZE " + secret)
            assert code_of(reply) in (b"550", b"501"), reply
        attempts = await attack(client, running, spelling, outside)
        assert (await client.send(b"NOOP")).startswith(b"200")  # the session is still fine
    finally:
        await client.aclose()

    after = snapshot(root.parent, root)
    changed = {
        name: (before.get(name), after.get(name))
        for name in before.keys() | after.keys()
        if before.get(name) != after.get(name)
    }
    assert not changed, f"the outside tree changed: {changed}"
    everything = b"".join(client.received)
    for secret in (SECRET, HIDDEN_NAME.encode(), *secrets_of_the_host()):
        assert secret not in everything, f"{secret!r} was served"
    assert not (root.parent / "outside" / "created").exists()
    if spelling.kind in ("escape", "nul"):
        assert not (root / "stolen.txt").exists()

    if spelling.kind == "nul":
        wrong = [
            (a.what, a.reply) for a in attempts if b"\0" in a.what and code_of(a.reply) != b"501"
        ]
        assert not wrong, f"lines with NUL not answered 501: {wrong}"
    elif spelling.kind == "escape":
        wrong = [(a.what, a.reply) for a in attempts if a.must_refuse and not refused(a.reply)]
        assert not wrong, f"escaping paths not refused: {wrong}"


async def test_every_command_is_attacked(start_server: Callable[..., Awaitable[Running]]) -> None:
    """Every registered verb takes no path or is attacked; every path verb of the issue is."""
    running = await start_server()
    verbs = set(running.server.commands_mapping)
    attacked = verbs - NON_PATH_VERBS
    assert attacked >= REQUIRED_PATH_VERBS, REQUIRED_PATH_VERBS - attacked
    # A NON_PATH verb that is gone from the server is a stale entry: keep the list honest.
    assert verbs >= NON_PATH_VERBS, NON_PATH_VERBS - verbs
    assert "CHMOD" in running.server.site_commands_mapping


async def test_climbing_stops_at_the_root(
    start_server: Callable[..., Awaitable[Running]], root: Path
) -> None:
    """``..`` chains and CDUP after CWD name the root itself, never a directory above it."""
    make_layout(root)
    before = snapshot(root.parent, root)
    running = await start_server()
    client = await Client.open(running)
    names = sorted(os.listdir(root))
    try:
        for chain in (b"../../..", b"/../..", b"a/../../..", b"..", b"//..//..//", b"a/../.."):
            reply, data = await client.transfer(b"NLST " + chain)
            assert reply.startswith(b"226"), (chain, reply)
            assert sorted(data.decode().split("\r\n")[:-1]) == names, chain
            reply, data = await client.transfer(b"MLSD " + chain)
            assert reply.startswith(b"226"), (chain, reply)
            listed = sorted(line.rsplit(b"; ", 1)[1].decode() for line in data.split(b"\r\n")[:-1])
            assert listed == sorted([".", *names]), chain  # no "..": the root has no parent
            reply = await client.send(b"STAT " + chain)
            assert reply.startswith(b"213-"), (chain, reply)
            lines = reply.split(b"\r\n")[1:-2]
            assert sorted(line.split(None, 8)[8].decode() for line in lines) == names, chain
            assert (await client.send(b"CWD " + chain)).startswith(b"250"), chain
            assert await client.pwd() == "/", chain
            assert (await client.send(b"XCWD a/" + chain)).startswith(b"250"), chain
            assert await client.pwd() == "/", chain
        for up in (b"CDUP", b"XCUP"):
            assert (await client.send(b"CWD a")).startswith(b"250")
            for _ in range(4):
                assert (await client.send(up)).startswith(b"250")
                assert await client.pwd() == "/"
            _, data = await client.transfer(b"NLST")
            assert sorted(data.decode().split("\r\n")[:-1]) == names
            reply, data = await client.transfer(b"RETR ../outside/secret.txt")
            assert reply.startswith(b"226"), reply
            assert data == DECOY  # the root's own /outside, not the real one
    finally:
        await client.aclose()
    assert snapshot(root.parent, root) == before
    assert SECRET not in b"".join(client.received)


@contextlib.asynccontextmanager
async def session_on_layout(
    start_server: Callable[..., Awaitable[Running]], root: Path
) -> AsyncIterator[Client]:
    """:func:`make_layout` in ``root``, a server on it, and a logged-in :class:`Client`,
    closed on the way out."""
    make_layout(root)
    client = await Client.open(await start_server())
    try:
        yield client
    finally:
        await client.aclose()


async def test_symlinks_that_stay_inside_the_root_work(
    start_server: Callable[..., Awaitable[Running]], root: Path
) -> None:
    """A symlink pointing inside the root works: RETR serves its target's bytes, CWD enters."""
    async with session_on_layout(start_server, root) as client:
        reply, data = await client.transfer(b"RETR link_in_file")
        assert reply.startswith(b"226"), reply
        assert data == DATA
        reply, data = await client.transfer(b"RETR link_in/data.bin")
        assert reply.startswith(b"226"), reply
        assert data == DATA
        assert await client.send(b"SIZE link_in_file") == f"213 {len(DATA)}\r\n".encode()
        reply, data = await client.transfer(b"NLST link_in")
        assert reply.startswith(b"226"), reply
        assert data == b"data.bin\r\n"
        assert (await client.send(b"CWD link_in")).startswith(b"250")
        assert await client.pwd() == "/link_in"
        reply, data = await client.transfer(b"RETR data.bin")
        assert reply.startswith(b"226"), reply
        assert data == DATA


async def test_a_refused_rename_leaves_nothing_pending(
    start_server: Callable[..., Awaitable[Running]], root: Path
) -> None:
    """A refused RNTO or RNFR ends the rename: a later RNTO renames nothing (503)."""
    async with session_on_layout(start_server, root) as client:
        assert (await client.send(b"RNFR inside.txt")).startswith(b"350")
        assert code_of(await client.send(b"RNTO link_rel/stolen.txt")) == b"550"
        assert code_of(await client.send(b"RNTO stolen.txt")) == b"503"
        assert (await client.send(b"RNFR inside.txt")).startswith(b"350")
        assert code_of(await client.send(b"RNFR link_rel/secret.txt")) == b"550"
        assert code_of(await client.send(b"RNTO stolen.txt")) == b"503"
    assert (root / "inside.txt").read_bytes() == INSIDE
    assert not (root / "stolen.txt").exists()
    assert not (root.parent / "outside" / "stolen.txt").exists()


async def test_listings_show_nothing_of_the_outside(
    start_server: Callable[..., Awaitable[Running]], root: Path
) -> None:
    """Listing a directory with links pointing out works and shows nothing of their targets."""
    async with session_on_layout(start_server, root) as client:
        reply, listing = await client.transfer(b"LIST")
        assert reply.startswith(b"226"), reply
        reply, facts = await client.transfer(b"MLSD")
        assert reply.startswith(b"226"), reply
        status = await client.send(b"STAT /")
        assert status.startswith(b"213-"), status
    for text in (listing, status):
        assert b"inside.txt" in text
        assert f" {SECRET_SIZE} ".encode() not in text, text
        assert b" 2001 " not in text, text  # the outside tree's date, in ls -l form
    assert b"inside.txt" in facts
    assert f"size={SECRET_SIZE};".encode() not in facts, facts
    assert b"modify=2001" not in facts, facts
    everything = listing + facts + status
    assert HIDDEN_NAME.encode() not in everything
    assert SECRET not in everything
