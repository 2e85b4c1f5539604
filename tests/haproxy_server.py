"""A real haproxy for the tests: a configuration rendered from a small description, started in
the foreground (``haproxy -f cfg -db``) in the test's directory, ready when every listener is
bound, and stopped by its PID.

haproxy runs in TCP mode only: FTP (and FTPS, whose TLS stays end-to-end) passes through it
byte for byte. Readiness and counters come from haproxy's own statistics (``show stat`` on a
loopback stats socket), not from probe connections: a probe through a frontend would open an
FTP session on an instance behind it and disturb what the test counts.

Import :func:`haproxy_fixture` into a test module to get the ``haproxy`` fixture.
"""

from __future__ import annotations

import csv
import ipaddress
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import trio

HAPROXY = "haproxy"
#: Seconds ``haproxy -c`` may take, haproxy may take to bind its listeners, and a stopped
#: haproxy may take to exit after SIGTERM before it gets SIGKILL.
CHECK_TIMEOUT = 10.0
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
#: Bytes of ``show stat`` output read at most (a few hundred bytes per proxy and server).
STATS_LIMIT = 1 << 20
SendProxy = Literal["v1", "v2"]
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"not a plain haproxy section or server name: {name!r}")
    return name


def _check_address(host: str) -> str:
    if not ipaddress.IPv4Address(host).is_loopback:
        raise ValueError(f"tests use IPv4 loopback addresses only, got {host!r}")
    return host


@dataclass(frozen=True)
class Upstream:
    """One ``server`` line of a backend.

    Attributes:
        port: the instance's port; ``None`` forwards to the port the client dialled (what a
            port-range frontend publishing a passive slice needs).
        send_proxy: a PROXY protocol header on every connection (``send-proxy`` for v1,
            ``send-proxy-v2``); health checks then send one too (``check-send-proxy``), so
            they arrive as v1 ``UNKNOWN`` / v2 ``LOCAL``.
        check: health checks: the FTP greeting (``220``), ``QUIT``, ``221``.
    """

    name: str
    host: str
    port: int | None = None
    send_proxy: SendProxy | None = None
    check: bool = False

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_address(self.host)
        if self.check and self.port is None:
            raise ValueError("a checked server needs its port")

    def line(self) -> str:
        address = self.host if self.port is None else f"{self.host}:{self.port}"
        words = ["server", self.name, address]
        if self.send_proxy is not None:
            words.append("send-proxy" if self.send_proxy == "v1" else "send-proxy-v2")
        if self.check:
            words += ["check", "inter", "500ms", "rise", "1", "fall", "2"]
            if self.send_proxy is not None:
                words.append("check-send-proxy")
        return " ".join(words)


@dataclass(frozen=True)
class Frontend:
    """A ``listen`` section: one port (or a port range) on a loopback address, balanced over
    its servers. A range forwards each port to the same port of the server chosen."""

    name: str
    host: str
    first_port: int
    servers: tuple[Upstream, ...]
    last_port: int | None = None
    balance: str = "roundrobin"

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_address(self.host)
        if not self.servers:
            raise ValueError(f"{self.name}: no servers")
        if self.last_port is not None and self.last_port < self.first_port:
            raise ValueError(f"{self.name}: port range {self.first_port}-{self.last_port}")
        if self.balance not in ("roundrobin", "leastconn", "source", "first"):
            raise ValueError(f"{self.name}: balance {self.balance!r}")

    @property
    def ports(self) -> range:
        return range(self.first_port, (self.last_port or self.first_port) + 1)

    def section(self) -> str:
        ports = str(self.first_port)
        if self.last_port is not None and self.last_port != self.first_port:
            ports += f"-{self.last_port}"
        lines = [f"listen {self.name}", f"    bind {self.host}:{ports}"]
        lines.append(f"    balance {self.balance}")
        if any(server.check for server in self.servers):
            lines += [
                "    option tcp-check",
                "    tcp-check expect rstring ^220",
                "    tcp-check send QUIT\\r\\n",
                "    tcp-check expect rstring ^221",
            ]
        lines += [f"    {server.line()}" for server in self.servers]
        return "\n".join(lines)


@dataclass(frozen=True)
class HaproxyConfig:
    """A whole configuration: short timeouts, one thread (a deterministic round robin), and a
    stats socket on a loopback port for readiness and counters."""

    frontends: tuple[Frontend, ...]
    stats_port: int
    client_timeout: str = "30s"

    def render(self) -> str:
        names = [frontend.name for frontend in self.frontends]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate frontend names: {names}")
        head = f"""\
global
    nbthread 1
    stats socket ipv4@127.0.0.1:{self.stats_port} level user

defaults
    mode tcp
    timeout connect 2s
    timeout client {self.client_timeout}
    timeout server {self.client_timeout}
    timeout check 2s
"""
        return head + "".join(f"\n{frontend.section()}\n" for frontend in self.frontends)


def require_haproxy() -> str:
    """The haproxy binary, or a failed test (never a skip: CI installs it, .ci/run)."""
    path = shutil.which(HAPROXY) or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )
    if path is None:
        pytest.fail("haproxy is not installed (CI installs it: .ci/run)")
    return path


def check_config_file(path: Path) -> str:
    """``haproxy -c -f path``: the test fails with haproxy's own message when the file is
    invalid or draws a warning. Returns haproxy's output."""
    result = subprocess.run(
        [require_haproxy(), "-c", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT,
        check=False,
    )
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0 or "[WARNING]" in output or "[ALERT]" in output:
        pytest.fail(f"haproxy -c -f {path} (exit {result.returncode}):\n{output}")
    return output


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports the kernel says are free on ``host`` (all bound at once, then
    released: a later bind by another process can still take one)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET)
            sockets.append(sock)
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class Haproxy:
    """One haproxy process: its configuration file, log and PID live in ``directory``."""

    def __init__(self, config: HaproxyConfig, directory: Path) -> None:
        self.config = config
        self.directory = directory
        self.config_path = directory / "haproxy.cfg"
        self.log_path = directory / "haproxy.log"
        self.process: subprocess.Popen[bytes] | None = None

    def output(self) -> str:
        """What haproxy printed (alerts and warnings), for failure messages."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    async def start(self) -> None:
        """Write and check the configuration, start haproxy, wait until it is ready."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config.render())
        await trio.to_thread.run_sync(check_config_file, self.config_path)
        with self.log_path.open("wb") as log:
            # Popen returns once haproxy is exec'd; stop() needs Popen's synchronous wait
            self.process = subprocess.Popen(  # noqa: ASYNC220
                [require_haproxy(), "-f", str(self.config_path), "-db"],
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        await self.wait_ready()

    async def _query(self, command: str) -> str:
        stream = await trio.open_tcp_stream("127.0.0.1", self.config.stats_port)
        async with stream:
            await stream.send_all(command.encode() + b"\n")
            received = bytearray()
            while len(received) < STATS_LIMIT:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                received += chunk
        return received.decode(errors="replace")

    async def stats(self) -> dict[tuple[str, str], dict[str, str]]:
        """``show stat``: a row per (proxy, FRONTEND | BACKEND | server name)."""
        text = await self._query("show stat")
        rows = csv.DictReader(text.lstrip("# ").splitlines())
        return {(row["pxname"], row["svname"]): row for row in rows if row.get("pxname")}

    async def wait_for(
        self, condition: Callable[[dict[tuple[str, str], dict[str, str]]], bool], what: str
    ) -> dict[tuple[str, str], dict[str, str]]:
        """Poll ``show stat`` until ``condition`` holds; fail the test after START_TIMEOUT, with
        the last statistics and haproxy's output."""
        last: dict[tuple[str, str], dict[str, str]] = {}
        with trio.move_on_after(START_TIMEOUT):
            while True:
                if self.process is not None and self.process.poll() is not None:
                    pytest.fail(f"haproxy exited ({self.process.returncode}):\n{self.output()}")
                try:
                    last = await self.stats()
                except OSError:
                    pass  # the stats socket is not bound yet
                else:
                    if condition(last):
                        return last
                await trio.sleep(0.02)
        pytest.fail(f"haproxy: not {what} within {START_TIMEOUT} s: {last}\n{self.output()}")

    async def wait_ready(self) -> None:
        """Until every frontend is OPEN. haproxy binds every listener, the stats socket
        included, before it serves any: a stats answer means every port is bound."""
        names = [frontend.name for frontend in self.config.frontends]

        def open_(stats: dict[tuple[str, str], dict[str, str]]) -> bool:
            return all(stats.get((name, "FRONTEND"), {}).get("status") == "OPEN" for name in names)

        await self.wait_for(open_, "listening")

    async def wait_checks_passed(self) -> dict[tuple[str, str], dict[str, str]]:
        """Until every checked server is UP after a passed health check (``L7OK``)."""
        checked = [
            (frontend.name, server.name)
            for frontend in self.config.frontends
            for server in frontend.servers
            if server.check
        ]

        def passed(stats: dict[tuple[str, str], dict[str, str]]) -> bool:
            rows = [stats.get(key, {}) for key in checked]
            return all(r.get("status") == "UP" and r.get("check_status") == "L7OK" for r in rows)

        return await self.wait_for(passed, "passing its health checks")

    async def sessions(self, frontend: str) -> int:
        """Connections a frontend has accepted since haproxy started (``stot``)."""
        return int((await self.stats())[(frontend, "FRONTEND")]["stot"])

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL if haproxy is still there after STOP_TIMEOUT."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)


HaproxyStarter = Callable[..., Awaitable[Haproxy]]


@dataclass
class _Started:
    processes: list[Haproxy] = field(default_factory=list)


@pytest.fixture(name="haproxy")
async def haproxy_fixture(tmp_path: Path) -> AsyncIterator[HaproxyStarter]:
    """``await haproxy(*frontends)``: a running haproxy (stats port chosen here); every one
    started is stopped at teardown."""
    started = _Started()

    async def start(*frontends: Frontend, client_timeout: str = "30s") -> Haproxy:
        (stats_port,) = free_ports(1)
        config = HaproxyConfig(tuple(frontends), stats_port, client_timeout)
        process = Haproxy(config, tmp_path / f"haproxy{len(started.processes)}")
        started.processes.append(process)
        await process.start()
        return process

    try:
        yield start
    finally:  # synchronous: a failed test's teardown runs cancelled
        for process in started.processes:
            process.stop()
