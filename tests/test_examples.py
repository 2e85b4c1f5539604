"""The runnable examples in examples/: each is imported and driven on 127.0.0.1, port 0."""

from __future__ import annotations

import ftplib
import importlib.util
import io
import re
import shutil
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio
from conftest import ImplicitFTP, TLSCerts, in_thread

import trio_ftp

pytest_plugins = ["pytester"]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` (importing must have no side effects)."""
    module_name = f"trio_ftp_example_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def connect(address: tuple[str, int], login: str | None = None, password: str = "") -> ftplib.FTP:
    """A connected ftplib client, logged in unless ``login`` is None."""
    ftp = ftplib.FTP(timeout=10)
    ftp.connect(*address)
    if login is not None:
        ftp.login(login, password)
    return ftp


def download(ftp: ftplib.FTP, name: str) -> bytes:
    out = io.BytesIO()
    ftp.retrbinary(f"RETR {name}", out.write)
    return out.getvalue()


def reply(call: Callable[[], object]) -> str:
    """The reply of an ftplib call, returned or raised."""
    try:
        return str(call())
    except ftplib.all_errors as exc:
        return str(exc)


async def serve(nursery: trio.Nursery, server: trio_ftp.Server) -> tuple[str, int]:
    with trio.fail_after(10):
        return await nursery.start(server.serve, "127.0.0.1", 0)


async def test_minimal_server(nursery, tmp_path):
    """minimal_server: alice uploads, anonymous downloads the same bytes but may not write."""
    module = load_example("minimal_server")
    server = module.build_server(tmp_path)
    address = await serve(nursery, server)
    payload = bytes(range(256)) * 257

    def client() -> tuple[bytes, str]:
        with connect(address, "alice", "wonderland") as ftp:
            ftp.storbinary("STOR data.bin", io.BytesIO(payload))
        with connect(address, "anonymous", "guest@") as ftp:
            data = download(ftp, "data.bin")
            refused = reply(lambda: ftp.storbinary("STOR evil.bin", io.BytesIO(b"x")))
        return data, refused

    data, refused = await in_thread(client)
    assert data == payload
    assert (tmp_path / "data.bin").read_bytes() == payload
    assert refused.startswith("553")  # read-only: refused before any data connection
    assert not (tmp_path / "evil.bin").exists()
    await server.close()


async def test_embed_in_nursery(tmp_path):
    """embed_in_nursery: the endpoint serves hello.txt while the heartbeat task keeps beating."""
    module = load_example("embed_in_nursery")

    class Beats(list[int]):
        """The heartbeat's list, which lets the test wait for more beats."""

        waiting: tuple[int, trio.Event] | None = None

        def append(self, beat: int) -> None:
            super().append(beat)
            if self.waiting is not None and len(self) >= self.waiting[0]:
                self.waiting[1].set()

        async def wait_for_more(self, count: int) -> None:
            self.waiting = (len(self) + count, trio.Event())
            await self.waiting[1].wait()

    beats = Beats()
    async with trio.open_nursery() as app:
        address = await app.start(
            lambda task_status: module.run_app(
                tmp_path, beats=beats, interval=0.01, task_status=task_status
            )
        )

        def fetch() -> bytes:
            with connect(address, "demo", "demo") as ftp:
                return download(ftp, "hello.txt")

        assert await in_thread(fetch) == module.GREETING
        with trio.fail_after(5):
            await beats.wait_for_more(3)  # the other task is still running
        assert await in_thread(fetch) == module.GREETING  # and so is the server
        app.cancel_scope.cancel()
    assert beats[:3] == [1, 2, 3]


async def test_sqlite_user_manager(nursery, tmp_path):
    """sqlite_user_manager: scrypt-checked logins, per-user rights, unknown users look known."""
    module = load_example("sqlite_user_manager")
    database = tmp_path / "users.db"
    (tmp_path / "alice").mkdir()
    (tmp_path / "bob").mkdir()
    await trio.to_thread.run_sync(module.add_user, database, "alice", "s3cret", tmp_path / "alice")
    await trio.to_thread.run_sync(
        lambda: module.add_user(database, "bob", "s3cret", tmp_path / "bob", writable=False)
    )
    (tmp_path / "bob" / "notes.txt").write_bytes(b"bob's notes\n")
    server = trio_ftp.Server(module.SQLiteUserManager(database), login_failure_delay=0)
    address = await serve(nursery, server)
    payload = b"\x00\xff" * 5000

    def client() -> dict[str, Any]:
        out: dict[str, Any] = {}
        with connect(address, "alice", "s3cret") as ftp:
            ftp.storbinary("STOR up.bin", io.BytesIO(payload))
        with connect(address, "bob", "s3cret") as ftp:
            out["bob_reads"] = download(ftp, "notes.txt")
            out["bob_writes"] = reply(lambda: ftp.storbinary("STOR x", io.BytesIO(b"x")))
        with connect(address) as ftp:
            out["known_user"] = ftp.sendcmd("USER alice")
            out["wrong_password"] = reply(lambda: ftp.sendcmd("PASS guess"))
        with connect(address) as ftp:
            out["unknown_user"] = ftp.sendcmd("USER mallory")
            out["unknown_password"] = reply(lambda: ftp.sendcmd("PASS guess"))
        return out

    out = await in_thread(client)
    assert (tmp_path / "alice" / "up.bin").read_bytes() == payload
    assert out["bob_reads"] == b"bob's notes\n"
    assert out["bob_writes"].startswith("553")
    assert not (tmp_path / "bob" / "x").exists()
    assert out["known_user"] == out["unknown_user"] == "331 password required"
    assert out["wrong_password"] == out["unknown_password"] == "530 login incorrect"

    rows = sqlite3.connect(database).execute("SELECT login, salt, hash FROM users").fetchall()
    (_, salt_a, hash_a), (_, salt_b, hash_b) = sorted(rows)
    assert len(salt_a) == 16
    assert salt_a != salt_b  # random salts...
    assert hash_a != hash_b  # ...so the same password hashes differently
    assert b"s3cret" not in hash_a + hash_b
    await server.close()


async def test_custom_path_io_inbox(nursery, tmp_path):
    """custom_path_io: uploads get timestamped names and nothing can be overwritten or deleted."""
    module = load_example("custom_path_io")
    server = module.build_server(tmp_path)
    address = await serve(nursery, server)
    first, second = b"first upload\n" * 100, b"second upload\n" * 100

    def client() -> dict[str, Any]:
        out: dict[str, Any] = {}
        with connect(address, "drop", "box") as ftp:
            out["stor"] = ftp.storbinary("STOR report.csv", io.BytesIO(first))
            ftp.storbinary("STOR report.csv", io.BytesIO(second))
            out["names"] = sorted(ftp.nlst())
            out["contents"] = [download(ftp, name) for name in out["names"]]
            victim = out["names"][0]
            out["dele"] = reply(lambda: ftp.delete(victim))
            out["rename"] = reply(lambda: ftp.rename(victim, "other.csv"))
            out["appe"] = reply(lambda: ftp.storbinary(f"APPE {victim}", io.BytesIO(b"more")))
            out["rest"] = reply(
                lambda: ftp.storbinary(f"STOR {victim}", io.BytesIO(b"over"), rest=4)
            )
            out["mkd"] = ftp.mkd("sub")
            out["rmd"] = reply(lambda: ftp.rmd("sub"))
        return out

    out = await in_thread(client)
    assert out["stor"].startswith("226")
    assert len(out["names"]) == 2
    for name in out["names"]:
        assert re.fullmatch(r"\d{8}T\d{6}\.\d{6}Z-report\.csv(\.\d+)?", name), name
    assert out["contents"] == [first, second]  # both kept, byte for byte
    for refused in ("dele", "rename", "appe", "rest", "rmd"):
        assert out[refused].startswith("550"), (refused, out[refused])
    assert out["mkd"] == "/sub"
    on_disk = sorted(path.name for path in tmp_path.iterdir() if path.is_file())
    assert on_disk == out["names"]
    assert [(tmp_path / name).read_bytes() for name in on_disk] == [first, second]
    assert (tmp_path / "sub").is_dir()
    await server.close()


async def test_explicit_ftps(nursery, tmp_path, tls: TLSCerts):
    """explicit_ftps: no login in clear; after AUTH TLS and PROT P transfers are byte-exact."""
    module = load_example("explicit_ftps")
    server = module.build_server(tmp_path, tls.server_context)
    address = await serve(nursery, server)
    payload = bytes(range(256)) * 1000

    def client() -> dict[str, Any]:
        out: dict[str, Any] = {}
        with connect(address) as ftp:
            out["clear_user"] = reply(lambda: ftp.sendcmd("USER alice"))
        with ftplib.FTP_TLS(context=tls.client_context, timeout=10) as ftp:
            ftp.connect(*address)
            ftp.auth()
            ftp.login("alice", "wonderland")
            out["clear_data"] = reply(lambda: ftp.nlst())
            ftp.prot_p()
            ftp.storbinary("STOR secret.bin", io.BytesIO(payload))
            out["download"] = download(ftp, "secret.bin")
        return out

    out = await in_thread(client)
    assert out["clear_user"].startswith("530")
    assert out["clear_data"].startswith("521")
    assert out["download"] == payload
    assert (tmp_path / "secret.bin").read_bytes() == payload
    await server.close()


async def test_implicit_ftps(nursery, tmp_path, tls: TLSCerts):
    """implicit_ftps: TLS from the first byte; PROT C is refused, PROT P transfers are exact."""
    module = load_example("implicit_ftps")
    server = module.build_server(tmp_path, tls.server_context)
    address = await serve(nursery, server)
    payload = bytes(range(256)) * 1000
    (tmp_path / "down.bin").write_bytes(payload[::-1])

    def client() -> dict[str, Any]:
        out: dict[str, Any] = {}
        with ImplicitFTP(context=tls.client_context, timeout=10) as ftp:
            out["welcome"] = ftp.connect(*address)
            out["cipher"] = ftp.sock.cipher()
            ftp.login("alice", "wonderland")
            out["prot_c"] = reply(lambda: ftp.sendcmd("PROT C"))
            ftp.prot_p()
            ftp.storbinary("STOR up.bin", io.BytesIO(payload))
            out["download"] = download(ftp, "down.bin")
        return out

    out = await in_thread(client)
    assert out["welcome"].startswith("220")
    assert out["cipher"] is not None
    assert out["prot_c"].startswith("534")
    assert (tmp_path / "up.bin").read_bytes() == payload
    assert out["download"] == payload[::-1]
    await server.close()


async def test_event_log(tmp_path):
    """event_log: a login and an upload give one line per event, in order, then the log ends."""
    module = load_example("event_log")
    lines: list[str] = []
    logged_out = trio.Event()

    def write(line: str) -> None:
        lines.append(line)
        if line.split()[4] == "logout":
            logged_out.set()

    async with trio.open_nursery() as app:
        address = await app.start(
            lambda task_status: module.run(tmp_path, write=write, task_status=task_status)
        )

        def client() -> None:
            with connect(address, "alice", "wonderland") as ftp:
                ftp.storbinary("STOR up.bin", io.BytesIO(b"12345"))

        await in_thread(client)
        with trio.fail_after(5):
            await logged_out.wait()
        app.cancel_scope.cancel()

    kinds = [line.split()[4] for line in lines]
    assert kinds == ["connect", "login", "transfer_started", "transfer_finished", "logout"]
    assert all(re.match(r"\d\d:\d\d:\d\d #\d+ 127\.0\.0\.1:\d+ ", line) for line in lines)
    assert lines[0].split()[3] == "-"  # not logged in yet
    assert all(line.split()[3] == "alice" for line in lines[1:])
    assert re.search(r"transfer_finished upload /up\.bin 5 bytes in \d+\.\d{3} s$", lines[3])
    assert lines[2].endswith("transfer_started upload /up.bin")


@pytest.mark.slow  # a pytest subprocess
def test_fixtures_example(pytester: pytest.Pytester):
    """test_with_fixtures: the copyable test file passes with the trio and threaded fixtures."""
    shutil.copy(EXAMPLES / "test_with_fixtures.py", pytester.path / "test_with_fixtures.py")
    pytester.makeini("[pytest]\ntrio_mode = true\nfilterwarnings = error\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", timeout=120)
    result.assert_outcomes(passed=4)
