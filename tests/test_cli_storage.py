"""The command line and the TOML config serving a storage URL (``--root s3://...``,
``--storage-options``, per-user URL roots); the real-S3 run is in test_s3_clients.py."""

from __future__ import annotations

import contextlib
import ftplib
import io
import uuid
from pathlib import Path, PurePosixPath

import pytest
import trio
from test_cli import run_cli, serving

from trio_ftp.__main__ import _announce, build_server, parse_args
from trio_ftp.config import hash_password
from trio_ftp.pathio import FsspecPathIO, PathIO


def memory_url() -> str:
    return f"memory://cli-{uuid.uuid4().hex}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--storage-options", "{not json"], "--storage-options: not valid JSON"),
        (["--storage-options", "[1, 2]"], "--storage-options: must be a JSON object"),
        (["--storage-options", "{}"], "--storage-options needs --root to be a storage URL"),
    ],
)
def test_storage_option_errors_are_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    result = run_cli("--root", str(tmp_path), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_unknown_protocol_is_a_one_line_error() -> None:
    result = run_cli("--root", "nosuchprotocol://bucket/x", "--port", "0")
    assert result.returncode == 2
    assert "nosuchprotocol" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_storage_url_root_selects_the_storage_backend() -> None:
    url = memory_url()
    args = parse_args(["--root", url, "--storage-options", '{"skip_instance_cache": true}'])
    assert args.root == url
    assert args.storage_options == {"skip_instance_cache": True}
    server = build_server(args)
    assert issubclass(server.path_io_factory, FsspecPathIO)
    assert server.path_io_factory.root is not None
    assert server.path_io_factory.root.url == url
    # the positional argument works the same way
    assert parse_args([url]).root == url


def test_a_local_root_keeps_the_local_backend(tmp_path: Path) -> None:
    server = build_server(parse_args(["--root", str(tmp_path)]))
    assert server.path_io_factory is PathIO


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "server.toml"
    path.write_text(text)
    return path


def test_toml_takes_a_root_url_storage_options_and_user_roots(tmp_path: Path) -> None:
    url, other = memory_url(), memory_url()
    hashed = hash_password("pw")
    path = config(
        tmp_path,
        f"""
root = "{url}"
storage_options = {{ skip_instance_cache = true }}

[[users]]
login = "below"
password_hash = "{hashed}"
root = "alice"

[[users]]
login = "own"
password_hash = "{hashed}"
root = "{other}/drop"

[[users]]
login = "plain"
password_hash = "{hashed}"
""",
    )
    args = parse_args(["--config", str(path)])
    assert args.root == url
    assert args.storage_options == {"skip_instance_cache": True}
    roots = {user.login: user.base_path for user in args.config_users}
    assert roots["below"] == Path("alice")
    assert roots["plain"] == Path(".")
    assert str(roots["own"]) == f"{other}/drop".replace("://", ":/")
    assert issubclass(build_server(args).path_io_factory, FsspecPathIO)


@pytest.mark.parametrize(
    ("root_line", "user_root", "message"),
    [
        ("", "memory://x", "needs --root to be a storage URL too"),
        ('root = "memory://x"', "/absolute", "relative path below it"),
        ('root = "memory://x"', "../up", "relative path below it"),
    ],
)
def test_toml_user_roots_that_cannot_work_are_refused(
    tmp_path: Path, root_line: str, user_root: str, message: str
) -> None:
    if not root_line:
        root_line = f'root = "{tmp_path}"'
    path = config(
        tmp_path,
        f"""{root_line}
[[users]]
login = "u"
password_hash = "{hash_password("pw")}"
root = "{user_root}"
""",
    )
    result = run_cli("--config", str(path))
    assert result.returncode == 2
    assert message in result.stderr


def test_toml_storage_options_must_be_a_table(tmp_path: Path) -> None:
    path = config(tmp_path, 'root = "memory://x"\nstorage_options = "endpoint"\n')
    result = run_cli("--config", str(path))
    assert result.returncode == 2
    assert "storage_options must be a table" in result.stderr


async def test_the_cli_serves_a_memory_url_and_hides_credentials() -> None:
    url = memory_url().replace("memory://", "memory://key:secret@")
    async with serving("--root", url, "--user", "u:pw", "--no-anonymous") as (port, _):

        def client() -> tuple[bytes, list[str]]:
            with ftplib.FTP(timeout=10) as ftp:
                ftp.connect("127.0.0.1", port)
                ftp.login("u", "pw")
                ftp.mkd("d")
                ftp.storbinary("STOR d/f.txt", io.BytesIO(b"stored"))
                received = io.BytesIO()
                ftp.retrbinary("RETR d/f.txt", received.write)
                return received.getvalue(), ftp.nlst("d")

        data, names = await trio.to_thread.run_sync(client)
    assert data == b"stored"
    assert [PurePosixPath(name).name for name in names] == ["f.txt"]


def test_the_banner_never_shows_url_credentials() -> None:
    args = parse_args(["--root", "memory://key:secret@host/x"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        _announce(args, ("127.0.0.1", 2121))
    assert "secret" not in out.getvalue()
    assert "memory://host/x" in out.getvalue()
