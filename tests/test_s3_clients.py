"""Real FTP clients against an S3 bucket served by trio_ftp (moto's S3 server, through
s3fs): lftp mirrors both ways with 4 parallel connections, curl, wget and ftplib, byte
for byte against the objects, with a 0-byte file, non-ASCII names and names with spaces;
uploads cut by a reset or by ABOR once the store holds a part of them. The command line
serving ``--root s3://bucket/prefix`` is tested here too.

Every test takes a second or more (a client process and a store over HTTP): all slow."""

from __future__ import annotations

import ftplib
import io
import re
import socket
import struct
import subprocess
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from conftest import LOGIN, PASSWORD, in_thread, random_bytes, run_client
from moto_server import MotoServer, moto  # noqa: F401  (the fixture)
from test_cli import serving

from trio_ftp import Server, User
from trio_ftp.pathio import FsspecPathIO

pytestmark = pytest.mark.slow

#: The tree each client moves: relative name -> content.
TREE: dict[str, bytes] = {
    "empty.bin": b"",
    "one byte": b"1",
    "name with spaces.txt": b"spaces\n" * 100,
    "\u00e9t\u00e9 \u65e5\u672c.dat": random_bytes(70_000, seed=2),
    "sub dir/nested/deep.bin": random_bytes(300_000, seed=3),
    "sub dir/\u00fcber.txt": b"\xc3\xbc\n",
}


def write_tree(root: Path) -> None:
    for name, content in TREE.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)


def read_tree(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def succeeded(result: subprocess.CompletedProcess[bytes]) -> subprocess.CompletedProcess[bytes]:
    assert result.returncode == 0, (result.returncode, result.stderr.decode(errors="replace"))
    return result


class Bucket:
    """The served prefix, seen directly through s3fs."""

    def __init__(self, moto: MotoServer, bucket: str, prefix: str) -> None:  # noqa: F811
        self.moto = moto
        self.store = moto.file_system()
        self.bucket = bucket
        self.prefix = prefix

    def put_tree(self) -> None:
        self.store.pipe({f"{self.bucket}/{self.prefix}/{n}": c for n, c in TREE.items()})

    def objects(self) -> dict[str, bytes]:
        """Every object under the prefix but directory markers: name -> content."""
        base = f"{self.bucket}/{self.prefix}/"
        found = {}
        for key in self.store.find(base):
            if not key.endswith("/"):
                found[key[len(base) :]] = self.store.cat_file(key)
        return found

    def open_uploads(self) -> list[str]:
        """The keys of the bucket's multipart uploads that are neither complete nor aborted."""
        found = self.store.call_s3("list_multipart_uploads", Bucket=self.bucket)
        return [str(upload["Key"]) for upload in found.get("Uploads", [])]


@pytest.fixture
async def served(
    nursery: trio.Nursery,
    moto: MotoServer,  # noqa: F811
) -> AsyncIterator[tuple[int, Bucket]]:
    """trio_ftp serving a fresh bucket's ``files`` prefix: (port, the bucket)."""
    bucket = await trio.to_thread.run_sync(moto.new_bucket)
    factory = FsspecPathIO.for_root(f"s3://{bucket}/files", storage_options=moto.storage_options)
    server = Server([User(LOGIN, PASSWORD, base_path=".")], path_io_factory=factory)
    _, port = await nursery.start(server.serve, "127.0.0.1", 0)
    yield port, Bucket(moto, bucket, "files")
    with trio.fail_after(10):
        await server.close()


async def lftp(port: int, tmp_path: Path, *commands: str) -> None:
    script = "; ".join(
        [
            "set cmd:fail-exit yes",
            "set net:max-retries 1",
            "set net:timeout 10",
            f"open -u {LOGIN},{PASSWORD} ftp://127.0.0.1:{port}",
            *commands,
        ]
    )
    succeeded(await run_client(["lftp", "-c", script], tmp_path, tmp_path / "home"))


async def test_lftp_mirrors_both_ways_in_parallel(
    served: tuple[int, Bucket], tmp_path: Path
) -> None:
    port, bucket = served
    local = tmp_path / "up"
    write_tree(local)
    await lftp(port, tmp_path, f"mirror -R --parallel=4 '{local}' 'tree'")
    assert await trio.to_thread.run_sync(bucket.objects) == {
        f"tree/{n}": c for n, c in TREE.items()
    }
    down = tmp_path / "down"
    await lftp(port, tmp_path, f"mirror --parallel=4 'tree' '{down}'")
    assert read_tree(down) == TREE


async def test_curl_uploads_and_downloads(served: tuple[int, Bucket], tmp_path: Path) -> None:
    port, bucket = served
    base = f"ftp://{LOGIN}:{PASSWORD}@127.0.0.1:{port}/"
    curl = ["curl", "-q", "-sS", "--noproxy", "*", "--max-time", "60"]
    for name, content in TREE.items():
        source = tmp_path / "source"
        source.write_bytes(content)
        url = base + urllib.parse.quote(name)
        succeeded(
            await run_client(
                [*curl, "--ftp-create-dirs", "-T", str(source), url], tmp_path, tmp_path / "h"
            )
        )
        target = tmp_path / "target"
        succeeded(await run_client([*curl, "-o", str(target), url], tmp_path, tmp_path / "h"))
        assert target.read_bytes() == content, name
    assert await trio.to_thread.run_sync(bucket.objects) == TREE


async def test_wget_downloads_a_tree(served: tuple[int, Bucket], tmp_path: Path) -> None:
    port, bucket = served
    await trio.to_thread.run_sync(bucket.put_tree)
    into = tmp_path / "wget"
    into.mkdir()
    url = f"ftp://{LOGIN}:{PASSWORD}@127.0.0.1:{port}/"
    argv = ["wget", "-q", "-r", "-nH", "--no-proxy", "--restrict-file-names=nocontrol", url]
    succeeded(await run_client(argv, into, tmp_path / "h"))
    assert read_tree(into) == TREE


async def test_ftplib_uploads_and_downloads(served: tuple[int, Bucket]) -> None:
    port, bucket = served

    def run() -> dict[str, bytes]:
        got = {}
        with ftplib.FTP(timeout=20) as client:
            client.encoding = "utf-8"
            client.connect("127.0.0.1", port)
            client.login(LOGIN, PASSWORD)
            client.mkd("sub dir")
            client.mkd("sub dir/nested")
            for name, content in TREE.items():
                client.storbinary(f"STOR {name}", io.BytesIO(content))
            for name in TREE:
                received = io.BytesIO()
                client.retrbinary(f"RETR {name}", received.write)
                got[name] = received.getvalue()
        return got

    assert await in_thread(run) == TREE
    assert await trio.to_thread.run_sync(bucket.objects) == TREE


#: Most a cut upload sends (1 MiB blocks) waiting for the store to take its first part.
MOST_BLOCKS_BEFORE_A_PART = 48


@pytest.mark.parametrize("cut", ["reset", "abor"])
async def test_an_upload_cut_after_a_stored_part_leaves_nothing(
    served: tuple[int, Bucket], cut: str
) -> None:
    """A STOR cut once the store holds its first multipart part, by a TCP reset of the data
    connection (SO_LINGER 0) or by ABOR: the client gets 426 (and ABOR's 226), never
    ``226 transfer complete``; the server aborts the multipart upload (moto logs the
    DELETE), so neither an object nor an open upload is left; the session goes on."""
    port, bucket = served
    store = bucket.moto
    url = re.escape(f"/{bucket.bucket}/files/cut.bin?")
    block = random_bytes(2**20, seed=5)

    def upload_and_cut(since: int) -> list[str]:
        with ftplib.FTP(timeout=20) as client:
            client.connect("127.0.0.1", port)
            client.login(LOGIN, PASSWORD)
            client.voidcmd("TYPE I")
            with client.transfercmd("STOR cut.bin") as data:
                for _ in range(MOST_BLOCKS_BEFORE_A_PART):
                    data.sendall(block)
                    if store.logged(f'"PUT {url}partNumber=1&uploadId=', since):
                        break
                else:
                    pytest.fail(f"no part stored after {MOST_BLOCKS_BEFORE_A_PART} MiB")
                if cut == "reset":
                    linger = struct.pack("ii", 1, 0)
                    data.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                    data.close()  # sends RST
                    replies = [client.getmultiline()]
                else:
                    client.putcmd("ABOR")
                    replies = [client.getmultiline(), client.getmultiline()]
            replies.append(client.voidcmd("NOOP"))
            return replies

    since = await trio.to_thread.run_sync(store.log_end)
    replies = await in_thread(upload_and_cut, since)
    expected = ["426", "200"] if cut == "reset" else ["426", "226", "200"]
    assert [reply[:3] for reply in replies] == expected, replies
    assert not [reply for reply in replies if "transfer complete" in reply], replies
    await in_thread(store.wait_logged, f'"DELETE {url}uploadId=.* 204 ', since)
    assert await trio.to_thread.run_sync(bucket.objects) == {}
    assert await trio.to_thread.run_sync(bucket.open_uploads) == []


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_the_command_line_serves_a_bucket_url(
    moto: MotoServer,  # noqa: F811
    workers: str,
) -> None:
    """``python -m trio_ftp --root s3://bucket/prefix``, credentials and endpoint from the
    environment as an operator sets them, in one process and with two workers."""
    bucket = await trio.to_thread.run_sync(moto.new_bucket)
    args = ["--root", f"s3://{bucket}/drop", "--user", f"{LOGIN}:{PASSWORD}", "--no-anonymous"]
    banner: list[str] = []
    async with serving(*args, "--workers", workers, env=moto.environment, banner=banner) as (
        port,
        _,
    ):
        assert f"Serving s3://{bucket}/drop at ftp://127.0.0.1:" in banner[0], banner

        def run() -> list[bytes]:
            got = []
            for index in range(4):  # with 2 workers, sessions land on both
                with ftplib.FTP(timeout=20) as client:
                    client.connect("127.0.0.1", port)
                    client.login(LOGIN, PASSWORD)
                    client.storbinary(f"STOR f{index}.txt", io.BytesIO(b"x%d" % index))
                    received = io.BytesIO()
                    client.retrbinary(
                        f"RETR f{(index + 3) % 4 if index else 0}.txt", received.write
                    )
                    got.append(received.getvalue())
            return got

        assert await in_thread(run) == [b"x0", b"x0", b"x1", b"x2"]
        objects = Bucket(moto, bucket, "drop").objects()
        assert objects == {f"f{index}.txt": b"x%d" % index for index in range(4)}
