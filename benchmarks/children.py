"""Start child processes in their own process group and make sure every one is gone at the
end, even after Ctrl-C or an error: a benchmark must not leave servers behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

__all__ = ["Children", "python_module"]

REPO = Path(__file__).resolve().parent.parent


def python_module(module: str, *args: str) -> list[str]:
    """The command line that runs ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


class Children:
    """Owns the processes it starts; closing it stops them all (SIGTERM, then SIGKILL).

    Each child leads a new session, so a terminal's Ctrl-C reaches only the harness (which
    then stops the children in order), and killing the child's group also ends whatever it
    forked (vsftpd's per-session processes). Only groups led by our own children are
    signalled.
    """

    def __init__(self) -> None:
        self._processes: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        argv: Sequence[str],
        *,
        stdin: bool = False,
        log: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` with a stdout pipe (and a stdin pipe if asked); stderr goes to
        ``log`` (appended) or, without one, to ours. ``env``: variables added to ours."""
        env = {**os.environ, **(env or {})}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        with contextlib.ExitStack() as stack:
            stderr = stack.enter_context(open(log, "ab")) if log is not None else None
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                cwd=REPO,
                env=env,
                start_new_session=True,
            )
        self._processes.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 3.0) -> None:
        """Stop one child and its process group; wait for it."""
        if process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait()
        # Leftovers of a forking server. Safe after the reap: Linux does not hand out a
        # process-group id again while any process is still in that group.
        _signal_group(process.pid, signal.SIGKILL)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()
        if process in self._processes:
            self._processes.remove(process)

    def close(self) -> None:
        """Stop every child still running, newest first."""
        for process in reversed(list(self._processes)):
            self.stop(process)

    def __enter__(self) -> Children:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
