"""Real-client compatibility: one scenario table, run against every real FTP client.

Clients: Python's ``ftplib`` (plain, and ``FTP_TLS`` with explicit TLS and ``PROT P``),
``curl``, ``wget``, ``lftp``, aioftp's ``Client`` and ``ftputil``. Each client drives the
server through the same scenarios (login, listings, transfers, resumed transfers, rename,
delete, mkdir/rmdir, recursive mirrors, active and passive mode, non-ASCII names, 0-byte,
1-byte and 24 MiB files), and every result is checked byte for byte *on disk*: the server's
root after an upload, the client's directory after a download.

``CLIENT_SCENARIOS`` is the table: which client runs which scenario. ``ABSENT`` says, for
every pair not in the table, why the client can't do it. A test checks the two cover every
pair exactly once. curl, lftp and wget are installed by CI (.ci/run): a missing binary makes
its tests fail, never skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import ftplib
import functools
import random
import shutil
import ssl
import subprocess
import urllib.parse
import warnings
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aioftp
import pytest
from conftest import (
    CLIENT_TIMEOUT,
    LOGIN,
    PASSWORD,
    Running,
    TLSCerts,
    in_thread,
    run_client,
)

with warnings.catch_warnings():
    # ftputil 5.2 warns at import time that its default path encoding will change; every
    # session here passes encoding="utf-8" explicitly, so the warning does not apply.
    warnings.simplefilter("ignore", DeprecationWarning)
    import ftputil
    import ftputil.error
    import ftputil.session

T = TypeVar("T")

MiB = 1024 * 1024
#: The big file: only ftplib, curl and lftp move it (both ways), to keep the run short.
BIG = 24 * MiB
#: Every client run (a subprocess, or a library session in a thread) ends within this many
#: seconds; conftest's ``in_thread`` deadline (30 s) is the backstop.
WRONG_PASSWORD = "not-" + PASSWORD
#: Marks the part of a file a resumed transfer must leave alone.
MARK = b"#"
#: UTF-8 names: Latin-1 range letters and CJK (3-byte UTF-8 sequences).
DOWNLOAD_NAMES = ("café-ü.txt", "日本語.txt")
UPLOAD_NAMES = ("naïve-ß.bin", "中文名.bin")
#: ``DIR`` in a parsed listing marks a directory (files map to their size).
DIR = "dir"

# The table --------------------------------------------------------------------------------
SCENARIOS = (
    "login",
    "list",
    "upload",
    "download",
    "resume-upload",
    "resume-download",
    "rename",
    "delete",
    "mkdir-rmdir",
    "mirror-download",
    "mirror-upload",
    "active",
    "passive",
    "non-ascii",
    "tiny-files",
    "big-file",
)
ALL = frozenset(SCENARIOS)

#: Why a client has no row for a scenario. Every pair is either here or in CLIENT_SCENARIOS.
ABSENT: dict[str, dict[str, str]] = {
    "ftplib": {
        "mirror-download": "ftplib has no recursive transfer",
        "mirror-upload": "ftplib has no recursive transfer",
    },
    "ftplib-tls": {
        "mirror-download": "ftplib has no recursive transfer",
        "mirror-upload": "ftplib has no recursive transfer",
        "big-file": "time budget: the 24 MiB file runs with ftplib, curl and lftp only",
    },
    "curl": {
        "mirror-download": "curl has no recursive transfer",
        "mirror-upload": "curl has no recursive transfer",
    },
    "wget": {
        "upload": "wget only downloads",
        "resume-upload": "wget only downloads",
        "rename": "wget only downloads",
        "delete": "wget only downloads",
        "mkdir-rmdir": "wget only downloads",
        "mirror-upload": "wget only downloads",
        "big-file": "time budget: the 24 MiB file runs with ftplib, curl and lftp only",
    },
    "lftp": {},
    "aioftp": {
        "active": "aioftp's client has passive mode only (EPSV, PASV)",
        "big-file": "time budget: the 24 MiB file runs with ftplib, curl and lftp only",
    },
    "ftputil": {
        "mirror-download": "ftputil has no recursive transfer (only per-file upload/download)",
        "mirror-upload": "ftputil has no recursive transfer (only per-file upload/download)",
        "big-file": "time budget: the 24 MiB file runs with ftplib, curl and lftp only",
    },
}

#: client -> the scenarios it runs.
CLIENT_SCENARIOS: dict[str, frozenset[str]] = {
    "ftplib": ALL - {"mirror-download", "mirror-upload"},
    "ftplib-tls": ALL - {"mirror-download", "mirror-upload", "big-file"},
    "curl": ALL - {"mirror-download", "mirror-upload"},
    "wget": frozenset(
        {
            "login",
            "list",
            "download",
            "resume-download",
            "mirror-download",
            "active",
            "passive",
            "non-ascii",
            "tiny-files",
        }
    ),
    "lftp": ALL,
    "aioftp": ALL - {"active", "big-file"},
    "ftputil": ALL - {"mirror-download", "mirror-upload", "big-file"},
}

#: The listing commands each client uses (what its ``listing()`` returns).
LISTING_KINDS: dict[str, frozenset[str]] = {
    "ftplib": frozenset({"LIST", "NLST", "MLSD"}),
    "ftplib-tls": frozenset({"LIST", "NLST", "MLSD"}),
    "curl": frozenset({"LIST", "NLST"}),
    "wget": frozenset({"LIST"}),
    "lftp": frozenset({"LIST", "NLST", "MLSD"}),
    "aioftp": frozenset({"LIST", "MLSD"}),
    "ftputil": frozenset({"LIST"}),
}


# shared helpers ---------------------------------------------------------------------------
@functools.cache
def payload(size: int, seed: int = 1) -> bytes:
    """Reproducible random bytes (cached: the big file is made once per run)."""
    return random.Random(f"{size}-{seed}").randbytes(size)


def snapshot(top: Path, ignore: frozenset[str] = frozenset()) -> dict[str, bytes | None]:
    """Every file (its bytes) and directory (``None``) under ``top``, by relative path."""
    return {
        path.relative_to(top).as_posix(): None if path.is_dir() else path.read_bytes()
        for path in sorted(top.rglob("*"))
        if path.name not in ignore
    }


def make_tree(top: Path, tree: dict[str, bytes | None]) -> None:
    """Create files (bytes) and directories (``None``) under ``top``."""
    top.mkdir(parents=True, exist_ok=True)
    for name, data in tree.items():
        path = top / name
        if data is None:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


def mirror_tree() -> dict[str, bytes | None]:
    """Nested directories (three levels), an empty directory and a 0-byte file."""
    return {
        "d1": None,
        "d1/b.bin": payload(50_000, seed=11),
        "d1/d2": None,
        "d1/d2/c.txt": b"third level\n",
        "d1/d2/d3": None,
        "d1/d2/d3/deep.bin": payload(70_000, seed=12),
        "d1/zero.bin": b"",
        "empty": None,
        "top.txt": b"top\n",
    }


def list_line_entry(line: str) -> tuple[str, int | str]:
    """``(name, size or DIR)`` from an ``ls -l`` line."""
    fields = line.split(None, 8)
    return fields[8], DIR if line.startswith("d") else int(fields[4])


def succeeded(result: subprocess.CompletedProcess[bytes]) -> subprocess.CompletedProcess[bytes]:
    assert result.returncode == 0, (result.args, result.returncode, result.stderr.decode())
    return result


# drivers: one per client, the same operations -----------------------------------------------
@dataclass
class Context:
    """What a scenario gets: the client's name, a way to start the server, the directories."""

    client: str
    start_server: Callable[..., Awaitable[Running]]
    root: Path  # the server's root
    local: Path  # the client's working directory
    home: Path  # HOME of client subprocesses
    tls: TLSCerts

    async def open(self, mode: str = "default", **server_kwargs: Any) -> Driver:
        """Start a server (TLS-enabled for TLS clients) and return the client's driver.

        ``mode``: ``"active"``, ``"passive"`` or ``"default"`` (the client's own choice).
        """
        if self.client == "ftplib-tls":
            # clear data connections are refused: every transfer proves PROT P works
            server_kwargs.update(tls_context=self.tls.server_context, tls_data_required=True)
        running = await self.start_server(**server_kwargs)
        return DRIVERS[self.client](running, self, mode)


class Driver:
    """A client's way of doing each operation; remote names are relative to the root.

    ``upload`` keeps the local file's name; ``download`` saves ``name`` as ``into / name``.
    ``listing`` returns, for each listing command the client uses, the root's entries as
    ``name -> size`` (``DIR`` for directories; ``None`` for NLST, which has only names).
    """

    uploads = True

    def __init__(self, running: Running, ctx: Context, mode: str) -> None:
        self.running = running
        self.ctx = ctx
        self.mode = mode

    async def login(self, password: str) -> bool:
        """True when the client logged in; False when it reports the server's 530."""
        raise NotImplementedError

    async def listing(self) -> dict[str, dict[str, Any]]:
        raise NotImplementedError

    async def upload(self, sources: list[Path]) -> None:
        raise NotImplementedError

    async def download(self, names: list[str], into: Path) -> None:
        raise NotImplementedError

    async def resume_upload(self, source: Path) -> None:
        """Continue the upload of ``source`` from the size the server already has."""
        raise NotImplementedError

    async def resume_download(self, name: str, local: Path) -> None:
        """Continue the download of ``name`` from the size ``local`` already has."""
        raise NotImplementedError

    async def rename(self, old: str, new: str) -> None:
        raise NotImplementedError

    async def delete(self, name: str) -> None:
        raise NotImplementedError

    async def mkdir(self, name: str) -> None:
        raise NotImplementedError

    async def rmdir(self, name: str) -> None:
        raise NotImplementedError

    async def mirror_download(self, remote: str, local: Path) -> None:
        raise NotImplementedError

    async def mirror_upload(self, local: Path, remote: str) -> None:
        raise NotImplementedError


class FtplibDriver(Driver):
    """``ftplib.FTP``, or ``FTP_TLS`` (AUTH TLS, PBSZ, PROT P) for the ``ftplib-tls`` client."""

    def connect(self, password: str = PASSWORD) -> ftplib.FTP:
        running = self.running
        if self.ctx.client == "ftplib-tls":
            ftp: ftplib.FTP = ftplib.FTP_TLS(context=self.ctx.tls.client_context, timeout=10)
        else:
            ftp = ftplib.FTP(timeout=10)
        try:
            ftp.connect(running.host, running.port)
            if isinstance(ftp, ftplib.FTP_TLS):
                ftp.auth()
            ftp.login(LOGIN, password)
            if isinstance(ftp, ftplib.FTP_TLS):
                ftp.prot_p()
                assert isinstance(ftp.sock, ssl.SSLSocket)
        except BaseException:
            ftp.close()
            raise
        ftp.set_pasv(self.mode != "active")
        return ftp

    async def session(self, job: Callable[[ftplib.FTP], T]) -> T:
        """Run ``job`` with a logged-in client in a thread, then QUIT."""

        def run() -> T:
            with self.connect() as ftp:
                result = job(ftp)
                ftp.quit()
            return result

        return await in_thread(run)

    async def login(self, password: str) -> bool:
        def run() -> str:
            try:
                ftp = self.connect(password)
            except ftplib.error_perm as exc:
                return str(exc)
            with ftp:
                ftp.voidcmd("NOOP")
                ftp.quit()
            return "logged in"

        outcome = await in_thread(run)
        assert outcome in ("logged in", "530 login incorrect"), outcome
        return outcome == "logged in"

    async def listing(self) -> dict[str, dict[str, Any]]:
        def job(ftp: ftplib.FTP) -> dict[str, dict[str, Any]]:
            lines: list[str] = []
            ftp.retrlines("LIST", lines.append)
            mlsd = {
                name: DIR if facts["type"] == "dir" else int(facts["size"])
                for name, facts in ftp.mlsd(facts=["type", "size"])
                if facts["type"] not in ("cdir", "pdir")
            }
            return {
                "LIST": dict(map(list_line_entry, lines)),
                "NLST": dict.fromkeys(ftp.nlst()),
                "MLSD": mlsd,
            }

        return await self.session(job)

    async def upload(self, sources: list[Path]) -> None:
        def job(ftp: ftplib.FTP) -> None:
            for source in sources:
                with source.open("rb") as file:
                    ftp.storbinary(f"STOR {source.name}", file, blocksize=65536)

        await self.session(job)

    async def download(self, names: list[str], into: Path) -> None:
        def job(ftp: ftplib.FTP) -> None:
            for name in names:
                with (into / name).open("wb") as file:
                    ftp.retrbinary(f"RETR {name}", file.write, blocksize=65536)

        await self.session(job)

    async def resume_upload(self, source: Path) -> None:
        def job(ftp: ftplib.FTP) -> None:
            ftp.voidcmd("TYPE I")
            offset = ftp.size(source.name)
            assert offset is not None
            with source.open("rb") as file:
                file.seek(offset)
                ftp.storbinary(f"STOR {source.name}", file, blocksize=65536, rest=offset)

        await self.session(job)

    async def resume_download(self, name: str, local: Path) -> None:
        def job(ftp: ftplib.FTP) -> None:
            offset = local.stat().st_size
            with local.open("ab") as file:
                ftp.retrbinary(f"RETR {name}", file.write, blocksize=65536, rest=offset)

        await self.session(job)

    async def rename(self, old: str, new: str) -> None:
        await self.session(lambda ftp: ftp.rename(old, new))

    async def delete(self, name: str) -> None:
        await self.session(lambda ftp: ftp.delete(name))

    async def mkdir(self, name: str) -> None:
        assert await self.session(lambda ftp: ftp.mkd(name)) == f"/{name}"

    async def rmdir(self, name: str) -> None:
        await self.session(lambda ftp: ftp.rmd(name))


class CurlDriver(Driver):
    """The curl binary: one run per operation; ``-Q`` for the commands without a URL form."""

    def url(self, name: str = "", password: str = PASSWORD) -> str:
        running = self.running
        path = urllib.parse.quote(name.encode())
        return f"ftp://{LOGIN}:{password}@{running.host}:{running.port}/{path}"

    async def curl(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        argv = ["curl", "-q", "-sS", "--noproxy", "*", "--max-time", str(CLIENT_TIMEOUT - 5)]
        if self.mode == "active":
            argv += ["--ftp-port", "-"]
        elif self.mode == "passive":
            argv += ["--ftp-pasv"]
        return await run_client([*argv, *args], self.ctx.local, self.ctx.home)

    async def login(self, password: str) -> bool:
        result = await self.curl("--list-only", self.url(password=password))
        if result.returncode == 67:  # CURLE_LOGIN_DENIED
            assert b"530" in result.stderr, result.stderr
            return False
        succeeded(result)
        return True

    async def listing(self) -> dict[str, dict[str, Any]]:
        lines = succeeded(await self.curl(self.url())).stdout.decode().splitlines()
        names = succeeded(await self.curl("--list-only", self.url())).stdout.decode()
        return {
            "LIST": dict(map(list_line_entry, lines)),
            "NLST": dict.fromkeys(names.splitlines()),
        }

    async def upload(self, sources: list[Path]) -> None:
        for source in sources:
            succeeded(await self.curl("-T", str(source), self.url(source.name)))

    async def download(self, names: list[str], into: Path) -> None:
        for name in names:
            succeeded(await self.curl("-o", str(into / name), self.url(name)))

    async def resume_upload(self, source: Path) -> None:
        succeeded(await self.curl("-C", "-", "-T", str(source), self.url(source.name)))

    async def resume_download(self, name: str, local: Path) -> None:
        succeeded(await self.curl("-C", "-", "-o", str(local), self.url(name)))

    async def quote(self, *commands: str) -> None:
        """Send raw commands (``-Q``) before a listing of the root, whose output is dropped."""
        quoted = [arg for command in commands for arg in ("-Q", command)]
        succeeded(await self.curl(*quoted, "--list-only", self.url()))

    async def rename(self, old: str, new: str) -> None:
        await self.quote(f"RNFR {old}", f"RNTO {new}")

    async def delete(self, name: str) -> None:
        await self.quote(f"DELE {name}")

    async def mkdir(self, name: str) -> None:
        await self.quote(f"MKD {name}")

    async def rmdir(self, name: str) -> None:
        await self.quote(f"RMD {name}")


class WgetDriver(Driver):
    """The wget binary (downloads only)."""

    uploads = False

    def url(self, name: str = "", password: str = PASSWORD) -> str:
        running = self.running
        path = urllib.parse.quote(name.encode())
        return f"ftp://{LOGIN}:{password}@{running.host}:{running.port}/{path}"

    async def wget(self, cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
        # nocontrol: keep UTF-8 bytes 0x80-0x9f in local names as they are
        argv = ["wget", "--no-config", "-nv", "--no-proxy", "--tries=1", "--timeout=10"]
        argv += ["--restrict-file-names=nocontrol"]
        if self.mode == "active":
            argv += ["--no-passive-ftp"]
        elif self.mode == "passive":
            argv += ["--passive-ftp"]
        return await run_client([*argv, *args], cwd, self.ctx.home)

    def scratch(self, name: str) -> Path:
        path = self.ctx.home.parent / name
        path.mkdir()
        return path

    async def login(self, password: str) -> bool:
        result = await self.wget(
            self.scratch(f"wget-login-{password}"), self.url(password=password)
        )
        if result.returncode == 6:  # "Username/password authentication failure"
            assert b"Login incorrect" in result.stderr, result.stderr
            return False
        succeeded(result)
        return True

    async def listing(self) -> dict[str, dict[str, Any]]:
        where = self.scratch("wget-listing")
        succeeded(await self.wget(where, "--no-remove-listing", self.url()))
        lines = (where / ".listing").read_bytes().decode().splitlines()
        return {"LIST": dict(map(list_line_entry, lines))}

    async def download(self, names: list[str], into: Path) -> None:
        succeeded(await self.wget(into, *map(self.url, names)))

    async def resume_download(self, name: str, local: Path) -> None:
        succeeded(await self.wget(local.parent, "-c", "-O", str(local), self.url(name)))

    async def mirror_download(self, remote: str, local: Path) -> None:
        assert local.name == remote  # -nH: the tree lands in <cwd>/<remote>
        succeeded(await self.wget(local.parent, "-m", "-nH", self.url(remote + "/")))


class LftpDriver(Driver):
    """The lftp binary: one ``lftp -c`` script per operation, failing on the first error."""

    def quoted(self, text: str | Path) -> str:
        assert '"' not in str(text)
        return f'"{text}"'

    async def run(
        self, *commands: str, password: str = PASSWORD
    ) -> subprocess.CompletedProcess[bytes]:
        settings = ["set cmd:fail-exit yes", "set net:max-retries 1", "set net:timeout 10"]
        if self.mode != "default":
            settings.append(f"set ftp:passive-mode {'false' if self.mode == 'active' else 'true'}")
        running = self.running
        script = "; ".join(
            [
                *settings,
                f"open -u {LOGIN},{password} ftp://{running.host}:{running.port}",
                *commands,
            ]
        )
        return await run_client(["lftp", "-c", script], self.ctx.local, self.ctx.home)

    async def lftp(self, *commands: str) -> str:
        """Run the commands; their standard output."""
        return succeeded(await self.run(*commands)).stdout.decode()

    async def login(self, password: str) -> bool:
        result = await self.run("ls", password=password)
        if result.returncode:
            assert b"Login failed: 530" in result.stderr, result.stderr
            return False
        return True

    async def listing(self) -> dict[str, dict[str, Any]]:
        output = await self.lftp(
            "cls -l",  # MLSD, parsed by lftp: "perms size month day time name[/]"
            "echo @@",
            "ls",  # LIST, the raw lines
            "echo @@",
            "nlist",  # NLST
        )
        cls, ls, nlist = output.split("@@\n")
        mlsd: dict[str, Any] = {}
        for line in cls.splitlines():
            perms, size, _, _, _, name = line.split(None, 5)
            if perms.startswith("d"):
                assert name.endswith("/"), line
                mlsd[name[:-1]] = DIR
            else:
                mlsd[name] = int(size)
        return {
            "MLSD": mlsd,
            "LIST": dict(map(list_line_entry, ls.splitlines())),
            "NLST": dict.fromkeys(nlist.splitlines()),
        }

    async def upload(self, sources: list[Path]) -> None:
        q = self.quoted
        await self.lftp(*(f"put {q(source)} -o {q(source.name)}" for source in sources))

    async def download(self, names: list[str], into: Path) -> None:
        q = self.quoted
        await self.lftp(*(f"get {q(name)} -o {q(into / name)}" for name in names))

    async def resume_upload(self, source: Path) -> None:
        await self.lftp(f"put -c {self.quoted(source)} -o {self.quoted(source.name)}")

    async def resume_download(self, name: str, local: Path) -> None:
        await self.lftp(f"get -c {self.quoted(name)} -o {self.quoted(local)}")

    async def rename(self, old: str, new: str) -> None:
        await self.lftp(f"mv {self.quoted(old)} {self.quoted(new)}")

    async def delete(self, name: str) -> None:
        await self.lftp(f"rm {self.quoted(name)}")

    async def mkdir(self, name: str) -> None:
        await self.lftp(f"mkdir {self.quoted(name)}")

    async def rmdir(self, name: str) -> None:
        await self.lftp(f"rmdir {self.quoted(name)}")

    async def mirror_download(self, remote: str, local: Path) -> None:
        await self.lftp(f"mirror --parallel=4 {self.quoted(remote)} {self.quoted(local)}")

    async def mirror_upload(self, local: Path, remote: str) -> None:
        await self.lftp(f"mirror -R --parallel=4 {self.quoted(local)} {self.quoted(remote)}")


class AioftpDriver(Driver):
    """aioftp's asyncio ``Client``, run with ``asyncio.run`` in a thread (passive only)."""

    async def session(
        self, job: Callable[[aioftp.Client], Awaitable[T]], password: str = PASSWORD
    ) -> T:
        assert self.mode != "active"

        async def main() -> T:
            client = aioftp.Client(socket_timeout=10, connection_timeout=10, encoding="utf-8")
            await client.connect(self.running.host, self.running.port)
            try:
                await client.login(LOGIN, password)
                result = await job(client)
                await client.quit()
            finally:
                client.close()
            return result

        def run() -> T:
            return asyncio.run(asyncio.wait_for(main(), CLIENT_TIMEOUT - 5))

        return await in_thread(run)

    async def login(self, password: str) -> bool:
        async def job(client: aioftp.Client) -> bool:
            return True

        try:
            return await self.session(job, password)
        except aioftp.StatusCodeError as exc:
            received = exc.received_codes
        assert received == ("530",), received
        return False

    async def listing(self) -> dict[str, dict[str, Any]]:
        def entries(found: list[tuple[Any, dict[str, str]]]) -> dict[str, Any]:
            return {
                path.name: DIR if info["type"] == "dir" else int(info["size"])
                for path, info in found
            }

        async def job(client: aioftp.Client) -> dict[str, dict[str, Any]]:
            return {
                "MLSD": entries(await client.list()),
                "LIST": entries(await client.list(raw_command="LIST")),
            }

        return await self.session(job)

    async def upload(self, sources: list[Path]) -> None:
        async def job(client: aioftp.Client) -> None:
            for source in sources:
                await client.upload(source, source.name, write_into=True)

        await self.session(job)

    async def download(self, names: list[str], into: Path) -> None:
        async def job(client: aioftp.Client) -> None:
            for name in names:
                await client.download(name, into / name, write_into=True)

        await self.session(job)

    async def resume_upload(self, source: Path) -> None:
        async def job(client: aioftp.Client) -> None:
            offset = int((await client.stat(source.name))["size"])
            async with client.upload_stream(source.name, offset=offset) as stream:
                # blocking reads are fine here: this loop runs in a worker thread
                await stream.write(source.read_bytes()[offset:])  # noqa: ASYNC240

        await self.session(job)

    async def resume_download(self, name: str, local: Path) -> None:
        async def job(client: aioftp.Client) -> None:
            offset = local.stat().st_size  # noqa: ASYNC240 (a worker thread's loop)
            with local.open("ab") as file:
                async with client.download_stream(name, offset=offset) as stream:
                    async for block in stream.iter_by_block():
                        file.write(block)

        await self.session(job)

    async def rename(self, old: str, new: str) -> None:
        async def job(client: aioftp.Client) -> None:
            await client.rename(old, new)

        await self.session(job)

    async def delete(self, name: str) -> None:
        async def job(client: aioftp.Client) -> None:
            await client.remove_file(name)

        await self.session(job)

    async def mkdir(self, name: str) -> None:
        async def job(client: aioftp.Client) -> None:
            await client.make_directory(name, parents=False)

        await self.session(job)

    async def rmdir(self, name: str) -> None:
        async def job(client: aioftp.Client) -> None:
            await client.remove_directory(name)

        await self.session(job)

    async def mirror_download(self, remote: str, local: Path) -> None:
        async def job(client: aioftp.Client) -> None:
            await client.download(remote, local, write_into=True)

        await self.session(job)

    async def mirror_upload(self, local: Path, remote: str) -> None:
        async def job(client: aioftp.Client) -> None:
            await client.upload(local, remote, write_into=True)

        await self.session(job)


class ClosingFTP(ftplib.FTP):
    """``ftplib.FTP`` that closes its socket when the login fails: ftputil 5.2's session
    factory leaves it open (a ResourceWarning, an error under ``filterwarnings = error``)."""

    def login(self, *args: Any, **kwargs: Any) -> str:
        try:
            return super().login(*args, **kwargs)
        except BaseException:
            self.close()
            raise


class FtputilDriver(Driver):
    """ftputil's ``FTPHost`` (UTF-8 paths; active mode through its session factory)."""

    @contextlib.contextmanager
    def host(self, password: str = PASSWORD) -> Iterator[ftputil.FTPHost]:
        factory = ftputil.session.session_factory(
            base_class=ClosingFTP,
            port=self.running.port,
            encoding="utf-8",
            use_passive_mode=self.mode != "active",
        )
        with ftputil.FTPHost(self.running.host, LOGIN, password, session_factory=factory) as host:
            host.set_time_shift(0.0)  # the server lists in UTC; ftputil 6 wants it explicit
            yield host

    async def session(self, job: Callable[[ftputil.FTPHost], T]) -> T:
        def run() -> T:
            with self.host() as host:
                return job(host)

        return await in_thread(run)

    async def login(self, password: str) -> bool:
        def run() -> str:
            try:
                with self.host(password) as host:
                    host.getcwd()
            except ftputil.error.PermanentError as exc:
                return str(exc)
            return "logged in"

        outcome = await in_thread(run)
        assert outcome == "logged in" or "530 login incorrect" in outcome, outcome
        return outcome == "logged in"

    async def listing(self) -> dict[str, dict[str, Any]]:
        def job(host: ftputil.FTPHost) -> dict[str, dict[str, Any]]:
            return {
                "LIST": {
                    name: DIR if host.path.isdir(name) else host.path.getsize(name)
                    for name in host.listdir(host.curdir)
                }
            }

        return await self.session(job)

    async def upload(self, sources: list[Path]) -> None:
        def job(host: ftputil.FTPHost) -> None:
            for source in sources:
                host.upload(source, source.name)

        await self.session(job)

    async def download(self, names: list[str], into: Path) -> None:
        def job(host: ftputil.FTPHost) -> None:
            for name in names:
                host.download(name, into / name)

        await self.session(job)

    async def resume_upload(self, source: Path) -> None:
        def job(host: ftputil.FTPHost) -> None:
            offset = host.path.getsize(source.name)
            with source.open("rb") as file, host.open(source.name, "wb", rest=offset) as remote:
                file.seek(offset)
                shutil.copyfileobj(file, remote)

        await self.session(job)

    async def resume_download(self, name: str, local: Path) -> None:
        def job(host: ftputil.FTPHost) -> None:
            offset = local.stat().st_size
            with host.open(name, "rb", rest=offset) as remote, local.open("ab") as file:
                shutil.copyfileobj(remote, file)

        await self.session(job)

    async def rename(self, old: str, new: str) -> None:
        await self.session(lambda host: host.rename(old, new))

    async def delete(self, name: str) -> None:
        await self.session(lambda host: host.remove(name))

    async def mkdir(self, name: str) -> None:
        await self.session(lambda host: host.mkdir(name))

    async def rmdir(self, name: str) -> None:
        await self.session(lambda host: host.rmdir(name))


DRIVERS: dict[str, type[Driver]] = {
    "ftplib": FtplibDriver,
    "ftplib-tls": FtplibDriver,
    "curl": CurlDriver,
    "wget": WgetDriver,
    "lftp": LftpDriver,
    "aioftp": AioftpDriver,
    "ftputil": FtputilDriver,
}


# scenarios ----------------------------------------------------------------------------------
Scenario = Callable[[Context], Awaitable[None]]
SCENARIO_FUNCTIONS: dict[str, Scenario] = {}


def scenario(name: str) -> Callable[[Scenario], Scenario]:
    def register(function: Scenario) -> Scenario:
        SCENARIO_FUNCTIONS[name] = function
        return function

    return register


def write_local(ctx: Context, name: str, data: bytes) -> Path:
    path = ctx.local / name
    path.write_bytes(data)
    return path


async def transfer_both_ways(ctx: Context, driver: Driver, tag: str) -> None:
    """Download a 300 kB file and (for clients that upload) upload another, byte-exact."""
    down, up = payload(300_000, seed=21), payload(300_001, seed=22)
    (ctx.root / f"{tag}-down.bin").write_bytes(down)
    expected = {f"{tag}-down.bin": down}
    if driver.uploads:
        await driver.upload([write_local(ctx, f"{tag}-up.bin", up)])
        expected[f"{tag}-up.bin"] = up
    into = ctx.local / "downloads"
    into.mkdir()
    await driver.download([f"{tag}-down.bin"], into)
    assert snapshot(ctx.root) == expected
    assert snapshot(into) == {f"{tag}-down.bin": down}


@scenario("login")
async def scenario_login(ctx: Context) -> None:
    """The right password logs in; a wrong one fails as the client's "530" error."""
    driver = await ctx.open()
    assert await driver.login(PASSWORD) is True
    assert await driver.login(WRONG_PASSWORD) is False


@scenario("list")
async def scenario_list(ctx: Context) -> None:
    """Every listing the client uses (LIST, NLST, MLSD) shows the root's names; LIST and
    MLSD also the sizes and which entry is a directory."""
    (ctx.root / "a.txt").write_bytes(b"hello\n")
    (ctx.root / "b.bin").write_bytes(bytes(range(256)) * 4)
    (ctx.root / "sub").mkdir()
    (ctx.root / "sub" / "inner.txt").write_bytes(b"not listed")
    driver = await ctx.open()
    listings = await driver.listing()
    assert set(listings) == LISTING_KINDS[ctx.client]
    for kind, entries in listings.items():
        if kind == "NLST":
            assert entries == {"a.txt": None, "b.bin": None, "sub": None}, kind
        else:
            assert entries == {"a.txt": 6, "b.bin": 1024, "sub": DIR}, kind


@scenario("upload")
async def scenario_upload(ctx: Context) -> None:
    """A 300 kB random file uploads byte for byte."""
    data = payload(300_000, seed=1)
    driver = await ctx.open()
    await driver.upload([write_local(ctx, "up.bin", data)])
    assert snapshot(ctx.root) == {"up.bin": data}


@scenario("download")
async def scenario_download(ctx: Context) -> None:
    """A 300 kB random file downloads byte for byte."""
    data = payload(300_000, seed=2)
    (ctx.root / "down.bin").write_bytes(data)
    driver = await ctx.open()
    into = ctx.local / "downloads"
    into.mkdir()
    await driver.download(["down.bin"], into)
    assert snapshot(into) == {"down.bin": data}


@scenario("resume-upload")
async def scenario_resume_upload(ctx: Context) -> None:
    """A resumed upload sends exactly the tail: the server's first bytes (a marker, not the
    source's) stay, followed by the rest of the source."""
    data, kept = payload(400_000, seed=3), 150_001
    (ctx.root / "resume.bin").write_bytes(MARK * kept)
    driver = await ctx.open()
    await driver.resume_upload(write_local(ctx, "resume.bin", data))
    assert snapshot(ctx.root) == {"resume.bin": MARK * kept + data[kept:]}


@scenario("resume-download")
async def scenario_resume_download(ctx: Context) -> None:
    """A resumed download fetches exactly the tail: the local first bytes (a marker) stay,
    followed by the rest of the server's file."""
    data, kept = payload(400_000, seed=4), 150_001
    (ctx.root / "resume.bin").write_bytes(data)
    into = ctx.local / "downloads"
    into.mkdir()
    (into / "resume.bin").write_bytes(MARK * kept)
    driver = await ctx.open()
    await driver.resume_download("resume.bin", into / "resume.bin")
    assert snapshot(into) == {"resume.bin": MARK * kept + data[kept:]}


@scenario("rename")
async def scenario_rename(ctx: Context) -> None:
    """RNFR/RNTO: the file has the new name and the same bytes."""
    (ctx.root / "old.txt").write_bytes(b"renamed contents\n")
    driver = await ctx.open()
    await driver.rename("old.txt", "new.txt")
    assert snapshot(ctx.root) == {"new.txt": b"renamed contents\n"}


@scenario("delete")
async def scenario_delete(ctx: Context) -> None:
    """DELE removes one file and leaves its neighbour."""
    (ctx.root / "gone.txt").write_bytes(b"delete me\n")
    (ctx.root / "keep.txt").write_bytes(b"keep me\n")
    driver = await ctx.open()
    await driver.delete("gone.txt")
    assert snapshot(ctx.root) == {"keep.txt": b"keep me\n"}


@scenario("mkdir-rmdir")
async def scenario_mkdir_rmdir(ctx: Context) -> None:
    """MKD makes an empty directory on disk; RMD removes it again."""
    driver = await ctx.open()
    await driver.mkdir("newdir")
    assert snapshot(ctx.root) == {"newdir": None}
    await driver.rmdir("newdir")
    assert snapshot(ctx.root) == {}


@scenario("mirror-download")
async def scenario_mirror_download(ctx: Context) -> None:
    """A recursive download reproduces a three-level tree with an empty directory and a
    0-byte file (wget's .listing files aside)."""
    tree = mirror_tree()
    make_tree(ctx.root / "tree", tree)
    driver = await ctx.open()
    await driver.mirror_download("tree", ctx.local / "tree")
    assert snapshot(ctx.local / "tree", ignore=frozenset({".listing"})) == tree


@scenario("mirror-upload")
async def scenario_mirror_upload(ctx: Context) -> None:
    """A recursive upload reproduces a three-level tree with an empty directory and a 0-byte
    file under the server's root."""
    tree = mirror_tree()
    make_tree(ctx.local / "tree", tree)
    driver = await ctx.open()
    await driver.mirror_upload(ctx.local / "tree", "mirrored")
    assert snapshot(ctx.root) == {"mirrored": None, **{f"mirrored/{k}": v for k, v in tree.items()}}


@scenario("active")
async def scenario_active(ctx: Context) -> None:
    """In active mode (PORT/EPRT), with no passive port available, files move both ways."""
    driver = await ctx.open("active", data_ports=[])  # PASV and EPSV can only answer 425
    await transfer_both_ways(ctx, driver, "active")


@scenario("passive")
async def scenario_passive(ctx: Context) -> None:
    """In passive mode (PASV/EPSV), with active mode refused, files move both ways."""
    driver = await ctx.open("passive", active_mode=False)  # PORT and EPRT answer 504
    await transfer_both_ways(ctx, driver, "passive")


@scenario("non-ascii")
async def scenario_non_ascii(ctx: Context) -> None:
    """UTF-8 names (accented Latin, CJK) download and upload under their exact names, and
    every listing the client uses shows them."""
    originals = {name: f"contents of {name}\n".encode() for name in DOWNLOAD_NAMES}
    for name, data in originals.items():
        (ctx.root / name).write_bytes(data)
    driver = await ctx.open()
    into = ctx.local / "downloads"
    into.mkdir()
    await driver.download(list(DOWNLOAD_NAMES), into)
    assert snapshot(into) == originals
    expected = dict(originals)
    if driver.uploads:
        sources = ctx.local / "sources"
        sources.mkdir()
        uploads = {name: f"uploaded {name}\n".encode() for name in UPLOAD_NAMES}
        make_tree(sources, dict(uploads))
        await driver.upload([sources / name for name in UPLOAD_NAMES])
        expected.update(uploads)
    assert snapshot(ctx.root) == expected
    listings = await driver.listing()
    for kind, entries in listings.items():
        assert set(entries) == set(expected), kind


@scenario("tiny-files")
async def scenario_tiny_files(ctx: Context) -> None:
    """0-byte and 1-byte (a lone LF: an ASCII-mode transfer would make it CR LF) files move
    both ways unchanged."""
    tiny = {"zero.bin": b"", "one.bin": b"\n"}
    make_tree(ctx.root, dict(tiny))
    driver = await ctx.open()
    into = ctx.local / "downloads"
    into.mkdir()
    await driver.download(list(tiny), into)
    assert snapshot(into) == tiny
    expected = dict(tiny)
    if driver.uploads:
        sources = ctx.local / "sources"
        make_tree(sources, {"up-zero.bin": b"", "up-one.bin": b"\n"})
        await driver.upload([sources / "up-zero.bin", sources / "up-one.bin"])
        expected.update({"up-zero.bin": b"", "up-one.bin": b"\n"})
    assert snapshot(ctx.root) == expected


@scenario("big-file")
async def scenario_big_file(ctx: Context) -> None:
    """A 24 MiB random file uploads and downloads byte for byte."""
    data = payload(BIG, seed=5)
    (ctx.root / "big-down.bin").write_bytes(data)
    driver = await ctx.open()
    await driver.upload([write_local(ctx, "big-up.bin", data)])
    into = ctx.local / "downloads"
    into.mkdir()
    await driver.download(["big-down.bin"], into)
    assert (ctx.root / "big-up.bin").read_bytes() == data
    assert (into / "big-down.bin").read_bytes() == data
    assert sorted(p.name for p in ctx.root.iterdir()) == ["big-down.bin", "big-up.bin"]


# tests ----------------------------------------------------------------------------------------
PAIRS = [
    (client, name)
    for client in CLIENT_SCENARIOS
    for name in SCENARIOS
    if name in CLIENT_SCENARIOS[client]
]


def test_table_covers_every_pair_once():
    """Each (client, scenario) pair is either run or listed in ABSENT with a reason."""
    assert set(CLIENT_SCENARIOS) == set(ABSENT) == set(DRIVERS) == set(LISTING_KINDS)
    assert set(SCENARIO_FUNCTIONS) == ALL
    for client, scenarios in CLIENT_SCENARIOS.items():
        assert scenarios | set(ABSENT[client]) == ALL, client
        assert not scenarios & set(ABSENT[client]), client
        assert all(ABSENT[client].values()), client


@pytest.mark.parametrize(("client", "name"), PAIRS, ids=[f"{c}-{s}" for c, s in PAIRS])
async def test_compat(start_server, root, tmp_path, tls, client, name):
    """The client passes the scenario (each scenario's docstring says what is checked)."""
    local = tmp_path / "local"
    local.mkdir()
    ctx = Context(client, start_server, root, local, tmp_path / "home", tls)
    await SCENARIO_FUNCTIONS[name](ctx)
