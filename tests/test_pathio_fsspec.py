"""FsspecPathIO over fsspec's memory file system: the object-store backend's logic without
a store server (the real S3 API is tested in test_s3_clients.py), and what the commands
do with a backend that writes whole objects only."""

from __future__ import annotations

import errno
import ftplib
import io
import logging
import stat
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
import pytest
import trio
from botocore.exceptions import ClientError
from conftest import LOGIN, PASSWORD, Running, in_thread
from s3fs.errors import translate_boto_error

from trio_ftp import User
from trio_ftp.errors import PathIOError, reply_for
from trio_ftp.pathio import Capabilities, FsspecPathIO, GuardedPathIO, MemoryPathIO, is_storage_url
from trio_ftp.pathio._fsspec import translate
from trio_ftp.pathio._objectstore import S3Flavour

ROOT = PurePosixPath(".")


@pytest.fixture
def url() -> Iterator[str]:
    """A private prefix of fsspec's (process-wide) memory file system, removed after."""
    name = f"memory://t-{uuid.uuid4().hex}"
    yield name
    file_system = fsspec.filesystem("memory")
    prefix = name.removeprefix("memory:/")
    for key in [key for key in file_system.store if key.startswith(prefix)]:
        del file_system.store[key]
    file_system.pseudo_dirs[:] = [d for d in file_system.pseudo_dirs if not d.startswith(prefix)]


def backend(url: str, **options: Any) -> FsspecPathIO:
    return FsspecPathIO.for_root(url, **options)()


async def real(path_io: FsspecPathIO, relative: str = ".") -> PurePosixPath:
    return await path_io.confine(Path("."), PurePosixPath(relative))


async def put(path_io: FsspecPathIO, relative: str, data: bytes) -> None:
    async with path_io.open(await real(path_io, relative), "wb") as file:
        await file.write(data)


async def get(path_io: FsspecPathIO, relative: str) -> bytes:
    async with path_io.open(await real(path_io, relative), "rb") as file:
        return await file.read()


class Cut(Exception):
    """What interrupts the uploads of :func:`cut_upload`."""


async def cut_upload(path_io: FsspecPathIO, name: str) -> None:
    """Start writing ``name`` and fail halfway."""
    async with path_io.open(await real(path_io, name), "wb") as file:
        await file.write(b"partial")
        raise Cut


# the factory -------------------------------------------------------------------------------------
def test_storage_urls_are_told_from_directories() -> None:
    assert is_storage_url("s3://bucket/prefix")
    assert is_storage_url("memory://")
    assert not is_storage_url("/srv/ftp")
    assert not is_storage_url("relative/dir")
    assert not is_storage_url("C:/data")


def test_for_root_refuses_what_is_not_a_storage_url() -> None:
    with pytest.raises(ValueError, match="not a storage URL"):
        FsspecPathIO.for_root("/srv/ftp")
    with pytest.raises(ValueError, match="nosuchprotocol"):
        FsspecPathIO.for_root("nosuchprotocol://x")
    with pytest.raises(ValueError, match="5 MiB"):
        FsspecPathIO.for_root("memory://x", part_size=1024)


def test_the_bare_class_is_not_a_factory() -> None:
    with pytest.raises(TypeError, match="for_root"):
        FsspecPathIO()


def test_the_root_url_is_shown_without_credentials() -> None:
    factory = FsspecPathIO.for_root("memory://key:secret@host/dir")
    assert factory.root is not None
    assert "secret" not in factory.root.url
    assert "secret" not in repr(factory.root)
    assert "secret" not in repr(factory())


def test_an_object_store_says_what_it_cannot_do(url: str) -> None:
    assert backend(url).capabilities() == Capabilities(
        write_at_offset=False,
        set_mtime=False,
        chmod=False,
        rename_directories=False,
        whole_file_writes=True,
    )
    assert backend(url, recursive_rename=True).capabilities().rename_directories
    # the guard of a session passes the inner backend's answer on
    assert GuardedPathIO(backend(url)).capabilities().write_at_offset is False
    assert MemoryPathIO().capabilities() == Capabilities()


# files and directories ---------------------------------------------------------------------------
async def test_a_new_root_is_an_empty_directory(url: str) -> None:
    path_io = backend(url)
    root = await real(path_io)
    assert await path_io.is_dir(root)
    assert await path_io.names_with_stats(root) == []


async def test_files_round_trip_with_their_facts(url: str) -> None:
    path_io = backend(url)
    await put(path_io, "a file.txt", b"hello")
    await put(path_io, "empty", b"")
    await path_io.mkdir(await real(path_io, "d"))
    await put(path_io, "d/\u00e9t\u00e9.bin", b"x" * 1000)
    assert await get(path_io, "a file.txt") == b"hello"
    assert await get(path_io, "d/\u00e9t\u00e9.bin") == b"x" * 1000
    listing = dict(await path_io.names_with_stats(await real(path_io)))
    assert sorted(listing) == ["a file.txt", "d", "empty"]
    assert stat.S_ISREG(listing["a file.txt"].st_mode)
    assert listing["a file.txt"].st_size == 5
    assert stat.S_ISDIR(listing["d"].st_mode)
    assert listing["empty"].st_size == 0
    assert listing["a file.txt"].st_mtime > 0
    # the unique fact: every object its own number
    assert len({info.st_ino for info in listing.values()}) == 3
    names = [child.name async for child in path_io.list(await real(path_io, "d"))]
    assert names == ["\u00e9t\u00e9.bin"]


async def test_a_listing_of_a_file_is_refused(url: str) -> None:
    path_io = backend(url)
    await put(path_io, "f", b"1")
    with pytest.raises(NotADirectoryError):
        await path_io.names_with_stats(await real(path_io, "f"))
    with pytest.raises(FileNotFoundError):
        await path_io.names_with_stats(await real(path_io, "missing"))


async def test_reads_start_at_the_offset(url: str) -> None:
    path_io = backend(url)
    await put(path_io, "f", bytes(range(200)))
    async with path_io.open(await real(path_io, "f"), "rb") as file:
        assert await file.seek(150) == 150
        assert await file.read(10) == bytes(range(150, 160))


async def test_directories_follow_mkdir_and_rmdir_rules(url: str) -> None:
    path_io = backend(url)
    d = await real(path_io, "d")
    await path_io.mkdir(d)
    with pytest.raises(FileExistsError):
        await path_io.mkdir(d)
    await path_io.mkdir(d, exist_ok=True)
    with pytest.raises(FileNotFoundError):
        await path_io.mkdir(await real(path_io, "no/such/parent"))
    await path_io.mkdir(await real(path_io, "p/q/r"), parents=True)
    assert await path_io.is_dir(await real(path_io, "p/q/r"))
    await put(path_io, "d/f", b"1")
    with pytest.raises(OSError, match="not empty") as refused:
        await path_io.rmdir(d)
    assert refused.value.errno == errno.ENOTEMPTY
    with pytest.raises(IsADirectoryError):
        await path_io.unlink(d)
    with pytest.raises(NotADirectoryError):
        await path_io.rmdir(await real(path_io, "d/f"))
    await path_io.unlink(await real(path_io, "d/f"))
    with pytest.raises(FileNotFoundError):
        await path_io.unlink(await real(path_io, "d/f"))
    await path_io.rmdir(d)
    assert not await path_io.exists(d)
    with pytest.raises(FileExistsError):
        await path_io.mkdir(await real(path_io, "p/q"))


async def test_files_are_written_whole(url: str) -> None:
    path_io = backend(url)
    await put(path_io, "f", b"old")
    for mode in ("ab", "r+b"):
        with pytest.raises(OSError, match="written whole") as refused:
            await path_io.open(await real(path_io, "f"), mode)
        assert refused.value.errno == errno.EOPNOTSUPP
    with pytest.raises(FileExistsError):
        await path_io.open(await real(path_io, "f"), "xb")
    with pytest.raises(IsADirectoryError):
        await path_io.open(await real(path_io), "rb")
    with pytest.raises(FileNotFoundError):
        await path_io.open(await real(path_io, "missing/f"), "wb")
    with pytest.raises(FileNotFoundError):
        await path_io.open(await real(path_io, "missing"), "rb")


async def test_a_failed_upload_leaves_nothing_and_keeps_the_old_object(url: str) -> None:
    path_io = backend(url)
    await put(path_io, "kept", b"old contents")

    for name in ("kept", "new"):
        with pytest.raises(Cut):
            await cut_upload(path_io, name)
    assert await get(path_io, "kept") == b"old contents"
    assert not await path_io.exists(await real(path_io, "new"))
    # ...and a cancelled one (ABOR) too
    with trio.CancelScope() as scope:
        async with path_io.open(await real(path_io, "new"), "wb") as file:
            await file.write(b"partial")
            scope.cancel()
            await trio.sleep_forever()
    assert not await path_io.exists(await real(path_io, "new"))


async def test_renames(url: str) -> None:
    path_io = backend(url)
    await put(path_io, "a", b"A")
    await path_io.rename(await real(path_io, "a"), await real(path_io, "b"))
    assert not await path_io.exists(await real(path_io, "a"))
    assert await get(path_io, "b") == b"A"
    await path_io.rename(await real(path_io, "b"), await real(path_io, "b"))  # no-op
    await path_io.mkdir(await real(path_io, "empty"))
    await path_io.rename(await real(path_io, "empty"), await real(path_io, "moved"))
    assert await path_io.is_dir(await real(path_io, "moved"))
    assert not await path_io.exists(await real(path_io, "empty"))
    await path_io.mkdir(await real(path_io, "full"))
    await put(path_io, "full/f", b"F")
    with pytest.raises(OSError, match="non-empty") as refused:
        await path_io.rename(await real(path_io, "full"), await real(path_io, "elsewhere"))
    assert refused.value.errno == errno.EOPNOTSUPP
    with pytest.raises(IsADirectoryError):
        await path_io.rename(await real(path_io, "b"), await real(path_io, "moved"))
    with pytest.raises(FileNotFoundError):
        await path_io.rename(await real(path_io, "gone"), await real(path_io, "x"))
    with pytest.raises(FileNotFoundError):
        await path_io.rename(await real(path_io, "b"), await real(path_io, "no/dir/b"))


async def test_a_recursive_rename_moves_a_tree_when_allowed(url: str) -> None:
    path_io = backend(url, recursive_rename=True)
    await path_io.mkdir(await real(path_io, "full/sub"), parents=True)
    await put(path_io, "full/f", b"F")
    await put(path_io, "full/sub/g", b"G")
    with pytest.raises(OSError, match="into itself") as refused:
        await path_io.rename(await real(path_io, "full"), await real(path_io, "full/inner"))
    assert refused.value.errno == errno.EINVAL
    await path_io.rename(await real(path_io, "full"), await real(path_io, "moved"))
    assert await get(path_io, "moved/f") == b"F"
    assert await get(path_io, "moved/sub/g") == b"G"
    assert not await path_io.exists(await real(path_io, "full"))


# roots -------------------------------------------------------------------------------------------
async def test_user_roots_below_the_root_or_as_urls(url: str) -> None:
    path_io = backend(url)
    other = f"memory://o-{uuid.uuid4().hex}"
    below = await path_io.confine(Path("alice"), PurePosixPath("f"))
    assert below == (await real(path_io)) / "alice" / "f"
    own = await path_io.confine(Path(other), PurePosixPath("f"))  # Path() keeps "memory:/o-..."
    async with path_io.open(own.parent / "x", "wb") as file:
        await file.write(b"X")
    assert fsspec.filesystem("memory").cat(other.removeprefix("memory:/") + "/x") == b"X"
    with pytest.raises(ValueError, match=r"'\.\.'"):
        await path_io.confine(Path("../escape"), PurePosixPath("f"))
    with pytest.raises(ValueError, match="normalized relative path"):
        await path_io.confine(Path("."), PurePosixPath("../f"))


# errors ------------------------------------------------------------------------------------------
def s3_error(code: str, status: int = 400) -> Exception:
    """The exception s3fs raises for an S3 error reply with this code (real classes)."""
    response = {"Error": {"Code": code, "Message": f"{code} happened"}}
    response["ResponseMetadata"] = {"HTTPStatusCode": status}  # type: ignore[assignment]
    return translate_boto_error(ClientError(response, "GetObject"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "reply"),
    [
        (s3_error("NoSuchKey", 404), "550"),
        (s3_error("AccessDenied", 403), "550"),
        (s3_error("SlowDown", 503), "451"),
        (s3_error("ServiceUnavailable", 503), "451"),
        (s3_error("RequestTimeout", 400), "451"),
        (s3_error("InternalError", 500), "451"),
        (ConnectionResetError(errno.ECONNRESET, "reset"), "451"),
        (RuntimeError("an HTTP client's own error"), "451"),
    ],
)
def test_store_errors_map_to_ftp_replies(error: Exception, reply: str) -> None:
    assert reply_for(PathIOError(translate(error)))[0] == reply


async def test_a_store_failure_is_logged_once_and_answered_451(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    path_io = backend(url)

    def failing() -> None:
        raise s3_error("SlowDown", 503)

    caplog.set_level(logging.ERROR, "trio_ftp.pathio")
    for _ in range(3):
        with pytest.raises(OSError, match="storage busy") as raised:
            await path_io._run(failing)
        assert raised.value.errno == errno.EAGAIN
    assert len([r for r in caplog.records if "object store" in r.getMessage()]) == 1

    def not_found() -> None:
        raise s3_error("NoSuchKey", 404)

    caplog.clear()
    with pytest.raises(FileNotFoundError):
        await path_io._run(not_found)
    assert caplog.records == []  # an answer about the path, not a failure of the store


def test_the_etag_is_an_md5_only_for_a_plain_single_part_upload() -> None:
    flavour = S3Flavour()
    md5 = "5d41402abc4b2a76b9719d911017c592"
    assert flavour.stored_digest({"ETag": f'"{md5}"'}, "MD5") == md5
    assert flavour.stored_digest({"ETag": f'"{md5}"', "ServerSideEncryption": "AES256"}, "MD5")
    assert flavour.stored_digest({"ETag": f'"{md5}"'}, "SHA-256") is None
    assert flavour.stored_digest({"ETag": f'"{md5}-3"'}, "MD5") is None
    assert (
        flavour.stored_digest({"ETag": f'"{md5}"', "ServerSideEncryption": "aws:kms"}, "MD5")
        is None
    )
    assert (
        flavour.stored_digest({"ETag": f'"{md5}"', "SSECustomerAlgorithm": "AES256"}, "MD5") is None
    )


# the commands over a real socket -----------------------------------------------------------------
@pytest.fixture
async def serve_store(
    start_server: Callable[..., Awaitable[Running]], url: str
) -> Callable[..., Awaitable[Running]]:
    async def start(**kwargs: Any) -> Running:
        factory = FsspecPathIO.for_root(url, **kwargs.pop("backend", {}))
        users = [User(LOGIN, PASSWORD, base_path=".")]
        return await start_server(users, path_io_factory=factory, **kwargs)

    return start


def session(running: Running) -> ftplib.FTP:
    return running.ftp()


async def test_feat_offers_only_what_the_store_can_do(
    serve_store: Callable[..., Awaitable[Running]],
) -> None:
    running = await serve_store()

    def feat() -> str:
        with session(running) as client:
            return client.sendcmd("FEAT")

    text = await in_thread(feat)
    assert "MFMT" not in text
    assert "REST STREAM" in text  # REST + RETR still resumes downloads
    assert "SIZE" in text
    assert "MDTM" in text


async def test_appends_resumed_uploads_times_and_modes_are_refused_clearly(
    serve_store: Callable[..., Awaitable[Running]],
) -> None:
    running = await serve_store()

    def run() -> list[str]:
        replies = []
        with session(running) as client:
            client.storbinary("STOR f", io.BytesIO(b"data"))
            for call in (
                lambda: client.storbinary("APPE f", io.BytesIO(b"more")),
                lambda: client.storbinary("STOR f", io.BytesIO(b"more"), rest=2),
                lambda: client.sendcmd("MFMT 20200101000000 f"),
                lambda: client.sendcmd("SITE CHMOD 600 f"),
            ):
                try:
                    replies.append(str(call()))
                except ftplib.Error as exc:
                    replies.append(str(exc))
            data = io.BytesIO()
            client.retrbinary("RETR f", data.write)
            replies.append(data.getvalue().decode())
        return replies

    appe, rest_stor, mfmt, chmod, contents = await in_thread(run)
    assert appe.startswith("550 APPE is not supported by this storage")
    assert rest_stor.startswith("550 REST + STOR is not supported by this storage")
    assert mfmt.startswith("502")
    assert chmod.startswith("502")
    assert contents == "data"  # nothing was appended or overwritten


async def test_a_non_empty_directory_rename_is_refused_at_rnfr(
    serve_store: Callable[..., Awaitable[Running]],
) -> None:
    running = await serve_store()

    def run() -> tuple[str, str, list[str]]:
        with session(running) as client:
            client.mkd("full")
            client.storbinary("STOR full/f", io.BytesIO(b"1"))
            client.mkd("empty")
            try:
                client.sendcmd("RNFR full")
                refused = "accepted"
            except ftplib.error_perm as exc:
                refused = str(exc)
            moved = client.rename("empty", "moved")
            return refused, moved, sorted(client.nlst())

    refused, moved, names = await in_thread(run)
    assert refused.startswith("550 renaming a directory that is not empty is not supported")
    assert moved.startswith("250")
    assert names == ["full", "moved"]


async def test_mlsd_offers_no_append_and_hash_and_atomic_uploads_work(
    serve_store: Callable[..., Awaitable[Running]],
) -> None:
    running = await serve_store(atomic_uploads=True)

    def run() -> tuple[list[str], str, list[str]]:
        with session(running) as client:
            client.storbinary("STOR f", io.BytesIO(b"hello"))
            client.storbinary("STOR f", io.BytesIO(b"hello"))  # replaces, no temporary left
            facts = [line for line in client.mlsd(facts=["perm"])]
            client.sendcmd("OPTS HASH MD5")
            digest = client.sendcmd("HASH f")
            return [f"{name} {facts['perm']}" for name, facts in facts], digest, client.nlst()

    facts, digest, names = await in_thread(run)
    assert "f dfrw" in facts  # no "a": nothing can be appended
    assert digest == "213 MD5 0-4 5d41402abc4b2a76b9719d911017c592 f"
    assert names == ["f"]  # no .upload-* temporary beside it


# any other fsspec file system: the generic steps, on fsspec's local file system --------------
async def test_a_local_fsspec_url_goes_through_the_generic_steps(tmp_path: Path) -> None:
    path_io = FsspecPathIO.for_root(f"file://{tmp_path}", recursive_rename=True)()
    await put(path_io, "kept", b"old")

    for name in ("kept", "new"):
        with pytest.raises(Cut):
            await cut_upload(path_io, name)
    assert (tmp_path / "kept").read_bytes() == b"old"
    left = sorted(path.name for path in await trio.Path(tmp_path).iterdir())
    assert left == ["kept"]  # no temporary left
    await put(path_io, "kept", b"new contents")
    assert (tmp_path / "kept").read_bytes() == b"new contents"
    await path_io.mkdir(await real(path_io, "d/e"), parents=True)
    assert (tmp_path / "d" / "e").is_dir()
    await put(path_io, "d/e/f", b"F")
    await path_io.rename(await real(path_io, "d"), await real(path_io, "moved"))
    assert (tmp_path / "moved" / "e" / "f").read_bytes() == b"F"
    assert not (tmp_path / "d").exists()
    await path_io.unlink(await real(path_io, "moved/e/f"))
    await path_io.rmdir(await real(path_io, "moved/e"))
    assert not (tmp_path / "moved" / "e").exists()
    assert await get(path_io, "kept") == b"new contents"
    assert [n for n, _ in await path_io.names_with_stats(await real(path_io))] == ["kept", "moved"]
