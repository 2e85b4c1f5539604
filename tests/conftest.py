"""Shared fixtures: a real server on loopback, clients in threads, and leak checks."""

from __future__ import annotations

import ftplib
import functools
import os
import random
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio
import trustme

from trio_ftp import Permission, Server, User, fastpath

T = TypeVar("T")

LOGIN, PASSWORD = "user", "secret"
#: Every test that talks to a server finishes within this many seconds or fails.
TEST_DEADLINE = 30
#: ``login_failure_delay`` of the servers ``start_server`` starts unless the test gives one:
#: a wrong password in a test is not about the delay (1 s by default), tests of the delay
#: pass their own.
TEST_LOGIN_FAILURE_DELAY = 0.05


MiB = 1024 * 1024
FTP_ERRORS = (ftplib.error_reply, ftplib.error_temp, ftplib.error_perm, ftplib.error_proto)


@functools.cache
def random_bytes(size: int, seed: int = 1234) -> bytes:
    """Reproducible random bytes (cached: the big payloads are made once per run)."""
    return random.Random(seed).randbytes(size)


def reply_of(call: Callable[[], object]) -> str:
    """The reply text of an ftplib call, whether ftplib returned it or raised it."""
    try:
        return str(call())
    except FTP_ERRORS as exc:
        return str(exc)


def code(reply: str) -> str:
    """The three-digit code of a reply text."""
    return reply[:3]


def open_fds() -> set[int]:
    """File descriptors open in this process (Linux)."""
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


@dataclass
class Running:
    """A started server and how to reach it."""

    server: Server
    host: str
    port: int
    root: Path

    def ftp(self, login: str | None = LOGIN, password: str = PASSWORD) -> ftplib.FTP:
        """A connected (and, unless ``login`` is None, logged-in) ftplib client."""
        client = ftplib.FTP(timeout=10)
        client.connect(self.host, self.port)
        if login is not None:
            client.login(login, password)
        return client

    @property
    def url(self) -> str:
        return f"ftp://{LOGIN}:{PASSWORD}@{self.host}:{self.port}/"


def default_users(root: Path) -> list[User]:
    """A read/write user and a read-only anonymous user, both rooted at ``root``."""
    return [
        User(LOGIN, PASSWORD, base_path=root),
        User(base_path=root, permissions=[Permission("/", writable=False)]),
    ]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


@pytest.fixture
async def start_server(
    nursery: trio.Nursery, root: Path
) -> AsyncIterator[Callable[..., Awaitable[Running]]]:
    """Start servers on 127.0.0.1:0; at teardown close them and check nothing leaked."""
    fds_before = open_fds()
    servers: list[Server] = []

    async def start(users: Any = None, *, server: Server | None = None, **kwargs: Any) -> Running:
        """Build a Server from ``users`` and keywords, or serve the ``server`` given."""
        if server is None:
            kwargs.setdefault("login_failure_delay", TEST_LOGIN_FAILURE_DELAY)
            server = Server(default_users(root) if users is None else users, **kwargs)
        elif users is not None or kwargs:
            raise TypeError("give a server, or users and keywords, not both")
        host, port = await nursery.start(server.serve, "127.0.0.1", 0)
        servers.append(server)
        return Running(server, host, port, root)

    yield start
    with trio.fail_after(10):
        for server in servers:
            await server.close()
            assert server.connections == {}
    leaked = open_fds() - fds_before
    assert not leaked, f"file descriptors leaked: {sorted(leaked)}"


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytest's ``pytester``, without the pytest-xdist worker's environment: the pytest it
    runs in a subprocess is no xdist worker (pytest-benchmark, where installed, would think
    it is and warn, an error under filterwarnings = error)."""
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
    return pytester


@pytest.fixture
def worker_thread_calls(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every function handed to ``trio.to_thread.run_sync`` during the test, in order."""
    calls: list[object] = []
    run_sync = trio.to_thread.run_sync

    async def counting(fn: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(fn)
        return await run_sync(fn, *args, **kwargs)

    monkeypatch.setattr(trio.to_thread, "run_sync", counting)
    return calls


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking client call in a thread, failing the test if it takes too long."""
    with trio.fail_after(TEST_DEADLINE):
        return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)


async def in_thread_with_cpu(fn: Callable[..., T], *args: Any) -> tuple[T, float]:
    """:func:`in_thread`, and the CPU seconds the thread spent in ``fn``: a test of the
    server's CPU subtracts it, since the server and its clients share this process."""

    def timed() -> tuple[T, float]:
        started = time.thread_time()
        result = fn(*args)
        return result, time.thread_time() - started

    return await in_thread(timed)


@pytest.fixture(params=["within-one-call", "across-calls"])
def stall_timeout(request: pytest.FixtureRequest) -> float:
    """A short ``socket_timeout`` for a test of a stalled data connection: 0.3 s, within one
    kernel-path call (1 s), or 0.5 s across five calls of 0.1 s (``short_kernel_calls``), so
    the kernel path's stall clock must count across its calls."""
    if request.param == "across-calls":
        request.getfixturevalue("short_kernel_calls")
        return 0.5
    return 0.3


@pytest.fixture
def short_kernel_calls(monkeypatch: pytest.MonkeyPatch) -> float:
    """Kernel-path transfer calls (:mod:`trio_ftp.fastpath`) give their worker thread back
    after 0.1 s instead of 1 s, so a test of what happens across calls (a stall timeout
    longer than one call, a speed limit switched on mid-transfer) waits tenths of a second."""
    budget = 0.1
    monkeypatch.setattr(fastpath, "CALL_BUDGET", budget)
    return budget


@dataclass
class TLSCerts:
    """A trustme CA and what servers and clients need from it."""

    server_context: ssl.SSLContext
    client_context: ssl.SSLContext
    ca_file: Path


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls(tls_ca: trustme.CA, tmp_path: Path) -> TLSCerts:
    """A fresh server context (certificate for 127.0.0.1/localhost) and a trusting client."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    tls_ca.configure_trust(client_context)
    ca_file = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca_file))
    return TLSCerts(server_context, client_context, ca_file)


class ImplicitFTP(ftplib.FTP_TLS):
    """ftplib has no implicit FTPS: wrap the control socket before reading the welcome."""

    def connect(
        self, host: str = "", port: int = 0, timeout: float = -999, source_address: Any = None
    ) -> str:
        self.host, self.port = host, port
        if timeout != -999:
            self.timeout = timeout
        raw = socket.create_connection((host, port), self.timeout)
        try:
            self.sock = self.context.wrap_socket(raw, server_hostname=host)
        except BaseException:
            raw.close()
            raise
        self.af = self.sock.family
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome


#: Seconds a client subprocess (curl, lftp, wget) may run.
CLIENT_TIMEOUT = 25


def lftp_tls_argv(ca_file: Path | str, host: str, port: int, *commands: str) -> list[str]:
    """An lftp command line running ``commands`` over explicit FTPS, forced for control and
    data, with the certificate checked against ``ca_file``; one try, failing fast."""
    script = "; ".join(
        [
            f'set ssl:ca-file "{ca_file}"',
            "set ssl:verify-certificate yes",
            "set ftp:ssl-force true",
            "set ftp:ssl-protect-data true",
            "set net:max-retries 1",
            "set net:timeout 10",
            "set cmd:fail-exit yes",
            f"open -u {LOGIN},{PASSWORD} ftp://{host}:{port}",
            *commands,
        ]
    )
    return ["lftp", "-c", script]


def client_env(home: Path) -> dict[str, str]:
    """The environment of a client subprocess: private HOME (no rc files, no history), no
    proxy, and a UTF-8 locale (lftp and wget translate names through the locale)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.lower().endswith("_proxy")
        and key not in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "LFTP_HOME")
    }
    env.update(HOME=str(home), LC_ALL="C.UTF-8", LANG="C.UTF-8")
    return env


async def run_client(argv: list[str], cwd: Path, home: Path) -> subprocess.CompletedProcess[bytes]:
    """Run a client binary in a thread; fail (never skip) when it is not installed."""
    if shutil.which(argv[0]) is None:
        pytest.fail(f"{argv[0]} is not installed (CI installs curl, lftp and wget: .ci/run)")
    env = client_env(home)

    def run() -> subprocess.CompletedProcess[bytes]:
        home.mkdir(exist_ok=True)
        return subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=CLIENT_TIMEOUT,
            capture_output=True,
            check=False,
        )

    return await in_thread(run)
