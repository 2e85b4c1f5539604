"""Start the compared servers as child processes, each on its own free loopback port.

The Python servers run ``benchmarks.serve`` (which prints its port when ready); vsftpd, if
installed, gets a generated configuration. Every server gets the same root (one copy of the
data, one page cache) and the same account, except vsftpd: see :data:`KINDS`.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import select
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.children import Children, python_module
from benchmarks.datafiles import DataSet
from benchmarks.tlscerts import TLSFiles

__all__ = [
    "FLOOR",
    "FLOOR_TASKS",
    "FLOOR_TASKS_2P",
    "KINDS",
    "LIMIT",
    "REFERENCES",
    "RunningServer",
    "ServerKind",
    "available_kinds",
    "log_tail",
    "remove_uploads",
    "start_server",
]

HOST = "127.0.0.1"
USER, PASSWORD = "bench", "pw"
VSFTPD = "/usr/sbin/vsftpd"
WORKERS_TRIO = "trio_ftp-2w"
WORKERS_PYFTPDLIB = "pyftpdlib-2p"


@dataclass(frozen=True)
class ServerKind:
    """One compared server and what it can do."""

    name: str
    login: tuple[str, str] = (USER, PASSWORD)
    tls_mode: str = "explicit"  # "explicit" (AUTH TLS) or "implicit" (TLS from byte one)
    mlsd: bool = True
    idle_processes: int = 1  # the size of its process tree with no session open
    sessions_only: bool = False  # measured in the concurrent sessions rows only


KINDS = (
    ServerKind("trio_ftp"),
    ServerKind("pyftpdlib"),
    ServerKind("aioftp", tls_mode="implicit"),
    # Local accounts in vsftpd mean PAM and a system user; its anonymous account (chrooted
    # to the same root, uploads allowed) serves the same files without touching the system.
    # It runs under benchmarks.reaper: the reaper and the listener when idle.
    ServerKind("vsftpd", login=("anonymous", "bench@"), mlsd=False, idle_processes=2),
    # Every core: trio_ftp.serve_workers with 2 workers (supervisor, multiprocessing's
    # resource tracker, 2 workers), and pyftpdlib's prefork mode with 2 processes.
    ServerKind(WORKERS_TRIO, idle_processes=4, sessions_only=True),
    ServerKind(WORKERS_PYFTPDLIB, idle_processes=3, sessions_only=True),
)
# The reference columns, not FTP servers (benchmarks.serve): the loopback limit for RETR,
# the trio floor for the sessions, small-file and FTPS STOR rows (and FTPS sessions), and
# the trio floor built with this project's task structure, for the sessions, FTPS sessions
# and small-file rows.
LIMIT = ServerKind("sendfile")
FLOOR = ServerKind("trio-floor", mlsd=False)
FLOOR_TASKS = ServerKind("trio-floor-tasks", mlsd=False, sessions_only=True)
# ... and that floor in two processes sharing one listening socket, for the 2-process rows.
FLOOR_TASKS_2P = ServerKind("trio-floor-tasks-2p", mlsd=False, idle_processes=3, sessions_only=True)
REFERENCES = (LIMIT, FLOOR, FLOOR_TASKS, FLOOR_TASKS_2P)


@dataclass
class RunningServer:
    """A started server: where it listens and which process tree to measure."""

    kind: ServerKind
    tls: bool
    process: subprocess.Popen[bytes]
    port: int

    @property
    def pid(self) -> int:
        """The root of the server's process tree."""
        return self.process.pid


def vsftpd_usable() -> bool:
    """vsftpd is installed and its anonymous account exists (the Debian package makes it)."""
    try:
        pwd.getpwnam("ftp")
    except KeyError:
        return False
    return os.access(VSFTPD, os.X_OK) and os.geteuid() == 0


def available_kinds(names: list[str] | None) -> list[ServerKind]:
    """The compared servers to run: the ones named, or all; vsftpd only if usable."""
    kinds = [kind for kind in KINDS if names is None or kind.name in names]
    return [kind for kind in kinds if kind.name != "vsftpd" or vsftpd_usable()]


def start_server(
    children: Children,
    kind: ServerKind,
    data: DataSet,
    workdir: Path,
    tls: TLSFiles | None = None,
) -> RunningServer:
    """Start ``kind`` serving ``data.root`` (FTPS if ``tls``) and wait until it is ready."""
    if tls is not None and kind is LIMIT:
        raise ValueError(f"{kind.name} has no TLS")
    if kind.name == "vsftpd":
        return _start_vsftpd(children, kind, data, workdir, tls)
    argv = python_module("benchmarks.serve", kind.name, "--root", str(data.root))
    argv += ["--user", kind.login[0], "--password", kind.login[1]]
    if kind is LIMIT:
        argv += ["--file", str(data.real(data.transfer_path))]
    if tls is not None:
        argv += ["--tls", "--cert", str(tls.cert), "--key", str(tls.key)]
    process = children.start(argv, log=log_path(workdir, kind, tls is not None))
    try:
        port = int(_read_line(process, timeout=30.0))
    except RuntimeError as exc:
        children.stop(process)
        tail = log_tail(workdir, kind, tls is not None)
        raise RuntimeError(f"{kind.name}: {exc}; its log ends:\n{tail}") from None
    return RunningServer(kind, tls is not None, process, port)


def log_path(workdir: Path, kind: ServerKind, tls: bool) -> Path:
    """Where a server's stderr goes: aioftp logs a traceback for every connection reset,
    which would drown the progress lines."""
    return workdir / f"{kind.name}{'-tls' if tls else ''}.log"


def log_tail(workdir: Path, kind: ServerKind, tls: bool, lines: int = 5) -> str:
    """The last lines a server logged (to show why it died)."""
    try:
        text = log_path(workdir, kind, tls).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _read_line(process: subprocess.Popen[bytes], timeout: float) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline() if ready else b""
    if not line.strip():
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(1.0)  # so that a crash shows its exit status
        raise RuntimeError(f"no port reported (exit status {process.poll()})")
    return line.decode().strip()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _start_vsftpd(
    children: Children, kind: ServerKind, data: DataSet, workdir: Path, tls: TLSFiles | None
) -> RunningServer:
    directory = workdir / f"vsftpd-{'tls' if tls else 'plain'}-{time.monotonic_ns()}"
    empty = directory / "empty"  # its secure_chroot_dir: root-owned and empty
    empty.mkdir(parents=True)
    os.chmod(directory, 0o755)
    os.chmod(empty, 0o755)
    port = _free_port()
    config = directory / "vsftpd.conf"
    config.write_text(_vsftpd_config(port, data.root, empty, tls))
    os.chmod(config, 0o600)
    argv = python_module("benchmarks.reaper", VSFTPD, str(config))
    process = children.start(argv, log=log_path(workdir, kind, tls is not None))
    _wait_listening(process, port)
    return RunningServer(kind, tls is not None, process, port)


def _wait_listening(process: subprocess.Popen[bytes], port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"vsftpd exited with {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex((HOST, port)) == 0:
                probe.recv(256)  # its greeting: the session process then ends cleanly
                return
        time.sleep(0.05)
    raise RuntimeError("vsftpd did not start listening")


def _vsftpd_config(port: int, root: Path, empty: Path, tls: TLSFiles | None) -> str:
    options = {
        "listen": "YES",
        "listen_ipv6": "NO",
        "listen_address": HOST,
        "listen_port": str(port),
        "background": "NO",
        "anonymous_enable": "YES",
        "local_enable": "NO",
        "anon_root": str(root),
        "ftp_username": "ftp",
        "write_enable": "YES",
        "anon_upload_enable": "YES",
        "anon_umask": "022",
        "secure_chroot_dir": str(empty),
        # Containers often forbid the namespaces and seccomp filter vsftpd sets up.
        "seccomp_sandbox": "NO",
        "isolate": "NO",
        "isolate_network": "NO",
        "xferlog_enable": "NO",
        "syslog_enable": "NO",
        "dual_log_enable": "NO",
        "vsftpd_log_file": "/dev/null",
        "max_clients": "0",
        "max_per_ip": "0",
        "pasv_enable": "YES",
        "connect_from_port_20": "NO",
    }
    if tls is not None:
        options.update(
            {
                "ssl_enable": "YES",
                "allow_anon_ssl": "YES",
                "force_anon_logins_ssl": "NO",
                "force_anon_data_ssl": "NO",
                "require_ssl_reuse": "NO",
                "ssl_ciphers": "HIGH",
                "rsa_cert_file": str(tls.cert),
                "rsa_private_key_file": str(tls.key),
            }
        )
    return "".join(f"{key}={value}\n" for key, value in options.items())


def remove_uploads(data: DataSet) -> None:
    """Delete what STOR left, so the next upload starts from an empty directory."""
    upload = data.real(data.upload_dir)
    for entry in upload.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
