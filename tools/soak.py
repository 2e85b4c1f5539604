#!/usr/bin/env python3
"""Soak test: hundreds of concurrent, partly hostile FTP clients against one trio_ftp server.

The server runs in a subprocess (``soak.py --serve``) so that its descriptors, memory and
CPU can be read from ``/proc/<pid>`` without the clients' own. The clients are trio tasks
in this process: logins (some with wrong passwords), LIST/MLSD/NLST, uploads to unique
names, downloads of seed files, SIZE/HASH, ABOR mid-transfer, data connections reset
mid-transfer, control connections dropped mid-transfer, idle sessions that must be timed
out. Afterwards the tree on disk, the server's descriptors, trio tasks and memory, and its
log are checked; the exit status is non-zero if any check failed.

    python3 tools/soak.py --quick                    # ~20 s
    python3 tools/soak.py --clients 300 --seconds 60
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import hashlib
import json
import logging
import os
import random
import re
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

HOST = "127.0.0.1"
LOGIN, PASSWORD = "soak", "soak-pw"
#: Seconds any one client operation may take before it counts as a hang.
OP_DEADLINE = 60.0
#: Margins for "back to baseline" after the load.
FD_MARGIN = 2
TASK_MARGIN = 2
#: Live Python objects and allocated memory blocks may differ by this fraction.
OBJECT_MARGIN = 0.01
#: PSS may stay this much above the baseline, plus PSS_PER_CLIENT_KIB per client: CPython's
#: small-object allocator cannot return a 1 MiB arena while one object in it lives, so much
#: of the peak (which grows with the number of concurrent sessions) stays resident after
#: the load. A leak shows first in the live objects and allocated blocks, checked to 1%.
PSS_MARGIN_KIB = 16 * 1024
PSS_PER_CLIENT_KIB = 128

# --- the server side (runs in the subprocess) ---------------------------------------------


def count_tasks() -> int:
    """Every live trio task, walked from the root task through its nurseries."""
    todo = [trio.lowlevel.current_root_task()]
    count = 0
    while todo:
        task = todo.pop()
        if task is None:
            continue
        count += 1
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return count


def top_types() -> dict[str, int]:
    """Live objects per type (the 40 commonest): where a leak would show."""
    counts = Counter(type(obj).__name__ for obj in gc.get_objects())
    return dict(counts.most_common(40))


def release_memory() -> None:
    """Collect garbage and hand free heap pages back to the OS, so PSS measures what is
    live rather than what the allocator keeps (done before baseline and after alike)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


async def control_loop(server: Any) -> None:
    """Answer the parent's one-word commands on stdin with one JSON line on stdout."""
    while True:
        line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
        word = line.strip()
        if word in ("", "quit"):
            with trio.fail_after(30):
                await server.close()
            return
        if word == "trim":
            release_memory()
        answer = {
            "tasks": count_tasks(),
            "connections": len(server.connections),
            "objects": len(gc.get_objects()),
            "blocks": sys.getallocatedblocks(),
            "types": top_types() if word == "types" else {},
        }
        print(json.dumps(answer), flush=True)


async def serve(args: argparse.Namespace) -> None:
    from trio_ftp import PathIO, Server, User

    server = Server(
        [User(LOGIN, PASSWORD, base_path=args.root)],
        path_io_factory=PathIO,
        idle_timeout=args.idle_timeout,
        socket_timeout=args.socket_timeout,
        wait_future_timeout=10,
        login_failure_delay=0.2,
        # Every client comes from 127.0.0.1: the per-address lockout would refuse them all.
        maximum_login_failures_per_ip=None,
        atomic_uploads=args.atomic,
    )
    async with trio.open_nursery() as nursery:
        _, port = await nursery.start(server.serve, HOST, 0)
        print(json.dumps({"port": port}), flush=True)
        await control_loop(server)
        nursery.cancel_scope.cancel()


def serve_main(args: argparse.Namespace) -> None:
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s"
    )
    raise_fd_limit()
    trio.run(serve, args)


def raise_fd_limit() -> None:
    """Hundreds of sessions, each with a data connection and a file: lift the soft limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- the server process, seen from outside -------------------------------------------------


@dataclass
class ProcSample:
    fds: int
    rss_kib: int
    pss_kib: int
    cpu_seconds: float
    threads: int
    tasks: int = -1
    connections: int = -1
    objects: int = -1
    blocks: int = -1


class ServerProcess:
    """The subprocess running the server, its control pipe, and its /proc numbers."""

    def __init__(self, root: Path, log: Path, args: argparse.Namespace) -> None:
        argv = [sys.executable, os.path.abspath(__file__), "--serve", "--root", str(root)]
        argv += ["--idle-timeout", str(args.idle_timeout)]
        argv += ["--socket-timeout", str(args.socket_timeout)]
        argv += ["--atomic"] if args.atomic else []
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 (closed in stop())
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=env
        )
        self.pid = self.proc.pid
        self.port = int(self._read()["port"])

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"server exited; see {self.log_path}")
        return dict(json.loads(line))

    def query(self, word: str = "stats") -> dict[str, Any]:
        """Send one control word; blocking (call it in a thread from trio)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(word.encode() + b"\n")
        self.proc.stdin.flush()
        return self._read()

    def sample(self, word: str = "stats") -> ProcSample:
        """/proc numbers of the server, plus its own count of tasks and sessions."""
        answer = self.query(word)
        sample = self.quick_sample()
        sample.tasks = answer["tasks"]
        sample.connections = answer["connections"]
        sample.objects = answer["objects"]
        sample.blocks = answer["blocks"]
        return sample

    def quick_sample(self) -> ProcSample:
        """Only /proc (no round trip): for the monitor during the load."""
        return ProcSample(
            fds=len(os.listdir(f"/proc/{self.pid}/fd")),
            rss_kib=proc_field(f"/proc/{self.pid}/status", "VmRSS"),
            pss_kib=proc_field(f"/proc/{self.pid}/smaps_rollup", "Pss"),
            cpu_seconds=cpu_seconds(self.pid),
            threads=proc_field(f"/proc/{self.pid}/status", "Threads"),
        )

    def stop(self) -> int:
        """Ask the server to close, wait for it; its exit status."""
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.write(b"quit\n")
            self.proc.stdin.close()
        try:
            status = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # our own child, by its Popen handle
            status = self.proc.wait()
        self._log.close()
        return status


def proc_field(path: str, name: str) -> int:
    """A ``Name:   123 kB`` field of a /proc file (in KiB for sizes)."""
    with open(path) as file:
        for line in file:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise KeyError(name)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of the process (all its threads)."""
    with open(f"/proc/{pid}/stat", "rb") as file:
        fields = file.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the tree the server serves --------------------------------------------------------------


def make_root(base: Path, seed: int) -> dict[str, bytes]:
    """Seed files (relative path -> content) written under ``base``, plus an ``up`` dir."""
    rng = random.Random(seed)
    seeds: dict[str, bytes] = {"seed/empty": b"", "seed/large.bin": rng.randbytes(4 << 20)}
    for i in range(8):
        seeds[f"seed/small-{i}.txt"] = rng.randbytes(rng.randint(1, 4096))
    for i in range(4):
        seeds[f"seed/medium-{i}.bin"] = rng.randbytes(rng.randint(64 << 10, 512 << 10))
    seeds["seed/deep/a/b/c.txt"] = b"deep\n" * 100
    seeds["seed/space name.txt"] = b"a name with spaces"
    seeds["seed/ünïcødé.txt"] = "ünïcødé\n".encode()
    for name, data in seeds.items():
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (base / "up").mkdir()
    return seeds


# --- the client side -------------------------------------------------------------------------


class Unexpected(Exception):
    """Something the server must not do: a client-side check failed."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


@dataclass
class Reply:
    code: str
    text: str


@dataclass
class Upload:
    """One STOR: what was meant to be sent (regenerated from seed/size), how much of it
    the client handed to the data connection, and the transfer's final code."""

    name: str
    seed: int
    size: int
    attempted: int = 0
    final: str | None = None

    def data(self) -> bytes:
        return random.Random(self.seed).randbytes(self.size)


@dataclass
class Stats:
    """Everything the clients did and saw."""

    sessions: int = 0
    transfers: Counter[str] = field(default_factory=Counter)
    bytes_up: int = 0
    bytes_down: int = 0
    expected: Counter[str] = field(default_factory=Counter)  # outcomes that are fine
    unexpected: Counter[str] = field(default_factory=Counter)  # failed checks
    details: list[str] = field(default_factory=list)
    uploads: list[Upload] = field(default_factory=list)

    def fail(self, kind: str, detail: str) -> None:
        self.unexpected[kind] += 1
        if len(self.details) < 30:
            self.details.append(f"{kind}: {detail}")


_FIRST = re.compile(rb"[1-5][0-9][0-9][ -]")


class Control:
    """A control connection with strict reply parsing (RFC 959 §4.2)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise EOFError("server closed the control connection")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        if b"\r" in line or b"\n" in line:
            raise Unexpected("protocol", f"bare CR/LF in reply line {line!r}")
        return line

    async def reply(self) -> Reply:
        first = await self._line()
        if not _FIRST.match(first):
            raise Unexpected("protocol", f"malformed reply line {first!r}")
        lines = [first]
        if first[3:4] == b"-":
            while not (len(lines) > 1 and lines[-1].startswith(first[:3] + b" ")):
                lines.append(await self._line())
        try:
            text = b"\n".join(lines).decode()
        except UnicodeDecodeError:
            raise Unexpected("protocol", f"reply not UTF-8: {lines!r}") from None
        return Reply(first[:3].decode(), text)

    async def send(self, line: str) -> None:
        await self.stream.send_all(line.encode() + b"\r\n")

    async def command(self, line: str, *expected: str) -> Reply:
        await self.send(line)
        reply = await self.reply()
        if expected and reply.code not in expected:
            raise Unexpected("reply", f"{line!r} -> {reply.code} {reply.text[:80]!r}")
        return reply


async def reset(stream: trio.SocketStream | None) -> None:
    """Close with RST (SO_LINGER 0): an abrupt disconnect, not a polite FIN."""
    if stream is None:
        return
    with contextlib.suppress(OSError):
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await trio.aclose_forcefully(stream)


class SessionOver(Exception):
    """The client ended the session on purpose (dropped the control connection)."""


@dataclass
class Client:
    """One simulated user: sessions of random operations until time is up."""

    tag: str  # "warm" or "load": names and random streams differ between the two
    cid: int
    port: int
    seeds: dict[str, bytes]
    stats: Stats
    rng: random.Random
    idle_timeout: float
    uploads_done: int = 0

    # sessions ------------------------------------------------------------------------------
    async def run(self, stop_at: float) -> None:
        while trio.current_time() < stop_at:
            self.stats.sessions += 1
            try:
                await self.session()
            except SessionOver:
                self.stats.expected["control dropped mid-session"] += 1
            except Unexpected as exc:
                self.stats.fail(exc.kind, f"client {self.cid}: {exc}")
            except trio.TooSlowError:
                self.stats.fail("timeout", f"client {self.cid}: an operation hung")
            except (EOFError, trio.BrokenResourceError, OSError) as exc:
                self.stats.fail("connection", f"client {self.cid}: {exc!r}")

    async def session(self) -> None:
        with trio.fail_after(OP_DEADLINE):
            stream = await trio.open_tcp_stream(HOST, self.port)
        control = Control(stream)
        try:
            greeting = await self.op(control.reply())
            if greeting.code != "220":
                raise Unexpected("reply", f"greeting {greeting.code} {greeting.text!r}")
            if not await self.login(control):
                return
            if self.rng.random() < 0.01:
                await self.idle(control)
                return
            await self.op(control.command("TYPE I", "200"))
            for _ in range(self.rng.randint(1, 8)):
                await self.random_operation(control)
            await self.goodbye(control)
        finally:
            await trio.aclose_forcefully(stream)

    async def op(self, awaitable: Any) -> Any:
        """One operation, bounded: a server that stops answering is a failure."""
        with trio.fail_after(OP_DEADLINE):
            return await awaitable

    async def login(self, control: Control) -> bool:
        """USER/PASS; one session in ten tries a wrong password first (530)."""
        await self.op(control.command(f"USER {LOGIN}", "331"))
        if self.rng.random() < 0.1:
            await self.op(control.command("PASS wrong", "530"))
            self.stats.expected["wrong password refused (530)"] += 1
            if self.rng.random() < 0.5:
                await self.op(control.command("QUIT", "221"))
                return False
        await self.op(control.command(f"PASS {PASSWORD}", "230"))
        return True

    async def idle(self, control: Control) -> None:
        """Say nothing: the server must close with 421 after idle_timeout."""
        with trio.fail_after(self.idle_timeout + OP_DEADLINE):
            reply = await control.reply()
            if reply.code != "421":
                raise Unexpected("reply", f"idle session got {reply.code}")
            with contextlib.suppress(EOFError):
                await control._line()
                raise Unexpected("protocol", "idle session still open after 421")
        self.stats.expected["idle session timed out (421)"] += 1

    async def goodbye(self, control: Control) -> None:
        """QUIT mostly; sometimes just hang up (FIN or RST)."""
        roll = self.rng.random()
        if roll < 0.8:
            await self.op(control.command("QUIT", "221"))
        elif roll < 0.9:
            await reset(control.stream)
        else:
            await control.stream.aclose()

    # operations --------------------------------------------------------------------------
    async def random_operation(self, control: Control) -> None:
        choice = self.rng.choices(
            ["upload", "download", "listing", "info", "misc"], weights=[30, 30, 20, 10, 10]
        )[0]
        if choice == "upload":
            await self.upload(control)
        elif choice == "download":
            await self.download(control)
        elif choice == "listing":
            await self.listing(control)
        elif choice == "info":
            await self.info(control)
        else:
            line = self.rng.choice(["NOOP", "PWD", "SYST", "FEAT", "STAT", "CWD /seed", "CDUP"])
            await self.op(control.command(line, "200", "211", "215", "250", "257"))

    def mode(self) -> str:
        """How a transfer ends: normally, ABOR, data RST, or the control connection dropped."""
        return self.rng.choices(["normal", "abor", "reset", "drop"], weights=[70, 10, 10, 10])[0]

    async def open_data(self, control: Control) -> trio.SocketStream:
        if self.rng.random() < 0.5:
            reply = await self.op(control.command("EPSV", "229"))
            found = re.search(r"\(\|\|\|(\d+)\|\)", reply.text)
            port = int(found[1]) if found else 0
        else:
            reply = await self.op(control.command("PASV", "227"))
            nums = re.search(r"\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)", reply.text)
            port = int(nums[5]) << 8 | int(nums[6]) if nums else 0
        if not port:
            raise Unexpected("protocol", f"no port in {reply.text!r}")
        with trio.fail_after(OP_DEADLINE):
            return await trio.open_tcp_stream(HOST, port)

    def upload_size(self) -> int:
        roll = self.rng.random()
        if roll < 0.05:
            return 0
        if roll < 0.6:
            return self.rng.randint(1, 8 << 10)
        if roll < 0.97:
            return self.rng.randint(8 << 10, 128 << 10)
        return self.rng.randint(128 << 10, 2 << 20)

    async def upload(self, control: Control) -> None:
        """STOR of fresh random bytes under a name no one else uses."""
        self.uploads_done += 1
        record = Upload(
            f"up/{self.tag}-c{self.cid}-{self.uploads_done}.bin",
            self.rng.getrandbits(64),
            self.upload_size(),
        )
        self.stats.uploads.append(record)
        data = record.data()
        mode = self.mode()
        stream = await self.open_data(control)
        try:
            await self.op(control.command(f"STOR /{record.name}", "150"))
            cut = len(data) if mode == "normal" else self.rng.randint(0, len(data))
            with contextlib.suppress(trio.BrokenResourceError):
                await self.op(stream.send_all(data[:cut]))
            record.attempted = cut
            self.stats.bytes_up += cut
            record.final = await self.end_transfer(control, stream, mode, "upload")
        finally:
            await trio.aclose_forcefully(stream)
        if mode == "normal" and record.final != "226":
            raise Unexpected("transfer", f"STOR {record.name} ended {record.final}")

    async def download(self, control: Control) -> None:
        """RETR of a seed file; what arrives must be the file (226) or a prefix of it."""
        name = self.rng.choice(sorted(self.seeds))
        expected = self.seeds[name]
        mode = self.mode()
        stream = await self.open_data(control)
        received = bytearray()
        try:
            await self.op(control.command(f"RETR /{name}", "150"))
            limit = len(expected) if mode == "normal" else self.rng.randint(0, len(expected))
            with trio.fail_after(OP_DEADLINE):
                while len(received) < limit or mode == "normal":
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        break
                    received += chunk
            self.stats.bytes_down += len(received)
            final = await self.end_transfer(control, stream, mode, "download")
        finally:
            await trio.aclose_forcefully(stream)
        if final == "226" and mode == "normal" and bytes(received) != expected:
            raise Unexpected("hash", f"RETR {name}: {len(received)} bytes, wrong content")
        if not expected.startswith(bytes(received)):
            raise Unexpected("hash", f"RETR {name}: what arrived is not a prefix of the file")
        if mode == "normal" and final != "226":
            raise Unexpected("transfer", f"RETR {name} ended {final}")

    async def end_transfer(
        self, control: Control, stream: trio.SocketStream, mode: str, kind: str
    ) -> str | None:
        """Finish the transfer as ``mode`` says; the transfer's final code (None: dropped)."""
        self.stats.transfers[f"{kind} ({mode})"] += 1
        if mode == "normal":
            await stream.aclose()
            return (await self.op(control.reply())).code
        if mode == "reset":
            await reset(stream)
            final = (await self.op(control.reply())).code
            if final not in ("226", "426"):
                raise Unexpected("transfer", f"{kind} after data RST ended {final}")
            self.stats.expected[f"{kind} data RST -> {final}"] += 1
            return final
        if mode == "drop":
            await reset(stream)
            await reset(control.stream)
            raise SessionOver
        return await self.abort(control, kind)

    async def abort(self, control: Control, kind: str) -> str | None:
        """ABOR then NOOP: the replies before NOOP's 200 are [transfer end, ABOR's answer]
        ([426, 226] or [226, 225]), or just [226] when ABOR beat the transfer's start."""
        await control.send("ABOR")
        await control.send("NOOP")
        replies: list[str] = []
        while not replies or replies[-1] != "200":
            replies.append((await self.op(control.reply())).code)
        ends = replies[:-1]
        if ends not in (["426", "226"], ["226", "225"], ["226"], ["425", "225"]):
            raise Unexpected("transfer", f"{kind} ABOR replies {replies}")
        self.stats.expected[f"{kind} ABOR -> {'/'.join(ends)}"] += 1
        return ends[0] if len(ends) == 2 else None

    async def listing(self, control: Control) -> None:
        """LIST, MLSD or NLST of a seed directory; NLST must name every seed file there."""
        verb = self.rng.choice(["LIST", "MLSD", "NLST"])
        directory = self.rng.choice(["/seed", "/seed/deep/a", "/up", ""])
        stream = await self.open_data(control)
        try:
            await self.op(control.command(f"{verb} {directory}".strip(), "150"))
            data = bytearray()
            with trio.fail_after(OP_DEADLINE):
                while chunk := await stream.receive_some(65536):
                    data += chunk
            await stream.aclose()
            await self.op(self.expect(control, "226", verb))
        finally:
            await trio.aclose_forcefully(stream)
        self.stats.transfers[f"listing ({verb})"] += 1
        self.stats.bytes_down += len(data)
        if verb == "NLST" and directory == "/seed":
            names = {line.rsplit("/", 1)[-1] for line in data.decode().split("\r\n") if line}
            wanted = {n.split("/")[1] for n in self.seeds}
            if not wanted <= names:
                raise Unexpected("listing", f"NLST seed misses {sorted(wanted - names)}")

    async def expect(self, control: Control, code: str, what: str) -> Reply:
        reply = await control.reply()
        if reply.code != code:
            raise Unexpected("reply", f"{what} ended {reply.code} {reply.text[:80]!r}")
        return reply

    async def info(self, control: Control) -> None:
        """SIZE or HASH of a seed file must match the file."""
        name = self.rng.choice(sorted(self.seeds))
        data = self.seeds[name]
        if self.rng.random() < 0.5:
            reply = await self.op(control.command(f"SIZE /{name}", "213"))
            if reply.text[4:].strip() != str(len(data)):
                raise Unexpected("info", f"SIZE {name}: {reply.text!r}, wanted {len(data)}")
        else:
            reply = await self.op(control.command(f"HASH /{name}", "213"))
            if hashlib.sha256(data).hexdigest() not in reply.text:
                raise Unexpected("info", f"HASH {name}: {reply.text!r}")


# --- checks after the load --------------------------------------------------------------------


def verify_tree(root: Path, seeds: dict[str, bytes], uploads: list[Upload]) -> list[str]:
    """Seed files unchanged; 226 uploads byte-exact; others absent or a prefix of what was
    sent; nothing else on disk."""
    failures: list[str] = []
    for name, data in seeds.items():
        path = root / name
        if not path.is_file() or path.read_bytes() != data:
            failures.append(f"seed file changed: {name}")
    for record in uploads:
        path = root / record.name
        sent = record.data()[: record.attempted]
        if record.final == "226":
            if not path.is_file():
                failures.append(f"upload {record.name} got 226 but is missing")
            elif hashlib.sha256(path.read_bytes()).digest() != hashlib.sha256(sent).digest():
                failures.append(f"upload {record.name} got 226 but differs from what was sent")
        elif path.exists() and not record.data().startswith(path.read_bytes()):
            failures.append(f"failed upload {record.name} is not a prefix of what was sent")
    expected = {*seeds, *(record.name for record in uploads)}
    directories = {str(Path(name).parent) for name in expected} | {"up"}
    for path in root.rglob("*"):
        relative = str(path.relative_to(root))
        if path.is_dir():
            if not any(d == relative or d.startswith(relative + "/") for d in directories):
                failures.append(f"unexpected directory {relative}")
        elif relative not in expected:
            failures.append(f"unexpected file {relative}")
    return failures


def log_problems(log: Path) -> list[str]:
    """Lines of the server's stderr that mean a bug: tracebacks, handler/session failures."""
    bad = re.compile(r"Traceback|handler failed|session failed|^ERROR|^CRITICAL")
    return [line for line in log.read_text(errors="replace").splitlines() if bad.search(line)]


# --- orchestration ---------------------------------------------------------------------------


@dataclass
class Report:
    baseline: ProcSample
    after: ProcSample
    peak_fds: int
    peak_pss_kib: int
    load_cpu: float
    load_seconds: float


async def monitor(server: ServerProcess, peaks: dict[str, int]) -> None:
    """Sample the server's descriptors and PSS every half second (for the peaks)."""
    while True:
        sample = server.quick_sample()
        peaks["fds"] = max(peaks.get("fds", 0), sample.fds)
        peaks["pss"] = max(peaks.get("pss", 0), sample.pss_kib)
        await trio.sleep(0.5)


async def run_clients(
    server: ServerProcess,
    seeds: dict[str, bytes],
    stats: Stats,
    count: int,
    seconds: float,
    args: argparse.Namespace,
    tag: str,
) -> None:
    """``count`` clients, started over the first second, running sessions for ``seconds``."""
    stop_at = trio.current_time() + seconds
    async with trio.open_nursery() as nursery:
        for cid in range(count):
            rng = random.Random(f"{args.seed}-{tag}-{cid}")
            client = Client(tag, cid, server.port, seeds, stats, rng, args.idle_timeout)
            nursery.start_soon(client.run, stop_at)
            await trio.sleep(1 / count)


async def settle(server: ServerProcess, fds: int, threads: int, deadline: float) -> ProcSample:
    """Wait (at most ``deadline`` seconds) until the server has no session, at most ``fds``
    descriptors and ``threads`` threads (trio's idle worker threads exit after 10 s);
    then measure, after a garbage collection and a malloc_trim."""
    sample = await trio.to_thread.run_sync(server.sample)
    with trio.move_on_after(deadline):
        while sample.connections or sample.fds > fds or sample.threads > threads:
            await trio.sleep(0.5)
            sample = await trio.to_thread.run_sync(server.sample)
    return await trio.to_thread.run_sync(server.sample, "trim")


async def soak(
    args: argparse.Namespace, server: ServerProcess, seeds: dict[str, bytes], stats: Stats
) -> Report:
    # Warm-up: every code path once, so lazily built state is in the baseline.
    start = await trio.to_thread.run_sync(server.sample)
    await run_clients(server, seeds, stats, 8, 2, args, "warm")
    baseline = await settle(server, start.fds, start.threads, 30)
    peaks: dict[str, int] = {}
    cpu_before, started = baseline.cpu_seconds, time.monotonic()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(monitor, server, peaks)
        await run_clients(server, seeds, stats, args.clients, args.seconds, args, "load")
        nursery.cancel_scope.cancel()
    load_seconds = time.monotonic() - started
    after = await settle(server, baseline.fds + FD_MARGIN, baseline.threads, args.idle_timeout + 30)
    return Report(
        baseline,
        after,
        peaks.get("fds", 0),
        peaks.get("pss", 0),
        after.cpu_seconds - cpu_before,
        load_seconds,
    )


def resource_failures(report: Report, clients: int) -> list[str]:
    """What the load left behind in the server, beyond the margins above."""
    failures = []
    base, after = report.baseline, report.after
    if after.connections:
        failures.append(f"{after.connections} sessions still open after the load")
    if after.fds > base.fds + FD_MARGIN:
        failures.append(f"descriptors: {base.fds} before, {after.fds} after")
    if after.tasks > base.tasks + TASK_MARGIN:
        failures.append(f"trio tasks: {base.tasks} before, {after.tasks} after")
    if after.objects > base.objects * (1 + OBJECT_MARGIN):
        failures.append(f"Python objects: {base.objects} before, {after.objects} after")
    if after.blocks > base.blocks * (1 + OBJECT_MARGIN):
        failures.append(f"allocated blocks: {base.blocks} before, {after.blocks} after")
    if after.threads > base.threads:
        failures.append(f"threads: {base.threads} before, {after.threads} after")
    margin = PSS_MARGIN_KIB + PSS_PER_CLIENT_KIB * clients
    if after.pss_kib > base.pss_kib + margin:
        failures.append(
            f"PSS: {base.pss_kib} KiB before, {after.pss_kib} KiB after (margin {margin} KiB)"
        )
    return failures


def summary(
    args: argparse.Namespace, stats: Stats, report: Report, failures: list[str], status: int
) -> str:
    base, after = report.baseline, report.after
    mib = 1 << 20
    lines = [
        f"soak: {args.clients} clients for {args.seconds:g} s "
        f"(idle_timeout {args.idle_timeout:g} s, atomic uploads {args.atomic})",
        f"sessions: {stats.sessions}; uploads recorded: {len(stats.uploads)}",
        "transfers: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.transfers.items())),
        f"bytes: {stats.bytes_up / mib:.1f} MiB up, {stats.bytes_down / mib:.1f} MiB down",
        "expected outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.expected.items())),
        "errors: " + (", ".join(f"{k} {v}" for k, v in sorted(stats.unexpected.items())) or "none"),
        f"server CPU: {report.load_cpu:.1f} s over {report.load_seconds:.1f} s of load "
        f"({100 * report.load_cpu / max(report.load_seconds, 1e-9):.0f}% of one core)",
        f"descriptors: baseline {base.fds}, peak {report.peak_fds}, after {after.fds}",
        f"trio tasks: baseline {base.tasks}, after {after.tasks}; threads: baseline "
        f"{base.threads}, after {after.threads}; Python objects: baseline {base.objects}, "
        f"after {after.objects}; allocated blocks: baseline {base.blocks}, after {after.blocks}",
        f"PSS: baseline {base.pss_kib / 1024:.1f} MiB, peak {report.peak_pss_kib / 1024:.1f} MiB, "
        f"after {after.pss_kib / 1024:.1f} MiB (RSS {base.rss_kib / 1024:.1f} -> "
        f"{after.rss_kib / 1024:.1f} MiB)",
        f"server exit status: {status}",
    ]
    lines += [f"  detail: {d}" for d in stats.details]
    lines += [f"FAIL: {f}" for f in failures]
    lines.append("RESULT: " + ("FAIL" if failures else "PASS"))
    return "\n".join(lines)


def orchestrate(args: argparse.Namespace) -> int:
    raise_fd_limit()
    workdir = Path(tempfile.mkdtemp(prefix="trio_ftp_soak_"))
    root = workdir / "root"
    root.mkdir()
    seeds = make_root(root, args.seed)
    server = ServerProcess(root, workdir / "server.log", args)
    stats = Stats()
    try:
        report = trio.run(soak, args, server, seeds, stats)
    finally:
        status = server.stop()
    failures = [f"{kind}: {count}" for kind, count in stats.unexpected.items()]
    failures += verify_tree(root, seeds, stats.uploads)[:30]
    failures += resource_failures(report, args.clients)
    failures += [f"server log: {line}" for line in log_problems(server.log_path)[:10]]
    if status != 0:
        failures.append(f"server exited with status {status}")
    print(summary(args, stats, report, failures, status))
    if failures or args.keep:
        print(f"work directory kept: {workdir}")
    else:
        shutil.rmtree(workdir)
    return 1 if failures else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=300, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=60, help="length of the load")
    parser.add_argument("--quick", action="store_true", help="150 clients for 10 s")
    parser.add_argument("--idle-timeout", type=float, default=5.0)
    parser.add_argument("--socket-timeout", type=float, default=20.0)
    parser.add_argument("--atomic", action="store_true", help="server with atomic_uploads")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the clients")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.clients, args.seconds = 150, 10
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        serve_main(args)
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
