"""Every core on one machine: worker processes sharing the control port, and their supervisor.

:func:`serve_workers` starts ``workers`` processes (multiprocessing's ``spawn`` start method:
a fresh interpreter each, nothing inherited from the supervisor's state). Each runs its own
``trio.run`` with the :class:`~trio_ftp.Server` its ``factory`` builds, listening on the same
port with ``SO_REUSEPORT``: the kernel spreads the connections. The supervisor holds the port
(bound, never listening, so it takes no connections) from before the first worker starts to
after the last one ends, restarts a worker that dies (with back-off), and on SIGINT/SIGTERM
sends SIGTERM to every worker, which closes gracefully within ``grace``.

Passive ports: every worker gets its own slice of ``data_ports`` (:func:`split_ports`), so a
data connection always reaches the process holding its control session. Without
``data_ports`` each passive listener takes a free port of the ephemeral range, bound by
one process only, which routes just as well.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import multiprocessing
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType

import trio

from .graceful import serve_until_signal
from .reuseport import ReusePortUnavailable, reserve_port
from .server import Server
from .stores import MachineStore

__all__ = [
    "ReusePortUnavailable",
    "WorkerContext",
    "WorkerFactory",
    "forget_dead_worker",
    "machine_store",
    "serve_workers",
    "split_ports",
]

logger = logging.getLogger("trio_ftp.workers")

#: Seconds before the first restart of a worker that died; doubled after each quick death...
RESTART_DELAY = 0.5
#: ...up to this.
MAX_RESTART_DELAY = 30.0
#: A worker that ran this long before dying is restarted after RESTART_DELAY again.
STABLE_AFTER = 30.0
#: Seconds past ``grace`` a worker may take to end after SIGTERM before it is killed: each
#: session's teardown takes at most a few seconds (``boundaries.SESSION_END_TIMEOUT``).
STOP_MARGIN = 10.0
#: The longest the supervisor sleeps between looks at its workers.
POLL = 1.0


@dataclasses.dataclass(frozen=True)
class WorkerContext:
    """What one worker's ``factory`` is told.

    Attributes:
        index: this worker's number, ``0`` to ``count - 1`` (a restarted worker keeps it).
        count: how many workers serve the port.
        data_ports: this worker's slice of ``data_ports`` (give it to ``Server(data_ports=)``),
            or ``None`` when there are none (any free ephemeral port).
        state_path: a file for the state the workers of this machine share (connection
            counts, login-failure bans: ``trio_ftp.stores.MachineStore``), in a private
            directory the supervisor removes at exit.
    """

    index: int
    count: int
    data_ports: tuple[int, ...] | None
    state_path: str


#: Builds one worker's server, in that worker. With the ``spawn`` start method it must be
#: picklable: a module-level function, or a ``functools.partial`` of one with picklable
#: arguments (not a lambda, a closure or a bound method of an unpicklable object).
WorkerFactory = Callable[[WorkerContext], Server]


def split_ports(ports: Sequence[int], count: int) -> list[tuple[int, ...]]:
    """``ports`` cut into ``count`` contiguous slices whose sizes differ by one at most.

    Every port lands in exactly one slice; the first ``len(ports) % count`` slices hold the
    extra ones. ``ValueError`` when there are fewer ports than slices.
    """
    if count < 1:
        raise ValueError(f"need at least one worker, got {count}")
    if len(ports) < count:
        raise ValueError(f"{len(ports)} data port(s) for {count} workers: each needs one at least")
    size, extra = divmod(len(ports), count)
    slices: list[tuple[int, ...]] = []
    start = 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        slices.append(tuple(ports[start:end]))
        start = end
    return slices


def forget_dead_worker(state_path: str, pid: int) -> None:
    """Free the connection slots a dead worker held in the machine's shared store.

    Its errors are logged, never raised: a broken store must not stop the supervisor.
    """
    try:
        MachineStore.forget_process(state_path, pid)
    except Exception:
        logger.exception("could not free the slots of dead worker pid %d in %s", pid, state_path)


def machine_store(state_path: str) -> MachineStore:
    """The store the workers of this machine share (``context.state_path``)."""
    return MachineStore(state_path)


def serve_workers(
    factory: WorkerFactory,
    host: str | None,
    port: int,
    *,
    workers: int,
    grace: float = 10.0,
    data_ports: Sequence[int] | None = None,
    start_timeout: float = 60.0,
    log_level: int | None = None,
    on_ready: Callable[[tuple[str, int]], None] | None = None,
    on_worker_death: Callable[[str, int], None] = forget_dead_worker,
) -> int:
    """Serve ``host:port`` with ``workers`` processes until SIGINT/SIGTERM; the exit status.

    Each worker calls ``factory(WorkerContext(...))`` (see :data:`WorkerFactory`: it must be
    picklable) and serves that server. Port 0 picks one free port for all of them. Returns
    0 after a signal (every worker closed within ``grace``, or was killed ``STOP_MARGIN``
    seconds later), 1 when the workers could not start (a factory raised, the port was
    taken...: the reason is logged at ERROR, the workers that did start are stopped).
    ``on_ready(address)`` is called once every worker listens; ``on_worker_death(state_path,
    pid)`` after each death (by default :func:`forget_dead_worker`).

    ``log_level``: when set, each worker logs to stderr at that level, every line saying
    ``worker N`` (spawned processes inherit no logging configuration; without it the
    factory may configure its own).

    Raises ``ValueError`` (fewer ``data_ports`` than workers, ``workers < 1``) and
    :class:`ReusePortUnavailable` before starting anything. Call it from the main thread
    (it installs signal handlers, restored on return).
    """
    if workers < 1:
        raise ValueError(f"need at least one worker, got {workers}")
    slices: list[tuple[int, ...] | None] = (
        [None] * workers if data_ports is None else list(split_ports(data_ports, workers))
    )
    try:
        reserved = reserve_port(host, port)
    except ReusePortUnavailable:
        raise
    except OSError as exc:
        logger.error("cannot listen on %s:%s: %s", host, port, exc)
        return 1
    try:
        bound_port = int(reserved[0].getsockname()[1])
        with tempfile.TemporaryDirectory(prefix="trio-ftp-workers-") as state_dir:
            contexts = [
                WorkerContext(index, workers, slices[index], os.path.join(state_dir, "state.db"))
                for index in range(workers)
            ]
            supervisor = _Supervisor(
                factory, host, bound_port, contexts, grace, log_level, on_worker_death
            )
            return supervisor.run(start_timeout, on_ready)
    finally:
        for sock in reserved:
            sock.close()


# -- the worker process -----------------------------------------------------------------------


def _worker_main(
    factory: WorkerFactory,
    context: WorkerContext,
    host: str | None,
    port: int,
    grace: float,
    log_level: int | None,
    channel: Connection,
) -> None:
    """A worker's whole life: build the server, tell the supervisor, serve until SIGTERM."""
    # Ctrl-C reaches the whole process group; the supervisor turns it into SIGTERM for us,
    # and a second one into a second SIGTERM (stop now).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if log_level is not None:
        logging.basicConfig(
            level=log_level,
            format=f"%(asctime)s %(levelname)s worker {context.index} %(name)s: %(message)s",
        )
    try:
        server = factory(context)
    except Exception as exc:
        logger.exception("worker %d: the server factory raised", context.index)
        channel.send(("failed", f"the server factory raised {exc!r}"))
        sys.exit(1)

    def serving(address: tuple[str, int]) -> None:
        for hook in server.runtime.serving_hooks:
            try:
                hook(address)
            except Exception:  # the factory's code: the worker serves on without it
                logger.exception("worker %d: a serving hook raised", context.index)
        channel.send(("ready", address))

    reload = server.runtime.reload
    if reload is None:  # a SIGHUP forwarded by the supervisor must not end this worker
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    run = functools.partial(
        serve_until_signal,
        server,
        host,
        port,
        grace=grace,
        signals=(signal.SIGTERM,),
        reuse_port=True,
        on_serving=serving,
        reload=reload,
    )

    try:
        trio.run(run)
    except OSError as exc:
        channel.send(("failed", f"cannot listen on {host}:{port}: {exc}"))
        sys.exit(1)


# -- the supervisor ---------------------------------------------------------------------------


@dataclasses.dataclass
class _Slot:
    """One worker position: its current process, and how it has fared."""

    context: WorkerContext
    process: BaseProcess | None = None
    channel: Connection | None = None
    started_at: float = 0.0
    ready: bool = False
    delay: float = RESTART_DELAY
    restart_at: float | None = None


class _Supervisor:
    """Starts, watches, restarts and stops the workers (one thread, bounded waits)."""

    def __init__(
        self,
        factory: WorkerFactory,
        host: str | None,
        port: int,
        contexts: list[WorkerContext],
        grace: float,
        log_level: int | None,
        on_worker_death: Callable[[str, int], None],
    ) -> None:
        self.factory = factory
        self.host = host
        self.port = port
        self.grace = grace
        self.log_level = log_level
        self.on_worker_death = on_worker_death
        self.slots = [_Slot(context) for context in contexts]
        self.spawn = multiprocessing.get_context("spawn")
        self.signals: list[int] = []
        self.address: tuple[str, int] = (str(host), port)

    # signals: handlers only record; the wake-up socket interrupts the wait
    def _forward_hangup(self, signum: int, frame: FrameType | None) -> None:
        """SIGHUP: every worker reloads its configuration (the supervisor has none)."""
        for slot in self.slots:
            if slot.process is not None and slot.process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.process.pid, signal.SIGHUP)

    def _record_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)

    def run(self, start_timeout: float, on_ready: Callable[[tuple[str, int]], None] | None) -> int:
        wake_read, wake_write = socket.socketpair()
        wake_read.setblocking(False)
        wake_write.setblocking(False)
        previous = {
            signum: signal.signal(signum, self._record_signal)
            for signum in (signal.SIGINT, signal.SIGTERM)
        }
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._forward_hangup)
        previous_fd = signal.set_wakeup_fd(wake_write.fileno(), warn_on_full_buffer=False)
        self.wake = wake_read
        try:
            for slot in self.slots:
                self._start(slot)
            failure = self._wait_started(start_timeout)
            if failure is not None:
                logger.error("workers could not start: %s", failure)
                self._stop()
                return 1
            if self.signals:
                self._stop()
                return 0
            logger.info(
                "%d workers serving (pids %s)",
                len(self.slots),
                ", ".join(str(self._pid(slot)) for slot in self.slots),
            )
            if on_ready is not None:
                on_ready(self.address)
            self._watch()
            self._stop()
            return 0
        finally:
            self._kill_all()
            signal.set_wakeup_fd(previous_fd)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            wake_read.close()
            wake_write.close()

    def _pid(self, slot: _Slot) -> int:
        return -1 if slot.process is None or slot.process.pid is None else slot.process.pid

    def _start(self, slot: _Slot) -> None:
        reader, writer = self.spawn.Pipe(duplex=False)
        process = self.spawn.Process(
            target=_worker_main,
            args=(
                self.factory,
                slot.context,
                self.host,
                self.port,
                self.grace,
                self.log_level,
                writer,
            ),
            name=f"trio-ftp-worker-{slot.context.index}",
        )
        process.start()
        writer.close()
        slot.process, slot.channel = process, reader
        slot.started_at, slot.ready, slot.restart_at = time.monotonic(), False, None

    def _waitables(self) -> list[Connection | socket.socket | int]:
        found: list[Connection | socket.socket | int] = [self.wake]
        for slot in self.slots:
            if slot.channel is not None:
                found.append(slot.channel)
            if slot.process is not None:
                found.append(slot.process.sentinel)
        return found

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self.wake.recv(512):
                pass

    def _message(self, slot: _Slot) -> tuple[str, object] | None:
        """The worker's next message, or ``None`` once its end of the pipe is closed."""
        assert slot.channel is not None
        try:
            kind, detail = slot.channel.recv()
        except (EOFError, OSError):
            slot.channel.close()
            slot.channel = None
            return None
        return str(kind), detail

    def _wait_started(self, timeout: float) -> str | None:
        """Wait until every worker listens; the reason why not, if one fails or time is up."""
        deadline = time.monotonic() + timeout
        while not all(slot.ready for slot in self.slots) and not self.signals:
            left = deadline - time.monotonic()
            if left <= 0:
                waiting = [s.context.index for s in self.slots if not s.ready]
                return f"worker(s) {waiting} not listening after {timeout:g} s"
            ready = wait(self._waitables(), timeout=min(left, POLL))
            self._drain_wake()
            for slot in self.slots:
                if slot.channel is not None and slot.channel in ready:
                    message = self._message(slot)
                    if message is not None and message[0] == "failed":
                        return f"worker {slot.context.index}: {message[1]}"
                    if message is not None and message[0] == "ready":
                        slot.ready = True
                        self.address = _address(message[1], self.address)
                assert slot.process is not None
                if slot.process.sentinel in ready and slot.channel is None:
                    slot.process.join(1.0)
                    status = _status(slot.process.exitcode)
                    return (
                        f"worker {slot.context.index} (pid {self._pid(slot)}) {status} "
                        "before it was listening"
                    )
        return None

    def _watch(self) -> None:
        """Serve until a signal: restart the workers that die, with back-off."""
        while not self.signals:
            now = time.monotonic()
            due = [s.restart_at for s in self.slots if s.restart_at is not None]
            timeout = max(0.0, min([POLL, *(at - now for at in due)]))
            ready = wait(self._waitables(), timeout=timeout)
            self._drain_wake()
            for slot in self.slots:
                if slot.channel is not None and slot.channel in ready:
                    self._report(slot)
                if slot.process is not None and slot.process.sentinel in ready:
                    self._died(slot)
                due_now = slot.restart_at is not None and slot.restart_at <= time.monotonic()
                if due_now and not self.signals:
                    self._start(slot)
                    logger.warning(
                        "worker %d restarted (pid %d)", slot.context.index, self._pid(slot)
                    )

    def _report(self, slot: _Slot) -> None:
        message = self._message(slot)
        if message is None:
            return
        if message[0] == "ready":
            slot.ready = True
            logger.warning("worker %d (pid %d) serving again", slot.context.index, self._pid(slot))
        else:
            logger.error("worker %d (pid %d): %s", slot.context.index, self._pid(slot), message[1])

    def _died(self, slot: _Slot) -> None:
        assert slot.process is not None
        process = slot.process
        process.join(1.0)
        pid = -1 if process.pid is None else process.pid
        ran = time.monotonic() - slot.started_at
        slot.delay = RESTART_DELAY if ran >= STABLE_AFTER else slot.delay
        logger.error(
            "worker %d (pid %d) %s after %.1f s; restarting in %.1f s",
            slot.context.index,
            pid,
            _status(process.exitcode),
            ran,
            slot.delay,
        )
        if slot.channel is not None:
            slot.channel.close()
        slot.process, slot.channel, slot.ready = None, None, False
        slot.restart_at = time.monotonic() + slot.delay
        slot.delay = min(slot.delay * 2, MAX_RESTART_DELAY)
        try:
            self.on_worker_death(slot.context.state_path, pid)
        except Exception:
            logger.exception("on_worker_death failed for pid %d", pid)

    def _stop(self) -> None:
        """SIGTERM to every worker (again on each further signal), then wait, then kill."""
        sent = -1  # how many signals the SIGTERMs sent so far answer
        deadline = time.monotonic() + self.grace + STOP_MARGIN
        live = self._live()
        if live:
            logger.info("stopping %d worker(s) (grace %gs)", len(live), self.grace)
        while live:
            if sent < len(self.signals):  # the first time, and again on each new signal
                for process in live:
                    _signal(process, signal.SIGTERM)
                sent = len(self.signals)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            wait([self.wake, *(process.sentinel for process in live)], timeout=min(left, POLL))
            self._drain_wake()
            live = self._live()
        for process in self._live():
            logger.error("worker pid %s still running after grace; killing it", process.pid)
        self._kill_all()

    def _live(self) -> list[BaseProcess]:
        return [s.process for s in self.slots if s.process is not None and s.process.is_alive()]

    def _kill_all(self) -> None:
        for slot in self.slots:
            process = slot.process
            if process is None:
                continue
            if process.is_alive():
                _signal(process, signal.SIGKILL)
            process.join(5.0)
            if slot.channel is not None:
                slot.channel.close()
            slot.process, slot.channel = None, None


def _signal(process: BaseProcess, signum: signal.Signals) -> None:
    if process.pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signum)


def _status(exitcode: int | None) -> str:
    if exitcode is None:
        return "did not exit"
    if exitcode < 0:
        return f"was killed by {signal.Signals(-exitcode).name}"
    return f"exited with status {exitcode}"


def _address(reported: object, fallback: tuple[str, int]) -> tuple[str, int]:
    if isinstance(reported, tuple) and len(reported) == 2:
        return str(reported[0]), int(reported[1])
    return fallback
