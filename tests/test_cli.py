"""The command line: parser and builder unit tests, and a few real subprocesses."""

from __future__ import annotations

import ftplib
import io
import os
import signal
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from trio_ftp.__main__ import build_server, parse_args
from trio_ftp.config import HashedUserManager, hash_password, verify_password

PYTHON = [sys.executable, "-m", "trio_ftp"]


async def in_thread(fn: Callable[[], Any]) -> Any:
    return await trio.to_thread.run_sync(fn)


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PYTHON, *args], input=stdin, capture_output=True, text=True, timeout=20, check=False
    )


@asynccontextmanager
async def serving(
    *args: str, env: dict[str, str] | None = None, banner: list[str] | None = None
) -> AsyncIterator[tuple[int, trio.Process]]:
    """Run the CLI on port 0 (``env``: variables added to ours); yield the port from its
    first stdout line (appended to ``banner`` when given) and the process."""
    process = await trio.lowlevel.open_process(
        [*PYTHON, *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=None if env is None else {**os.environ, **env},
    )
    assert process.stdout is not None
    try:
        with trio.fail_after(15):
            line = b""
            while not line.endswith(b"\n"):
                chunk = await process.stdout.receive_some(1)
                assert chunk, "the CLI ended before printing its address"
                line += chunk
        if banner is not None:
            banner.append(line.decode())
        yield int(line.decode().split("://127.0.0.1:")[1].split("/")[0]), process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            with trio.fail_after(10):
                await process.wait()
        await process.stdout.aclose()


def test_help_lists_every_option_with_defaults():
    """--help exits 0 and shows the options and their defaults."""
    result = run_cli("--help")
    assert result.returncode == 0
    for option in [
        "--root", "--host", "--port", "--user", "--anonymous-writable", "--no-anonymous",
        "--tls-cert", "--tls-key", "--implicit-tls", "--tls-required", "--tls-self-signed",
        "--tls-ca-out", "--data-ports", "--passive-address", "--max-download-rate",
        "--max-upload-rate", "--max-connections", "--max-connections-per-ip", "--idle-timeout",
        "--log-level", "--grace", "--config",
    ]:  # fmt: skip
        assert option in result.stdout
    assert "(default: 2121)" in result.stdout
    assert "(default: 127.0.0.1)" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--bogus"],
        ["--port", "70000"],
        ["--data-ports", "9-3"],
        ["--user", "nopassword"],
        ["--max-download-rate", "-5"],
        ["--log-level", "LOUD"],
        ["--no-anonymous"],
        ["--tls-required"],
        ["--tls-cert", "/does/not/exist.pem"],
        ["/does/not/exist"],
    ],
)
def test_bad_options_are_one_line_errors(args):
    """Bad options: exit status 2, one line on stderr, no traceback."""
    result = run_cli(*args, "--port", "0")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("trio-ftp: error:")


@pytest.mark.parametrize(
    "text", ["port = [", "colour = 'blue'", "port = 'x'", "[[users]]\nlogin = 'a'"]
)
def test_bad_config_file_is_a_one_line_error(tmp_path, text):
    """A config file that is not TOML, or has an unknown key: one line, exit status 2."""
    config = tmp_path / "c.toml"
    config.write_text(text)
    result = run_cli("--config", str(config))
    assert result.returncode == 2, (text, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_parser_and_builder_pass_every_limit(tmp_path):
    """Every limit and network option reaches the Server."""
    args = parse_args(
        [
            "--root", str(tmp_path), "--max-download-rate", "1000", "--max-upload-rate", "2000",
            "--max-download-rate-per-connection", "300", "--max-upload-rate-per-connection",
            "400", "--max-connections", "7", "--max-connections-per-ip", "3",
            "--idle-timeout", "12", "--data-ports", "50000-50010", "--passive-address",
            "192.0.2.1", "--grace", "2.5", "--log-level", "debug",
        ]
    )  # fmt: skip
    assert args.grace == 2.5
    assert args.log_level == "DEBUG"
    server = build_server(args)
    assert server.write_speed_limit == 1000
    assert server.read_speed_limit == 2000
    assert server.write_speed_limit_per_connection == 300
    assert server.read_speed_limit_per_connection == 400
    assert server.maximum_connections_per_ip == 3
    assert server.idle_timeout == 12
    assert server.passive_address == "192.0.2.1"
    assert isinstance(server.user_manager, HashedUserManager)
    assert server.available_connections.maximum_value == 7


def test_config_values_are_defaults_the_command_line_overrides(tmp_path):
    """--config sets options; the command line wins over it."""
    config = tmp_path / "c.toml"
    config.write_text(
        f"root = '{tmp_path}'\nport = 2999\nmax-download-rate = 512\n"
        "data_ports = [50000, 50005]\nno_anonymous = true\n"
        f"[[users]]\nlogin = 'carol'\npassword_hash = '{hash_password('pw')}'\nwritable = false\n"
    )
    args = parse_args(["--config", str(config), "--port", "3000"])
    assert args.port == 3000
    assert args.max_download_rate == 512
    assert args.data_ports == range(50000, 50006)
    assert args.root == tmp_path.resolve()
    assert [user.login for user in build_server(args).user_manager.users] == ["carol"]


def test_anonymous_modes(tmp_path):
    """Anonymous is read-only by default, writable on request, absent with --no-anonymous."""

    def anonymous(*extra: str) -> list[bool]:
        server = build_server(parse_args([str(tmp_path), "--user", "a:b", *extra]))
        return [u.permissions[0].writable for u in server.user_manager.users if u.login is None]

    assert anonymous() == [False]
    assert anonymous("--anonymous-writable") == [True]
    assert anonymous("--no-anonymous") == []


def test_password_hash_round_trip():
    """hash_password makes a salted scrypt hash that verifies only the right password."""
    encoded = hash_password("s3cret")
    assert encoded.startswith("scrypt$16384$8$1$")
    assert encoded != hash_password("s3cret")
    assert verify_password("s3cret", encoded)
    assert not verify_password("wrong", encoded)
    assert not verify_password("s3cret", "scrypt$garbage")


def test_hash_password_command_reads_stdin():
    """`hash-password` prints a hash of the password read from stdin."""
    result = run_cli("hash-password", stdin="hunter2\n")
    assert result.returncode == 0, result.stderr
    encoded = result.stdout.strip()
    assert verify_password("hunter2", encoded)
    assert "hunter2" not in result.stdout


async def test_users_upload_and_anonymous_cannot(tmp_path):
    """--user alice:pw --user bob:pw2: both log in and upload; anonymous cannot write."""
    async with serving(str(tmp_path), "--user", "alice:pw", "--user", "bob:pw2") as (port, _):

        def client() -> None:
            for login, password in [("alice", "pw"), ("bob", "pw2")]:
                with ftplib.FTP() as ftp:
                    ftp.connect("127.0.0.1", port, timeout=10)
                    ftp.login(login, password)
                    ftp.storbinary(f"STOR {login}.txt", io.BytesIO(login.encode()))
            with ftplib.FTP() as ftp:
                ftp.connect("127.0.0.1", port, timeout=10)
                ftp.login()
                with pytest.raises(ftplib.error_perm, match="553"):
                    ftp.storbinary("STOR anon.txt", io.BytesIO(b"x"))

        await in_thread(client)
    assert (tmp_path / "alice.txt").read_bytes() == b"alice"
    assert (tmp_path / "bob.txt").read_bytes() == b"bob"
    assert not (tmp_path / "anon.txt").exists()


@pytest.mark.slow  # the wrong password costs the CLI's 1 s login_failure_delay
async def test_config_file_user_with_hash(tmp_path):
    """A [[users]] table with a password_hash logs in; a wrong password is refused."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "f.txt").write_bytes(b"mine")
    config = tmp_path / "c.toml"
    config.write_text(
        f"no_anonymous = true\n[[users]]\nlogin = 'dave'\nroot = 'home'\n"
        f"password_hash = '{hash_password('right')}'\n"
    )
    async with serving("--config", str(config)) as (port, _):

        def client() -> bytes:
            with ftplib.FTP() as ftp:
                ftp.connect("127.0.0.1", port, timeout=10)
                with pytest.raises(ftplib.error_perm, match="530"):
                    ftp.login("dave", "wrong")
            with ftplib.FTP() as ftp:
                ftp.connect("127.0.0.1", port, timeout=10)
                ftp.login("dave", "right")
                out = io.BytesIO()
                ftp.retrbinary("RETR f.txt", out.write)
                return out.getvalue()

        assert await in_thread(client) == b"mine"


async def test_self_signed_tls_and_sigint_exits_zero(tmp_path):
    """--tls-self-signed serves explicit FTPS trusted via the written CA; SIGINT exits 0."""
    (tmp_path / "hello.txt").write_bytes(b"tls hello")
    ca_file = tmp_path / "ca.pem"
    args = [str(tmp_path), "--tls-self-signed", "--tls-ca-out", str(ca_file), "--tls-required"]
    async with serving(*args) as (port, process):
        context = ssl.create_default_context(cafile=str(ca_file))

        def client() -> bytes:
            ftp = ftplib.FTP_TLS(context=context, timeout=10)
            ftp.connect("127.0.0.1", port)
            ftp.auth()
            ftp.login()
            ftp.prot_p()
            out = io.BytesIO()
            ftp.retrbinary("RETR hello.txt", out.write)
            ftp.quit()
            return out.getvalue()

        assert await in_thread(client) == b"tls hello"
        process.send_signal(signal.SIGINT)
        with trio.fail_after(10):
            assert await process.wait() == 0


def test_port_in_use_is_a_one_line_error(tmp_path):
    """A port already taken: one line on stderr, exit status 1."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*PYTHON, str(tmp_path), "--port", str(port), "--log-level", "WARNING"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "cannot listen" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_module_path_is_served(tmp_path):
    """The positional directory and --root name the same thing."""
    assert parse_args([str(tmp_path)]).root == parse_args(["--root", str(tmp_path)]).root
    assert Path(parse_args([]).root) == Path.cwd().resolve()


def test_version_and_every_option_has_help() -> None:
    """--version prints the version; --help gives every option a default or a description."""
    import trio_ftp

    version = subprocess.run(
        [sys.executable, "-m", "trio_ftp", "--version"], capture_output=True, timeout=30
    )
    assert version.returncode == 0
    assert version.stdout.decode().strip() == f"trio_ftp {trio_ftp.__version__}"
    text = subprocess.run(
        [sys.executable, "-m", "trio_ftp", "--help"], capture_output=True, timeout=30
    ).stdout.decode()
    assert "control connections at once" in text


async def test_sigint_waits_for_transfers_and_second_sigint_forces(tmp_path):
    """First SIGINT: a running (rate-limited) download may go on for the grace period;
    a second SIGINT stops at once, and the process exits 0."""
    (tmp_path / "slow.bin").write_bytes(b"s" * 2_000_000)  # 20 s at the limit below
    args = [str(tmp_path), "--max-download-rate", "100000", "--grace", "60"]
    async with serving(*args) as (port, process):
        token = trio.lowlevel.current_trio_token()
        downloading = trio.Event()

        def client() -> None:
            ftp = ftplib.FTP(timeout=20)
            ftp.connect("127.0.0.1", port)
            ftp.login()
            ftp.voidcmd("TYPE I")
            with ftp.transfercmd("RETR slow.bin") as data:
                data.recv(1000)
                trio.from_thread.run_sync(downloading.set, trio_token=token)
                try:
                    while data.recv(65536):
                        pass
                except OSError:
                    pass
            ftp.close()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, client)
            with trio.fail_after(10):
                await downloading.wait()
            process.send_signal(signal.SIGINT)
            await trio.sleep(0.5)  # without the grace it would be gone by now
            assert process.returncode is None  # still waiting for the download
            process.send_signal(signal.SIGINT)
            with trio.fail_after(10):
                assert await process.wait() == 0


def test_console_script_is_registered():
    """The trio-ftp console script points at the same main() as python -m trio_ftp."""
    from importlib.metadata import entry_points

    from trio_ftp.__main__ import main

    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "trio-ftp"]
    assert script.load() is main
