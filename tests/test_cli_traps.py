"""The command line and config without traps: empty passwords refused, passwords out of
``ps``, relative config paths from the config's folder, no silent ``anonymous`` account, a
warning when anonymous clients may write, and options for what the library already had."""

from __future__ import annotations

import ftplib
import logging
import socket
import time
from pathlib import Path

import pytest
import trio
from conftest import LOGIN, PASSWORD, in_thread
from test_cli import run_cli, serving

from trio_ftp import Permission, Server, User
from trio_ftp.__main__ import build_server, parse_args
from trio_ftp.config import hash_password


def test_an_empty_password_is_refused(tmp_path: Path) -> None:
    result = run_cli("--root", str(tmp_path), "--user", "alice:")
    assert result.returncode == 2
    assert "empty password for 'alice'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_user_file_keeps_passwords_out_of_the_command_line(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text("# accounts\nalice:secret one\n\nbob:pw:with:colons\n")
    args = parse_args(["--root", str(tmp_path), "--user-file", str(users), "--no-anonymous"])
    assert args.user_file == [("alice", "secret one"), ("bob", "pw:with:colons")]
    server = build_server(args)
    assert sorted(u.login for u in server.user_manager.users) == ["alice", "bob"]  # type: ignore[attr-defined]
    users.write_text("carol:\n")
    result = run_cli("--root", str(tmp_path), "--user-file", str(users))
    assert result.returncode == 2
    assert f"{users}:1: empty password for 'carol'" in result.stderr


def test_relative_config_paths_are_taken_from_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    (folder / "srv").mkdir(parents=True)
    (folder / "users").write_text("alice:pw\n")
    config = folder / "server.toml"
    config.write_text(
        'root = "srv"\nlog_file = "ftp.log"\nxferlog = "xfer.log"\nuser_file = "users"\n'
    )
    monkeypatch.chdir(tmp_path)  # not the config's folder
    args = parse_args(["--config", str(config)])
    assert Path(args.root) == (folder / "srv").resolve()
    assert args.log_file == str(folder / "ftp.log")
    assert args.xferlog == str(folder / "xfer.log")
    assert args.user_file == [("alice", "pw")]


@pytest.mark.parametrize("login", ["anonymous", "FTP"])
def test_an_anonymous_users_entry_is_refused(tmp_path: Path, login: str) -> None:
    config = tmp_path / "server.toml"
    config.write_text(
        f'root = "{tmp_path}"\n[[users]]\nlogin = "{login}"\n'
        f'password_hash = "{hash_password("pw")}"\n'
    )
    result = run_cli("--config", str(config))
    assert result.returncode == 2
    assert "is the anonymous login" in result.stderr


async def test_a_server_whose_anonymous_user_can_write_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, nursery: trio.Nursery
) -> None:
    caplog.set_level(logging.WARNING, "trio_ftp")
    read_only = Server([User(base_path=tmp_path, permissions=[Permission("/", writable=False)])])
    await nursery.start(read_only.serve, "127.0.0.1", 0)
    assert not [r for r in caplog.records if "anonymous clients may write" in r.getMessage()]
    writable = Server([User(base_path=tmp_path)])  # aioftp's default: anyone may write
    await nursery.start(writable.serve, "127.0.0.1", 0)
    assert [r for r in caplog.records if "anonymous clients may write" in r.getMessage()]
    await read_only.close()
    await writable.close()


def test_the_library_policies_have_options(tmp_path: Path) -> None:
    args = parse_args(
        [
            "--root", str(tmp_path),
            "--login-failure-delay", "0.25", "--max-login-attempts", "5",
            "--ban-after", "7", "--ban-window", "60",
            "--atomic-uploads", "--no-active",
        ]
    )  # fmt: skip
    options = build_server(args).options
    assert (options.login.failure_delay, options.login.failures_per_session) == (0.25, 5)
    assert (options.login.failures_per_ip, options.login.failure_window) == (7, 60.0)
    assert options.files.atomic_uploads
    assert not options.data_channels.active_mode


@pytest.mark.slow
async def test_no_active_refuses_port(tmp_path: Path) -> None:
    async with serving("--root", str(tmp_path), "--no-active") as (port, _):

        def run() -> str:
            with ftplib.FTP(timeout=10) as ftp:
                ftp.connect("127.0.0.1", port)
                ftp.login()
                try:
                    return ftp.sendcmd("PORT 127,0,0,1,4,1")
                except ftplib.error_perm as exc:
                    return str(exc)

        assert (await in_thread(run)).startswith("504")


def test_a_threaded_server_on_a_port_in_use_raises_oserror() -> None:
    from trio_ftp.pytest_plugin import ThreadedFTPServer

    with ThreadedFTPServer() as first, pytest.raises(OSError, match="in use"):
        ThreadedFTPServer(port=first.port).start()


async def test_a_closed_server_says_it_cannot_serve_again(nursery: trio.Nursery) -> None:
    server = Server([User()])
    await nursery.start(server.serve, "127.0.0.1", 0)
    await server.close()
    with pytest.raises(RuntimeError, match="was closed and cannot serve again"):
        await server.start("127.0.0.1", 0)


@pytest.mark.slow
async def test_a_slow_data_tls_handshake_gets_the_handshake_timeout(
    start_server, tls, caplog: pytest.LogCaptureFixture
) -> None:
    """A passive data connection that arrived in time has ``tls_handshake_timeout`` for its
    handshake, not what is left of ``wait_future_timeout``; one that never handshakes is
    answered 425 saying TLS timed out, and logged with that reason."""
    caplog.set_level(logging.INFO, "trio_ftp")
    running = await start_server(
        tls_context=tls.server_context, wait_future_timeout=0.2, tls_handshake_timeout=1.0
    )
    (running.root / "f.txt").write_bytes(b"payload")

    def transfer(handshake_after: float | None) -> tuple[str, bytes]:
        with ftplib.FTP_TLS(context=tls.client_context, timeout=10) as ftp:
            ftp.connect(running.host, running.port)
            ftp.auth()
            ftp.login(LOGIN, PASSWORD)
            ftp.prot_p()
            host, port = ftplib.parse227(ftp.sendcmd("PASV"))
            raw = socket.create_connection((host, port), timeout=10)
            ftp.putcmd("RETR f.txt")
            if handshake_after is None:  # never: the server gives up
                assert ftp.getmultiline().startswith("150")
                reply = ftp.getmultiline()
                raw.close()
                return reply, b""
            time.sleep(handshake_after)  # a slow client, past wait_future_timeout
            data = tls.client_context.wrap_socket(
                raw, server_hostname=running.host, session=ftp.sock.session
            )
            assert ftp.getmultiline().startswith("150")
            body = b""
            while chunk := data.recv(1024):
                body += chunk
            data.close()
            return ftp.getmultiline(), body

    reply, body = await in_thread(transfer, 0.5)
    assert reply.startswith("226")
    assert body == b"payload"
    reply, _ = await in_thread(transfer, None)
    assert reply == "425 can't open data connection: TLS handshake timed out"
    logged = [r.getMessage() for r in caplog.records]
    assert any("TLS handshake timed out after 1.0 s" in m for m in logged)


def test_the_documented_config_example_is_valid(tmp_path: Path) -> None:
    """Every key of the full config example in docs/cli.md is one the command line takes
    (only the absolute paths and the certificate are swapped for this machine's)."""
    readme = (Path(__file__).parent.parent / "docs" / "cli.md").read_text()
    example = readme.split("# server.toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "srv" / "alice").mkdir(parents=True)
    (tmp_path / "users.txt").write_text("bob:pw\n")
    for old, new in [
        ('"/srv/ftp"', '"srv"'),
        ('"/srv/ftp/alice"', '"srv/alice"'),
        ('"/var/log/trio-ftp.log"', '"ftp.log"'),
        ('"/var/log/trio-ftp.xferlog"', '"xfer.log"'),
        ("scrypt$16384$8$1$...", hash_password("pw")),
    ]:
        assert old in example
        example = example.replace(old, new)
    example = "\n".join(line for line in example.splitlines() if not line.startswith("tls_"))
    config = tmp_path / "server.toml"
    config.write_text(example)
    args = parse_args(["--config", str(config)])
    server = build_server(args)
    assert sorted(u.login for u in server.user_manager.users) == ["alice", "bob"]  # type: ignore[attr-defined]
    assert args.log_file == str(tmp_path / "ftp.log")
    assert args.metrics_address == ("127.0.0.1", 9100)


def test_the_documentation_names_every_config_key() -> None:
    """Every option a config file may set is named in the documentation."""
    from trio_ftp.__main__ import _NOT_IN_CONFIG, make_parser

    docs = Path(__file__).parent.parent / "docs"
    text = "".join(page.read_text() for page in docs.glob("*.md"))
    keys = [
        a.dest
        for a in make_parser()._actions
        if a.dest not in _NOT_IN_CONFIG and a.dest != "version"
    ]
    assert [key for key in keys if key not in text and key.replace("_", "-") not in text] == []
