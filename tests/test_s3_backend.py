"""FsspecPathIO against a real S3 API (moto's server, through s3fs): directories as
markers and prefixes, whole-object uploads that a failure leaves no trace of, range reads,
renames, HASH from the ETag, and listings of many objects."""

from __future__ import annotations

import contextlib
import ftplib
import hashlib
import io
import re
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import s3fs
import trio
from conftest import LOGIN, PASSWORD, in_thread, random_bytes
from moto_server import MotoServer, moto, running_moto  # noqa: F401  (the fixture)

from trio_ftp import Server, User
from trio_ftp.pathio import FsspecPathIO


@dataclass
class S3Served:
    """A server over ``s3://bucket/prefix`` and how to reach and check it."""

    server: Server
    port: int
    bucket: str
    prefix: str
    moto: MotoServer

    def ftp(self) -> ftplib.FTP:
        client = ftplib.FTP(timeout=20)
        client.connect("127.0.0.1", self.port)
        client.login(LOGIN, PASSWORD)
        return client

    def key(self, name: str) -> str:
        return f"{self.bucket}/{self.prefix}/{name}"

    def store(self) -> s3fs.S3FileSystem:
        return self.moto.file_system()

    def keys(self) -> list[str]:
        """Every key under the prefix, markers included."""
        listed = self.store().call_s3("list_objects_v2", Bucket=self.bucket, Prefix=self.prefix)
        return sorted(str(item["Key"]) for item in listed.get("Contents", []))

    def open_uploads(self) -> list[Any]:
        found = self.store().call_s3("list_multipart_uploads", Bucket=self.bucket)
        return list(found.get("Uploads", []))


@pytest.fixture
async def serve_s3(
    nursery: trio.Nursery,
    moto: MotoServer,  # noqa: F811
) -> AsyncIterator[Callable[..., Awaitable[S3Served]]]:
    servers: list[Server] = []

    async def start(**backend: Any) -> S3Served:
        bucket = await trio.to_thread.run_sync(moto.new_bucket)
        factory = FsspecPathIO.for_root(
            f"s3://{bucket}/files", storage_options=moto.storage_options, **backend
        )
        server = Server([User(LOGIN, PASSWORD, base_path=".")], path_io_factory=factory)
        _, port = await nursery.start(server.serve, "127.0.0.1", 0)
        servers.append(server)
        return S3Served(server, port, bucket, "files", moto)

    yield start
    with trio.fail_after(10):
        for server in servers:
            await server.close()


@pytest.mark.slow
async def test_directories_are_markers_and_prefixes(
    serve_s3: Callable[..., Awaitable[S3Served]],
) -> None:
    served = await serve_s3()
    store = served.store()
    # A prefix that has objects but no marker, written by another tool.
    store.pipe_file(served.key("exports/2026/report.csv"), b"a,b\n")

    def run() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        with served.ftp() as client:
            seen["mkd"] = client.mkd("incoming")
            client.cwd("/exports/2026")  # no marker object anywhere on the way
            seen["pwd"] = client.pwd()
            seen["names"] = client.nlst()
            client.cwd("/")
            client.storbinary("STOR incoming/a.txt", io.BytesIO(b"A"))
            try:
                client.rmd("incoming")
            except ftplib.error_perm as exc:
                seen["rmd full"] = str(exc)
            client.delete("incoming/a.txt")
            seen["rmd"] = client.rmd("incoming")
            seen["root"] = sorted(client.nlst())
        return seen

    seen = await in_thread(run)
    assert seen["mkd"] == "/incoming"
    assert seen["pwd"] == "/exports/2026"
    assert seen["names"] == ["report.csv"]
    assert seen["rmd full"].startswith("550")
    assert seen["rmd"].startswith("250")
    assert seen["root"] == ["exports"]
    # MKD wrote a "name/" marker, and RMD removed it
    assert served.keys() == [f"{served.prefix}/exports/2026/report.csv"]


async def test_mkd_writes_the_marker_object(serve_s3: Callable[..., Awaitable[S3Served]]) -> None:
    served = await serve_s3()

    def run() -> None:
        with served.ftp() as client:
            client.mkd("empty dir")

    await in_thread(run)
    assert served.keys() == [f"{served.prefix}/empty dir/"]


async def test_a_resumed_download_reads_from_the_offset(
    serve_s3: Callable[..., Awaitable[S3Served]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """REST + RETR asks the store for the bytes from the offset on, in one streamed GET,
    and for nothing before them."""
    served = await serve_s3()
    content = random_bytes(3 * 1024 * 1024)
    served.store().pipe_file(served.key("big.bin"), content)
    gets: list[dict[str, Any]] = []
    original = s3fs.S3FileSystem._call_s3

    async def recording(self: s3fs.S3FileSystem, method: str, *args: Any, **kwargs: Any) -> Any:
        if method == "get_object":
            gets.append(kwargs)
        return await original(self, method, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", recording)
    offset = 2 * 1024 * 1024 + 5

    def run(rest: int | None) -> bytes:
        received = io.BytesIO()
        with served.ftp() as client:
            client.retrbinary("RETR big.bin", received.write, rest=rest)
        return received.getvalue()

    assert await in_thread(run, offset) == content[offset:]
    assert [get.get("Range") for get in gets] == [f"bytes={offset}-"]
    gets.clear()
    assert await in_thread(run, None) == content
    assert [get.get("Range") for get in gets] == [None]  # the whole object, one request
    gets.clear()
    assert await in_thread(run, len(content)) == b""  # at the end: nothing to ask for
    assert gets == []


@pytest.mark.slow
async def test_renames_copy_then_delete(serve_s3: Callable[..., Awaitable[S3Served]]) -> None:
    served = await serve_s3(recursive_rename=True)
    store = served.store()
    store.pipe_file(served.key("a.txt"), b"A")
    store.pipe_file(served.key("tree/sub/b.txt"), b"B")

    def run() -> None:
        with served.ftp() as client:
            client.rename("a.txt", "renamed.txt")
            client.mkd("tree/empty")
            client.rename("tree", "moved")

    await in_thread(run)
    assert served.keys() == [
        f"{served.prefix}/moved/",
        f"{served.prefix}/moved/empty/",
        f"{served.prefix}/moved/sub/b.txt",
        f"{served.prefix}/renamed.txt",
    ]
    assert store.cat_file(served.key("renamed.txt")) == b"A"
    assert store.cat_file(served.key("moved/sub/b.txt")) == b"B"


async def test_hash_md5_is_the_etag_without_reading_the_object(
    serve_s3: Callable[..., Awaitable[S3Served]],
) -> None:
    served = await serve_s3()
    content = random_bytes(200_000)

    def run() -> tuple[str, str]:
        with served.ftp() as client:
            client.storbinary("STOR f.bin", io.BytesIO(content))
            before = served.moto.log()
            client.sendcmd("OPTS HASH MD5")
            md5 = client.sendcmd("HASH f.bin")
            gets = [
                line for line in served.moto.log()[len(before) :].splitlines() if '"GET ' in line
            ]
            client.sendcmd("OPTS HASH SHA-256")
            sha = client.sendcmd("HASH f.bin")
            return md5 + "\n" + "\n".join(gets), sha

    md5_and_gets, sha = await in_thread(run)
    md5, *gets = md5_and_gets.split("\n")
    assert md5 == f"213 MD5 0-{len(content) - 1} {hashlib.md5(content).hexdigest()} f.bin"
    assert not [line for line in gets if "f.bin" in line and "HEAD" not in line]
    assert sha.split()[3] == hashlib.sha256(content).hexdigest()  # streamed


@pytest.mark.slow
async def test_a_listing_pages_through_ten_thousand_objects(
    serve_s3: Callable[..., Awaitable[S3Served]],
) -> None:
    served = await serve_s3()
    store = served.store()
    names = [f"f{i:05d}" for i in range(10_000)]
    await trio.to_thread.run_sync(
        lambda: store.pipe({served.key(f"many/{name}"): b"x" * (len(name) % 7) for name in names})
    )

    def run() -> tuple[list[str], list[str]]:
        with served.ftp() as client:
            mlsd = list(client.mlsd("many", facts=["size", "type"]))
            lines: list[str] = []
            client.retrlines("LIST many", lines.append)
        return [f"{name} {facts['size']}" for name, facts in mlsd if facts["type"] == "file"], lines

    mlsd, lines = await in_thread(run)
    assert mlsd == [f"{name} {len(name) % 7}" for name in names]
    assert len(lines) == 10_000
    assert re.search(r"\s6 \w{3} [ \d]\d [ \d]\d:\d\d f09999$", lines[-1])


@pytest.mark.slow
async def test_a_64_mib_upload_is_multipart_and_whole(
    serve_s3: Callable[..., Awaitable[S3Served]],
) -> None:
    served = await serve_s3()
    content = random_bytes(64 * 2**20)

    def run() -> bytes:
        received = io.BytesIO()
        with served.ftp() as client:
            client.storbinary("STOR big.bin", io.BytesIO(content), blocksize=1024 * 1024)
            client.retrbinary("RETR big.bin", received.write)
        return received.getvalue()

    assert await in_thread(run) == content
    info = served.store().info(served.key("big.bin"))
    assert info["size"] == len(content)
    assert re.fullmatch(r'"?[0-9a-f]{32}-8"?', info["ETag"])  # 8 parts of 8 MiB
    assert served.open_uploads() == []


async def test_a_streamed_download_seeks_anywhere(moto: MotoServer) -> None:  # noqa: F811
    """The rare paths of the streamed GET: a seek mid-stream starts a new one, a seek to
    the end or past it reads nothing, a negative position is refused."""
    bucket = await trio.to_thread.run_sync(moto.new_bucket)
    content = random_bytes(100_000)
    moto.file_system().pipe_file(f"{bucket}/x/f", content)
    path_io = FsspecPathIO.for_root(f"s3://{bucket}/x", storage_options=moto.storage_options)()
    real = await path_io.confine(Path("."), PurePosixPath("f"))
    async with path_io.open(real, "rb") as file:
        assert await file.read(10) == content[:10]
        assert await file.seek(50_000) == 50_000
        assert await file.read(10) == content[50_000:50_010]
        assert await file.seek(-10, io.SEEK_CUR) == 50_000
        assert await file.read() == content[50_000:]
        assert await file.seek(-5, io.SEEK_END) == len(content) - 5
        assert await file.read(100) == content[-5:]
        assert await file.read(100) == b""
        assert await file.seek(len(content) + 10) == len(content) + 10
        assert await file.read(10) == b""
        with pytest.raises(OSError, match="negative"):
            await file.seek(-1)


@contextlib.contextmanager
def paused(server: MotoServer) -> Iterator[None]:
    """The store stops answering (SIGSTOP) until the block ends (SIGCONT)."""
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        server.process.send_signal(signal.SIGCONT)


async def serve_private(
    nursery: trio.Nursery, store: MotoServer, **options: Any
) -> tuple[int, str]:
    """trio_ftp over a fresh bucket of ``store`` (a moto of this test alone)."""
    bucket = await trio.to_thread.run_sync(store.new_bucket)
    factory = FsspecPathIO.for_root(
        f"s3://{bucket}/files", storage_options=store.storage_options, part_size=5 * 2**20
    )
    server = Server([User(LOGIN, PASSWORD, base_path=".")], path_io_factory=factory, **options)
    _, port = await nursery.start(server.serve, "127.0.0.1", 0)
    return port, bucket


@pytest.mark.slow
async def test_a_stalled_store_holds_the_client_back(nursery: trio.Nursery, tmp_path: Path) -> None:
    """While the store does not take a part, the server does not read on: the client's
    sends stop after a part and the sockets' buffers, not after the whole file."""
    total = 64 * 2**20
    with running_moto(tmp_path) as store:
        port, bucket = await serve_private(nursery, store)

        def upload() -> tuple[int, str]:
            with ftplib.FTP(timeout=30) as client:
                client.connect("127.0.0.1", port)
                client.login(LOGIN, PASSWORD)
                client.voidcmd("TYPE I")
                data = client.transfercmd("STOR big.bin")
                block = b"\x00" * 2**16
                sent_while_stalled = 0
                with paused(store):
                    data.settimeout(2.0)
                    try:
                        while sent_while_stalled < total:
                            data.sendall(block)
                            sent_while_stalled += len(block)
                    except TimeoutError:
                        pass  # the client is held back
                data.settimeout(30)
                rest = total - sent_while_stalled
                while rest > 0:  # the store answers again: the upload goes on
                    data.sendall(block[: min(rest, len(block))])
                    rest -= min(rest, len(block))
                data.close()
                return sent_while_stalled, client.voidresp()

        sent_while_stalled, reply = await in_thread(upload)
        assert sent_while_stalled < 32 * 2**20, sent_while_stalled  # not the whole 64 MiB
        assert reply.startswith("226")
        info = store.file_system().info(f"{bucket}/files/big.bin")
        assert info["size"] == total


@pytest.mark.slow
async def test_a_store_that_times_out_gets_451_and_the_session_goes_on(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    with running_moto(tmp_path) as store:
        port, _ = await serve_private(nursery, store, path_timeout=1.0)

        def run() -> tuple[str, str, list[str]]:
            with ftplib.FTP(timeout=30) as client:
                client.connect("127.0.0.1", port)
                client.login(LOGIN, PASSWORD)
                with paused(store):
                    try:
                        client.mkd("d")
                        stalled = "no error"
                    except ftplib.error_temp as exc:
                        stalled = str(exc)
                    noop = client.voidcmd("NOOP")
                client.mkd("e")  # (the abandoned MKD d may still land meanwhile)
                return stalled, noop, client.nlst()

        stalled, noop, names = await in_thread(run)
        assert stalled.startswith("451"), stalled
        assert noop.startswith("200")
        assert "e" in names
