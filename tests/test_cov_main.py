"""The command line in-process: each refusal's one-line message, the config file's type checks,
TLS set-up, and hash-password at a real terminal (a pty). test_cli.py runs the program itself;
these reach the branches that are awkward from outside."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio
import trio.testing

from trio_ftp.__main__ import build_server, main, parse_args, port_range
from trio_ftp.config import ConfigError, hash_password, verify_password


def refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """parse_args(argv) exits 2; the one line it printed on stderr."""
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("trio-ftp: error: ")
    assert err.endswith(" (see --help)\n")
    assert err.count("\n") == 1
    return err


def config_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str) -> str:
    config = tmp_path / "c.toml"
    config.write_text(text)
    return refused(capsys, [str(tmp_path), "--config", str(config)])


def test_port_range_single_and_pair():
    assert port_range("50000") == range(50000, 50001)
    assert port_range("50000-50002") == range(50000, 50003)


@pytest.mark.parametrize("text", ["a-b", "1-x", "", "-"])
def test_port_range_not_numbers(text, capsys, tmp_path):
    err = refused(capsys, [str(tmp_path), "--data-ports", text])
    assert f"expected LOW-HIGH, got {text!r}" in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no_anonymous = 'yes'", "no_anonymous must be true or false, got 'yes'"),
        ("anonymous-writable = 1", "anonymous-writable must be true or false, got 1"),
        ("port = true", "port must be a string or a number, got True"),
        ("port = [1, 2]", "port must be a string or a number, got [1, 2]"),
        ("data_ports = [1, 2, 3]", "data_ports must be a string or a number"),
        ("data_ports = [9, 3]", "data_ports: expected 1 <= LOW <= HIGH <= 65535, got '9-3'"),
        ("host = {a = 1}", "host must be a string or a number"),
        ("port = 70000", "port: port out of range: '70000'"),
        ("idle_timeout = 'soon'", "idle_timeout: not a number: 'soon'"),
        ("log-level = 'loud'", "log-level must be one of DEBUG, INFO, WARNING"),
        ("user = 'a:b'", "unknown key 'user'"),
    ],
)
def test_config_values_are_checked_like_options(text, expected, capsys, tmp_path):
    """A config value of the wrong type or out of range: one line naming the key."""
    assert f"--config: {expected}" in config_refused(capsys, tmp_path, text)


def test_config_users_are_checked(capsys, tmp_path):
    err = config_refused(capsys, tmp_path, "[[users]]\nlogin = 'x'\npassword_hash = 'nope'\n")
    assert "--config: user 'x': password hash must look like" in err


def test_config_sets_flags_and_converted_values(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("anonymous_writable = true\ngrace = 2\nlog_level = 'warning'\n")
    args = parse_args([str(tmp_path), "--config", str(config)])
    assert args.anonymous_writable is True
    assert args.grace == 2.0
    assert args.log_level == "WARNING"


def test_verbose_means_debug(tmp_path):
    assert parse_args([str(tmp_path), "-v"]).log_level == "DEBUG"
    assert parse_args([str(tmp_path)]).log_level == "INFO"


def test_user_defined_twice_is_refused(capsys, tmp_path):
    err = refused(capsys, [str(tmp_path), "--user", "a:1", "--user", "b:2", "--user", "a:3"])
    assert "user(s) defined twice: a (see" in err
    config = tmp_path / "c.toml"
    config.write_text(f"[[users]]\nlogin = 'b'\npassword_hash = '{hash_password('x', n=2)}'\n")
    err = refused(capsys, [str(tmp_path), "--config", str(config), "--user", "b:2"])
    assert "user(s) defined twice: b (see" in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--tls-self-signed", "--tls-cert", "c.pem"], "--tls-self-signed and --tls-cert/"),
        (["--tls-self-signed", "--tls-key", "k.pem"], "--tls-self-signed and --tls-cert/"),
        (["--tls-key", "k.pem"], "--tls-key needs --tls-cert"),
        (["--implicit-tls"], "--implicit-tls/--tls-required need --tls-cert or"),
        (
            ["--tls-self-signed", "--implicit-tls", "--tls-required"],
            "--tls-required is for explicit FTPS",
        ),
        (["--root", "/does/not/exist"], "'/does/not/exist' is not a directory"),
    ],
)
def test_inconsistent_options_are_refused(argv, expected, capsys, tmp_path):
    assert expected in refused(capsys, argv if "--root" in argv else [str(tmp_path), *argv])


async def verified(server_context: ssl.SSLContext, ca_file: Path, name: str) -> bool:
    """Whether a client trusting ``ca_file`` accepts the server's certificate for ``name``
    (a TLS handshake over memory streams)."""
    client_context = ssl.create_default_context(cafile=str(ca_file))
    client_raw, server_raw = trio.testing.memory_stream_pair()
    client = trio.SSLStream(client_raw, client_context, server_hostname=name)
    server = trio.SSLStream(server_raw, server_context, server_side=True)

    async def serve() -> None:
        with contextlib.suppress(trio.BrokenResourceError):
            await server.do_handshake()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            try:
                await client.do_handshake()
            except trio.BrokenResourceError as exc:
                cause = exc.__cause__
                nursery.cancel_scope.cancel()
            else:
                return True
    assert isinstance(cause, ssl.SSLCertVerificationError), cause
    return False


async def test_self_signed_certificate_names_the_host_and_passive_address(tmp_path):
    """--tls-self-signed writes the CA and issues a certificate for localhost, the listening
    address and the PASV address, so clients connecting to either can verify it."""
    ca_file = tmp_path / "ca.pem"
    addresses = ["--host", "192.0.2.7", "--passive-address", "198.51.100.9"]
    args = parse_args(
        [str(tmp_path), "--tls-self-signed", "--tls-ca-out", str(ca_file), *addresses]
    )
    server = build_server(args)
    assert ca_file.read_text().startswith("-----BEGIN CERTIFICATE-----")
    context = server.tls_context
    assert isinstance(context, ssl.SSLContext)
    for name in ["localhost", "127.0.0.1", "192.0.2.7", "198.51.100.9"]:
        assert await verified(context, ca_file, name), name
    assert not await verified(context, ca_file, "203.0.113.1")


async def test_self_signed_on_a_wildcard_host_names_no_wildcard(tmp_path):
    ca_file = tmp_path / "ca.pem"
    server = build_server(
        parse_args([str(tmp_path), "--tls-self-signed", "--tls-ca-out", str(ca_file)])
    )
    assert isinstance(server.tls_context, ssl.SSLContext)
    assert await verified(server.tls_context, ca_file, "127.0.0.1")
    wildcard = parse_args(
        [str(tmp_path), "--tls-self-signed", "--tls-ca-out", str(ca_file), "--host", "0.0.0.0"]
    )
    wild_server = build_server(wildcard)
    assert isinstance(wild_server.tls_context, ssl.SSLContext)
    assert await verified(wild_server.tls_context, ca_file, "::1")
    assert not await verified(wild_server.tls_context, ca_file, "0.0.0.0")


def test_self_signed_ca_out_unwritable(tmp_path):
    target = tmp_path / "missing-dir" / "ca.pem"
    args = parse_args([str(tmp_path), "--tls-self-signed", "--tls-ca-out", str(target)])
    with pytest.raises(ConfigError, match=r"^--tls-ca-out .*No such file or directory$"):
        build_server(args)


def test_self_signed_without_trustme_says_what_to_install(tmp_path, monkeypatch):
    """trustme is a test dependency, not a run-time one: without it, a clear message."""
    monkeypatch.setitem(sys.modules, "trustme", None)  # makes `import trustme` fail
    args = parse_args([str(tmp_path), "--tls-self-signed"])
    with pytest.raises(
        ConfigError, match=r"needs the 'trustme' package: pip install 'trio_ftp\[testing\]'"
    ):
        build_server(args)


def test_unloadable_certificate_is_a_config_error(tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_text("not a certificate\n")
    args = parse_args([str(tmp_path), "--tls-cert", str(cert)])
    with pytest.raises(ConfigError, match=r"^--tls-cert '.*cert\.pem': no PEM certificate in it"):
        build_server(args)


def test_tls_problems_name_the_file_and_the_cause(tmp_path, tls_ca):
    """One line that says which file is wrong and how, not OpenSSL's "PEM lib"."""
    issued, other = tls_ca.issue_cert("127.0.0.1"), tls_ca.issue_cert("127.0.0.2")
    cert, key, wrong_key = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "wrong.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    other.private_key_pem.write_to_path(str(wrong_key))
    cases = [
        (cert, None, "(no --tls-key): no PEM private key in it"),
        (cert, cert, "no PEM private key in it"),
        (cert, wrong_key, "is not the key of the certificate in --tls-cert"),
    ]
    for cert_path, key_path, message in cases:
        argv = [str(tmp_path), "--tls-cert", str(cert_path)]
        argv += [] if key_path is None else ["--tls-key", str(key_path)]
        with pytest.raises(ConfigError, match=re.escape(message)):
            build_server(parse_args(argv))
    assert build_server(parse_args([str(tmp_path), "--tls-cert", str(cert), "--tls-key", str(key)]))


def test_missing_key_file_is_named(tmp_path, tls_ca):
    cert = tmp_path / "cert.pem"
    tls_ca.issue_cert("127.0.0.1").cert_chain_pems[0].write_to_path(str(cert))
    args = parse_args([str(tmp_path), "--tls-cert", str(cert), "--tls-key", "/no/key.pem"])
    with pytest.raises(ConfigError, match=r"^TLS file not found: '/no/key\.pem'$"):
        build_server(args)


def test_server_refusal_becomes_exit_status_2(tmp_path, capsys):
    """A value the Server refuses (PROXY headers and nobody to send them): one line,
    status 2, no server."""
    assert main([str(tmp_path), "--proxy-protocol", "required", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trio-ftp: error: proxy_protocol='required' needs proxy_protocol_from")
    assert err.count("\n") == 1


def test_hash_password_refuses_an_empty_password(capsys, monkeypatch):
    with open(os.devnull) as empty:
        monkeypatch.setattr(sys, "stdin", empty)
        with pytest.raises(SystemExit) as exited:
            main(["hash-password"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "trio-ftp hash-password: error: empty password (see --help)\n"
    )


# A terminal for hash-password: the child makes the pty its controlling terminal (getpass reads
# /dev/tty), then becomes `python -m trio_ftp hash-password`.
AT_A_TERMINAL = (
    "import fcntl, os, sys, termios\n"
    "fcntl.ioctl(0, termios.TIOCSCTTY, 0)\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'trio_ftp', 'hash-password'])\n"
)


def at_a_terminal(typed: list[bytes]) -> tuple[int, str]:
    """Run hash-password on a pty; answer each prompt with the next of ``typed``.

    Returns the exit status and everything the terminal showed.
    """
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-c", AT_A_TERMINAL],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    shown = b""
    answers = list(typed)
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
            # Answer a prompt only once it waits: getpass flushes input typed before it.
            if answers and shown.endswith((b"Password: ", b"Again: ")):
                os.write(master, answers.pop(0))
        status = process.wait(timeout=max(0.1, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    return status, shown.decode(errors="replace")


def test_hash_password_at_a_terminal_asks_twice():
    """At a terminal the password is asked twice (not echoed) and the hash printed."""
    status, shown = at_a_terminal([b"s3cret\n", b"s3cret\n"])
    assert status == 0, shown
    assert "Password:" in shown
    assert "Again:" in shown
    assert "s3cret" not in shown
    encoded = shown.split("Again:")[1].split()[0]
    assert verify_password("s3cret", encoded)


def test_hash_password_at_a_terminal_refuses_different_passwords():
    status, shown = at_a_terminal([b"one\n", b"two\n"])
    assert status == 2, shown
    assert "trio-ftp hash-password: error: the passwords differ (see --help)" in shown
    assert "scrypt$" not in shown


def test_hash_password_at_a_terminal_end_of_input_exits_1():
    """Ctrl-D at the prompt: exit status 1, nothing printed but a new line."""
    status, shown = at_a_terminal([b"\x04"])
    assert status == 1, shown
    assert "scrypt$" not in shown
    assert "error" not in shown
