"""A custom path IO: an upload inbox where nothing is ever overwritten or deleted.

Subclasses :class:`trio_ftp.PathIO` (the local disk) and changes what writes mean:

* ``STOR report.csv`` stores the upload as ``20240131T120000.123456Z-report.csv`` (UTC,
  microseconds; a counter is added on a clash), so two uploads of one name both survive;
* ``APPE``, ``REST`` + ``STOR``, ``DELE``, ``RMD``, ``RNFR``/``RNTO``, ``SITE CHMOD`` and
  ``MFMT`` are refused with ``PermissionError`` (``EACCES``), which clients see as ``550``;
* reading, listing and ``MKD`` work as usual.

Blocking calls run in worker threads, like everything in ``PathIO``::

    python examples/custom_path_io.py [DIRECTORY]
    curl -T report.csv ftp://drop:box@127.0.0.1:2121/
"""

from __future__ import annotations

import datetime
import errno
import io
import sys
from pathlib import Path

import trio

import trio_ftp


def _refuse(what: str, path: object) -> PermissionError:
    return PermissionError(errno.EACCES, f"inbox: {what} is not allowed", str(path))


class InboxPathIO(trio_ftp.PathIO):
    """``PathIO`` where uploads land under a new timestamped name and nothing is destroyed."""

    @staticmethod
    def stamped_name(name: str) -> str:
        """``name`` prefixed with the current UTC time."""
        now = datetime.datetime.now(datetime.timezone.utc)
        return f"{now:%Y%m%dT%H%M%S.%fZ}-{name}"

    async def _open(self, path: Path, mode: str) -> io.BufferedIOBase:
        if mode == "rb":
            return await super()._open(path, mode)
        if mode != "wb":  # "ab" (APPE) and "r+b" (REST + STOR) would change a stored file
            raise _refuse("changing a stored file", path)
        path = Path(path)

        def create() -> io.BufferedIOBase:
            stamped = self.stamped_name(path.name)
            for counter in range(1000):
                name = stamped if counter == 0 else f"{stamped}.{counter}"
                try:
                    return open(path.with_name(name), "xb")  # closed by close()
                except FileExistsError:
                    continue
            raise FileExistsError(errno.EEXIST, "no free name", str(path))

        # Not abandoned on cancel: the file must not be created behind the session's back.
        return await trio.to_thread.run_sync(create)

    async def unlink(self, path: Path) -> None:
        raise _refuse("deleting", path)

    async def rmdir(self, path: Path) -> None:
        raise _refuse("removing a directory", path)

    async def rename(self, source: Path, destination: Path) -> Path:
        raise _refuse("renaming", source)

    async def chmod(self, path: Path, mode: int) -> None:
        raise _refuse("chmod", path)

    async def set_mtime(self, path: Path, mtime: float) -> None:
        raise _refuse("changing times", path)


def build_server(root: Path) -> trio_ftp.Server:
    """An inbox for ``root``: ``drop``/``box`` may upload (and read back), never destroy."""
    return trio_ftp.Server(
        [trio_ftp.User("drop", "box", base_path=root)], path_io_factory=InboxPathIO
    )


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    print(f"upload inbox {root} on ftp://drop:box@127.0.0.1:2121/")
    trio.run(build_server(root).run, "127.0.0.1", 2121)


if __name__ == "__main__":
    main()
